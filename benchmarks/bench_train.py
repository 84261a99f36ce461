"""Training throughput of the shapes CNN: minicnn against the same architecture in PyTorch CPU.

    python benchmarks/bench_train.py [--batch 64] [--steps 10] [--repeats 5]

One step = forward in training mode (batch norm on batch statistics, dropout on), softmax
cross-entropy, the full backward (every parameter gradient) and an Adam update, on the same
batches. Each repeat times ``--steps`` steps of ours, then of torch's (alternating); we print
images/second (median, min-max) and the ratio ours/torch of the throughput (higher is better).
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from common import race, table, torch_twin

from minicnn import zoo
from minicnn.data import make_shapes
from minicnn.losses import softmax_cross_entropy
from minicnn.optim import Adam


def train_rows(batch, steps, repeats, size=64):
    import torch

    data = make_shapes(batch * steps, seed=0, size=size)
    X, Y = data.images, data.labels
    model = zoo.shapes_cnn(pretrained=False).train()
    net = torch_twin(model).train()
    opt = Adam(model, lr=1e-3)
    topt = torch.optim.Adam(net.parameters(), lr=1e-3)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y.astype(np.int64))
    loss_fn = torch.nn.CrossEntropyLoss()

    def ours():
        for i in range(steps):
            sl = slice(i * batch, (i + 1) * batch)
            scores = model.forward(X[sl])
            _, dscores = softmax_cross_entropy(scores, Y[sl])
            model.backward(dscores, input_grad=False)
            opt.step()

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
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
