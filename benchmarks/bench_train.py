"""Training throughput of the shapes CNN: minicnn against the same architecture in PyTorch CPU.

    python benchmarks/bench_train.py [--batch 64] [--steps 10] [--repeats 5] [--profile]

One step = forward in training mode (batch norm on batch statistics, dropout on), softmax
cross-entropy, the full backward (every parameter gradient) and an Adam update, on the same
batches. Each repeat times ``--steps`` steps of ours, then of torch's (alternating); we print
images/second (median, min-max) and the ratio ours/torch of the throughput (higher is better).

``--profile``: instead, where our step's time goes: every layer's forward and backward timed
over ``--steps`` steps (after 3 warm-up steps), summed by kind of layer (minicnn only).
"""

from __future__ import annotations

import argparse
import collections
import re
import statistics
import time

import numpy as np

from common import race, table, torch_twin

from minicnn import zoo
from minicnn.data import make_shapes
from minicnn.losses import softmax_cross_entropy
from minicnn.optim import Adam


def our_training(batch, n_batches, size=64):
    """The shapes CNN in training mode with Adam on ``n_batches`` batches of generated shapes:
    returns (model, data, step), ``step(i)`` one training step on batch i % n_batches."""
    data = make_shapes(batch * n_batches, seed=0, size=size)
    model = zoo.shapes_cnn(pretrained=False).train()
    opt = Adam(model, lr=1e-3)

    def step(i):
        sl = slice((i % n_batches) * batch, (i % n_batches + 1) * batch)
        _, dscores = softmax_cross_entropy(model.forward(data.images[sl]), data.labels[sl])
        model.backward(dscores, need_dx=False)
        opt.step()

    return model, data, step


def train_rows(batch, steps, repeats, size=64):
    import torch

    model, data, step = our_training(batch, steps, size)
    net = torch_twin(model).train()
    topt = torch.optim.Adam(net.parameters(), lr=1e-3)
    Xt, Yt = torch.from_numpy(data.images), torch.from_numpy(data.labels.astype(np.int64))
    loss_fn = torch.nn.CrossEntropyLoss()

    def ours():
        for i in range(steps):
            step(i)

    def theirs():
        for i in range(steps):
            sl = slice(i * batch, (i + 1) * batch)
            topt.zero_grad(set_to_none=True)
            loss_fn(net(Xt[sl]), Yt[sl]).backward()
            topt.step()

    t = race({"ours": ours, "torch": theirs}, repeats)
    ips = {k: [batch * steps / s for s in v] for k, v in t.items()}
    r = [a / b for a, b in zip(ips["ours"], ips["torch"])]
    med = {k: statistics.median(v) for k, v in ips.items()}
    return [["shapes_cnn training (img/s)", batch,
             f"{med['ours']:.0f} ({min(ips['ours']):.0f}-{max(ips['ours']):.0f})",
             f"{med['torch']:.0f} ({min(ips['torch']):.0f}-{max(ips['torch']):.0f})",
             f"{statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f})"]]


HEADER = ["workload", "batch", "minicnn img/s", "torch img/s", "throughput ours/torch"]


def profile_rows(batch, steps, size=64):
    """ms per step in each kind of layer (conv, bn, ...) and pass (forward/backward), and the
    step's total, by wrapping every layer's forward and backward in a timer."""
    model, _, step = our_training(batch, 4, size)
    spent = collections.defaultdict(float)
    for name, layer in model._leaves():
        kind = re.sub(r"\d+$", "", name)
        for method in ("forward", "backward"):
            def timed(*a, _fn=getattr(layer, method), _key=(kind, method), **kw):
                t = time.perf_counter()
                out = _fn(*a, **kw)
                spent[_key] += time.perf_counter() - t
                return out
            setattr(layer, method, timed)
    for i in range(3):
        step(i)
    spent.clear()
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    total = (time.perf_counter() - t) / steps * 1e3
    rows = [[kind, method, f"{v / steps * 1e3:.1f}"] for (kind, method), v in
            sorted(spent.items(), key=lambda kv: -kv[1]) if v / steps * 1e3 >= 0.05]
    return rows + [["whole step", "", f"{total:.1f}"]]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="where our step's time goes")
    args = parser.parse_args(argv)
    if args.profile:
        print(table(["layers", "pass", "ms per step"], profile_rows(args.batch, max(args.steps, 20))))
        return 0
    try:
        import torch  # noqa: F401
    except ImportError:
        print("PyTorch is not installed: nothing to race (pip install torch)")
        return 1
    rows = train_rows(args.batch, args.steps, args.repeats)
    print(table(HEADER, rows))
    return rows


if __name__ == "__main__":
    main()
