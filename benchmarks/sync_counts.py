"""Host syncs and host-to-device transfers of the device workloads, counted on the fake device.

    python benchmarks/sync_counts.py

Runs each workload once on tests/fakecupy.py (NumPy underneath, CuPy's rules on top; no GPU
needed) and prints its syncs and transfers with the lines that caused them. Winograd is
switched on from 16 channels, so the small models here take that path too. The budgets that
the suite enforces are in tests/test_fakecupy.py and tests/test_device_metrics.py; this script
is for reading where they come from (issue 16's before/after tables in benchmarks/README.md).
"""

from __future__ import annotations

import collections
import os
import sys
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import gradcam  # noqa: E402
import minicnn  # noqa: E402
import minicnn.backend as backend  # noqa: E402
from fakecupy import COUNTS, FAKE  # noqa: E402
from minicnn import layers as L  # noqa: E402
from minicnn import zoo  # noqa: E402
from minicnn.kernels import winograd  # noqa: E402
from minicnn.optim import SGD  # noqa: E402
from minicnn.train import fit  # noqa: E402


def count(label, fn):
    COUNTS.reset()
    try:
        fn()
    except Exception as e:  # NOTE: an older library may refuse a workload: say so, go on
        print(f"| {label} | error | | {type(e).__name__}: {str(e)[:80]} |")
        return
    sites = collections.Counter(f"{k} {w}" for k, _, w in COUNTS.log)
    print(f"| {label} | {COUNTS.syncs} | {COUNTS.transfers} | "
          f"{', '.join(f'{s} x{n}' for s, n in sites.most_common())} |")


def main():
    warnings.filterwarnings("ignore", "ROAD")  # maps that tie at the threshold: NaN scores
    backend._cupy, backend.HAS_CUPY = FAKE, True
    winograd.MIN_CHANNELS = 16
    x = np.random.default_rng(3).uniform(0, 1, (2, 3, 64, 64)).astype(np.float32)
    cnn, xd = zoo.shapes_cnn(seed=1).to("cupy"), FAKE.asarray(x)
    vgg, xv = zoo.vgg16(width=1 / 16, num_classes=10).to("cupy"), FAKE.asarray(x[..., :32, :32])
    eff = zoo.efficientnet_lite0(num_classes=10).to("cupy")
    drop = minicnn.Sequential([("f", L.Flatten()), ("d", L.Dropout(0.5, seed=1))]).to("cupy")
    X = np.random.default_rng(0).standard_normal((8, 3, 64, 64)).astype(np.float32)
    m = zoo.shapes_cnn(seed=2).to("cupy")
    vgg(xv)  # the Winograd weight memo (host only now) is filled by a first forward
    print("| workload (fake device) | syncs | transfers | where |\n|---|---|---|---|")
    count("grad_cam shapes_cnn b=2, targets given", lambda: gradcam.grad_cam(cnn, xd, [0, 3]))
    count("grad_cam shapes_cnn b=2, target=None", lambda: gradcam.grad_cam(cnn, xd))
    count("VGG16/16 forward (8 Winograd convs), 2nd call", lambda: vgg(xv))
    count("EfficientNet-Lite0 forward (ReLU6)", lambda: eff(xv))
    count("Dropout forward, train mode", lambda: drop.train()(xd))
    count("fit: 1 epoch, 4 steps", lambda: fit(m, SGD(m, lr=0.01), X, np.arange(8) % 4,
                                               epochs=1, batch_size=2, progress=False))
    for method in ("scorecam", "ablationcam", "smoothgrad"):
        count(f"explain {method} shapes_cnn b=2", lambda: gradcam.explain(cnn, xd, [0, 3], method))
    metric_workloads(cnn, xd, X, m)


def metric_workloads(cnn, xd, X, m):
    """The faithfulness metrics, ROAD, similarity, sanity checks (tests/test_device_metrics.py
    holds their budgets) on shapes_cnn b=2 at 64 x 64 with its Grad-CAM maps."""
    from gradcam import metrics, sanity
    from gradcam.evaluate_faithfulness import faithfulness_scores
    from minicnn.train import update_bn

    maps, t = gradcam.grad_cam(cnn, xd, [0, 3]).heatmap, np.array([0, 3])
    count("deletion, 20 steps, 4 per forward (10 batches)",
          lambda: metrics.deletion(cnn, xd, maps, t, batch_size=4))
    count("insertion, 20 steps, 4 per forward (10 batches)",
          lambda: metrics.insertion(cnn, xd, maps, t, batch_size=4))
    count("average_drop, 1 per forward", lambda: metrics.average_drop(cnn, xd, maps, t,
                                                                      batch_size=1))
    count("ROAD MoRF, 9 percentiles (2 batches)", lambda: metrics.road(cnn, xd, maps, t))
    count("ROAD, pytorch-grad-cam thresholds", lambda: metrics.road(cnn, xd, maps, t,
                                                                  variant="pytorch-grad-cam"))
    count("occlusion_correlation, window 16 stride 8", lambda: metrics.occlusion_correlation(
        cnn, xd, maps, t, window=16, stride=8))
    count("spearman + ssim + hog_correlation", lambda: [f(maps, maps[::-1]) for f in (
        metrics.spearman, metrics.ssim, metrics.hog_correlation)])
    count("sanity cascading, 2 groups x 2 methods", lambda: sanity.randomisation(
        cnn, xd, t, groups=sanity.layer_groups(cnn)[:2]))
    count("faithfulness_scores, 1 method, with ROAD", lambda: faithfulness_scores(
        cnn, xd, {"Grad-CAM": maps}, t, maps, with_road=True))
    count("update_bn, 8 images in 4 batches", lambda: update_bn(m, X, batch_size=2))


if __name__ == "__main__":
    main()
