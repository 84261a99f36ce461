"""Run every CPU benchmark and write the tables into benchmarks/README.md (between the markers).

    python benchmarks/run_all.py [--quick] [--no-write]

``--quick`` uses fewer repeats and skips the scaling table's largest cases (a smoke run, a few
minutes); the full run takes about half an hour on 2 cores. The GPU benchmark is separate
(``python benchmarks/bench_gpu.py``), since it needs CuPy and a CUDA device.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform

import numpy as np

from common import table

import bench_explain
import bench_forward
import bench_memory
import bench_scaling
import bench_train

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md")
BEGIN, END = "<!-- BEGIN RESULTS -->", "<!-- END RESULTS -->"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    import torch

    reps = 3 if args.quick else 7
    parts = []
    rows, lrows, rate = bench_forward.main(["--repeats", str(reps), "--layers"])
    head = (f"{datetime.date.today()}, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores; numpy {np.__version__}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads); float32 matmul (4096^3) {rate:.0f} GFLOP/s")
    parts += [f"Measured {head}.", "", "### Forward", "", table(bench_forward.HEADER, rows), "",
              table(bench_forward.LAYER_HEADER, lrows)]
    erows = bench_explain.main(["--repeats", str(max(3, reps - 2))])
    parts += ["", "### Explanations (Grad-CAM, guided backprop, Guided Grad-CAM)", "",
              "minicnn ms: `gradcam.<method>`; for Grad-CAM also the same engine with "
              "`forward(stop_at=layer)` (ratios for both, in that order).", "",
              table(bench_explain.HEADER, erows)]
    trows = bench_train.main(["--repeats", str(reps)])
    parts += ["", "### Training", "", table(bench_train.HEADER, trows)]
    srows = bench_scaling.main(["--repeats", "3"] + (["--batches", "1", "2", "4", "8", "--sides", "112", "224"]
                                                     if args.quick else []))
    parts += ["", "### Scaling (VGG16 forward)", "", table(bench_scaling.HEADER, srows)]
    mrows, _ = bench_memory.memory_rows(1)
    parts += ["", "### Peak memory (RSS, fresh process per workload)", "", table(bench_memory.HEADER, mrows)]
    text = "\n".join(parts)
    print(text)
    if not args.no_write:
        with open(README) as f:
            doc = f.read()
        a, b = doc.index(BEGIN) + len(BEGIN), doc.index(END)
        with open(README + ".tmp", "w") as f:
            f.write(doc[:a] + "\n" + text + "\n" + doc[b:])
        os.replace(README + ".tmp", README)
        print(f"\nwrote {README}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
