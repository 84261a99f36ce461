"""Deletion + insertion on EfficientNet-Lite0: ``gradcam.metrics`` against torchcam's
``DeletionInsertionMetric``, same weights, same photos, same maps, same run.

    python benchmarks/bench_faithfulness.py [--threads 2] [--repeats 3] [--steps 20]
                                            [--batch-size 32] [--ours-batch-size B]

Inputs: the two photos that ship with matplotlib (grace_hopper.jpg, Minduka_Present_Blue_Pack.png)
through Lite0's preprocessing, 2 x 3 x 224 x 224 float32. Maps: our Grad-CAM heatmaps at
``_relu1`` (7 x 7 upsampled to 224), computed once and handed to both sides (torchcam through a
stand-in CAM extractor that returns them). Both sides use torchcam's definition: its counts
(``variant="torchcam"``), a zero canvas for both curves, softmax scores; torchcam runs
``--batch-size`` perturbed inputs per forward (its default, 32), ours its own default (None:
4 at 224; ``--ours-batch-size`` overrides). torchcam computes both curves in one ``update``,
ours calls ``deletion`` and then ``insertion``. The AUCs of the two sides are compared before
timing.

Timing: ``common.race`` alternates the two on every repeat after a pause; the machine has 2
shared cores, so the per-repeat ratio (ours / torchcam, same machine state) is the number to
read, with its range.
"""

from __future__ import annotations

import argparse


# NOTE: thread counts must be set before NumPy's BLAS (and torch) load to take effect
import threads  # noqa: E402,F401  (sets them from --threads)

import numpy as np  # noqa: E402

from common import fmt_ratio, ms, race, table, torch_twin  # noqa: E402

import gradcam  # noqa: E402
from gradcam import metrics  # noqa: E402
from gradcam.peers.torchcam import MapsExtractor  # noqa: E402
from gradcam.images import model_input  # noqa: E402
from minicnn import zoo  # noqa: E402

PHOTOS = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")


def inputs():
    """(model, x (2, 3, 224, 224) float32, top-1 targets, Grad-CAM heatmaps (2, 224, 224))."""
    from matplotlib import cbook

    model = zoo.efficientnet_lite0(pretrained=True).eval()
    x = np.concatenate([model_input(model, cbook.get_sample_data(p, asfileobj=False))[0]
                        for p in PHOTOS]).astype(np.float32)
    r = gradcam.explain(model, x, None, "gradcam", layer="_relu1")
    return model, x, np.asarray(r.target), np.ascontiguousarray(r.heatmap, dtype=np.float32)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--ours-batch-size", type=int, default=None,
                        help="perturbed inputs per forward on our side (default: ours, sized to "
                             "the input: 4 at 224)")
    args = parser.parse_args(argv)
    import torch
    from torchcam.metrics import DeletionInsertionMetric

    torch.set_num_threads(int(args.threads))
    model, x, target, maps = inputs()
    net, xt = torch_twin(model), torch.from_numpy(x)
    softmax = lambda t: torch.softmax(t, dim=-1)  # noqa: E731
    kw = dict(steps=args.steps, baseline="zeros", scores="softmax", variant="torchcam",
              batch_size=args.ours_batch_size)

    def ours():
        return (metrics.deletion(model, x, maps, target, **kw),
                metrics.insertion(model, x, maps, target, **kw))

    def theirs():
        m = DeletionInsertionMetric(MapsExtractor(net, maps), softmax, steps=args.steps,
                                    batch_size=args.batch_size)
        m.update(xt, class_idx=[int(t) for t in target])
        return m.summary()

    d, i = ours()
    s = theirs()
    print(f"photos {', '.join(PHOTOS)}; targets {[model.class_names[t] for t in target]}")
    print(f"deletion AUC ours {float(d.auc.mean()):.6f} torchcam {s['deletion_auc']:.6f}; "
          f"insertion AUC ours {float(i.auc.mean()):.6f} torchcam {s['insertion_auc']:.6f}")
    n, k = x.shape[0], len(d.counts) - 1
    print(f"image forwards per call: ours {2 * k * n} perturbed + {2 * n} unperturbed (each "
          f"curve runs its own), torchcam {(2 * k - 1) * n} perturbed + {n} unperturbed (the "
          f"all-baseline point is shared)")
    t = race({"ours": ours, "torchcam": theirs}, repeats=args.repeats, warmup=0)
    print(table(["contender", "median ms (min-max)", "ratio ours/torchcam per repeat"],
                [["gradcam.metrics deletion + insertion", ms(t["ours"]),
                  fmt_ratio(t["ours"], t["torchcam"])],
                 ["torchcam DeletionInsertionMetric", ms(t["torchcam"]), "1"]]))


if __name__ == "__main__":
    main()
