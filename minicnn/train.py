"""The training loop: seeded mini-batch SGD with checkpoints that resume bit for bit.

One step is the chain every lesson draws:

    scores = model(x_batch)                               forward, train mode
    L, dscores = softmax_cross_entropy(scores, y_batch)   dL/dscores = (p - onehot) / B
    model.backward(dscores, need_dx=False)             parameter grads, no dL/dx
    optimizer.step()                                      p <- p - lr * update(grad)

Reproducibility: epoch ``e`` shuffles with its own generator,
``np.random.default_rng((seed, e))``, which is also handed to ``augment``. So the
batches of an epoch do not depend on earlier epochs, and a run that is stopped after
epoch ``e`` and resumed from its checkpoint (model state, optimiser state, history)
follows exactly the same arithmetic as a run that never stopped.

Divergence: ``fit`` stops at the first mini-batch whose loss is NaN or inf, before its
backward and update, and raises ``NonFiniteLoss`` naming the epoch and batch. The checkpoint
(if any) is not touched, so it still holds the last epoch that ended with a finite loss.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import io
from .backend import asarray, device_of, get_xp, to_numpy
from .layers import BatchNorm2d
from .losses import check_labels, softmax_cross_entropy

CHECKPOINT_FORMAT = "minicnn-checkpoint"


@dataclass
class History:
    """Per-epoch records of a :func:`fit` run (index i = epoch i).

    loss : mean training loss over the epoch's samples
    acc : training accuracy of the (train-mode) forward passes during the epoch
    val_acc : accuracy on ``val`` after the epoch, or None without ``val``
    seconds : wall time of the epoch, evaluation included
    """

    loss: list = field(default_factory=list)
    acc: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    seconds: list = field(default_factory=list)

    def as_dict(self):
        """JSON-able ``{"loss": [...], "acc": [...], "val_acc": [...], "seconds": [...]}``."""
        return {"loss": list(self.loss), "acc": list(self.acc), "val_acc": list(self.val_acc),
                "seconds": list(self.seconds)}


class NonFiniteLoss(ValueError):
    """The training loss became NaN or inf; ``fit`` stopped before that batch's update.

    On a device the loss is read once per epoch, so ``fit`` stops at the end of that epoch and
    ``batch`` is None. Attributes: ``epoch`` and ``batch`` (1-based, where it happened),
    ``loss``, ``history``
    (the epochs completed, as in the checkpoint), ``checkpoint`` (its path, or None).
    """

    def __init__(self, epoch, epochs, batch, n_batches, loss, history, checkpoint):
        kept = (f"the checkpoint {checkpoint} still holds epoch {len(history.loss)}"
                if checkpoint is not None and history.loss else
                "no epoch had completed, so there is no checkpoint" if checkpoint is not None
                else "no checkpoint was asked for")
        where = (f"batch {batch}/{n_batches}; stopped before its update" if batch is not None
                 else "a batch of it (on a device the loss is read once per epoch); stopped at "
                 "the epoch's end")
        super().__init__(f"training loss is {loss} in epoch {epoch}/{epochs}, {where} ({kept}); "
                         "lower the learning rate or check the data")
        self.epoch, self.batch, self.loss = epoch, batch, loss
        self.history, self.checkpoint = history, checkpoint


def _model_device_dtype(model):
    """Device and dtype of the model's first parameter (``("numpy", None)`` if it has none)."""
    for _, p, _ in model.named_parameters():
        return device_of(p), p.dtype
    return "numpy", None


def _batches(N, batch_size):
    """Yield ``(start, stop)`` of consecutive mini-batches; the last one may be smaller."""
    for start in range(0, N, batch_size):
        yield start, min(start + batch_size, N)


def model_accuracy(model, X, y, batch_size=256):
    """Accuracy of ``model`` on ``(X, y)`` in eval mode; the previous mode is restored.

    acc = 1/N * sum_n [argmax_c model(X)[n, c] == y[n]]

    Parameters
    ----------
    model : callable model with ``train()``, ``eval()``, ``training``
    X : (N, ...) inputs (host or device)
    y : (N,) integer labels
    batch_size : int

    Returns
    -------
    acc : float
    """
    N = len(X)
    if len(y) != N or N == 0:
        raise ValueError(f"need as many labels as inputs (N > 0), got {N} inputs, {len(y)} labels")
    device, dtype = _model_device_dtype(model)
    y = asarray(y, device)  # NOTE: once, not per batch; the count stays there: one sync at the end
    was_training = model.training
    model.eval()
    try:
        correct = 0
        for a, b in _batches(N, batch_size):
            scores = model(asarray(X[a:b], device, dtype))
            correct = correct + _correct(scores, y[a:b])
    finally:
        if was_training:
            model.train()
    return int(correct) / N


def _correct(scores, y):
    """How many rows' arg-max score equals the label, as a 0-d array where ``scores`` live.

    correct = sum_n [argmax_c s[n, c] == y[n]]
    """
    if tuple(y.shape) != tuple(scores.shape[:1]):
        raise ValueError(f"labels must have shape {tuple(scores.shape[:1])}, got {tuple(y.shape)}")
    return (get_xp(scores).argmax(scores, axis=1) == y).sum()


def update_bn(model, X, batch_size=256):
    """Recompute every BatchNorm2d's running statistics from ``X`` ("precise BN").

    During training the running statistics are an exponential average over the last
    ~1/momentum batches, taken while the weights were still moving; with a constant learning
    rate they can lag the final weights enough to cost many points of eval accuracy while the
    train-mode accuracy looks fine. This replaces them by the statistics of the final model
    over all of ``X`` (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", arXiv:2105.07576;
    PyTorch's ``torch.optim.swa_utils.update_bn`` does the same with a mean of batch variances):

        mu  = (1/M) sum_{n,h,w} x          var = (1/(M-1)) sum_{n,h,w} (x - mu)^2   (unbiased)

    over the M = N*H*W inputs each channel sees, where x is the layer's input when the network
    runs in train mode (batch statistics in the layers below, as in training). Sums are kept in
    float64 per batch: mu_b and the biased var_b of each batch give sum x = M_b mu_b and
    sum x^2 = M_b (var_b + mu_b^2). Dropout and every other layer run as in eval mode; the
    model's modes are restored afterwards. Nothing but the running statistics changes.

    Parameters
    ----------
    model : Sequential (or any container with ``named_layers``)
    X : (N, C, H, W) inputs, typically the training images
    batch_size : int
    """
    if len(X) == 0:
        raise ValueError("update_bn needs at least one input")
    named = list(model.named_layers())
    bns = [(name, lay) for name, lay in named if isinstance(lay, BatchNorm2d)]
    if not bns:
        return
    modes = [lay.training for _, lay in named] + [model.training]
    device, dtype = _model_device_dtype(model)
    sums = {name: [0.0, 0.0, 0] for name, _ in bns}  # per channel: sum x, sum x^2; and M
    try:
        model.eval()
        for _, bn in bns:
            bn.training = True
        for a, b in _batches(len(X), batch_size):
            model(asarray(X[a:b], device, dtype))
            for name, bn in bns:
                N, _, H, W = model.shapes[name]
                m_b, s = N * H * W, sums[name]
                # NOTE: summed where the model is; no host sync per batch and layer
                mean = bn.cache.mean.astype(np.float64)
                var = bn.cache.var.astype(np.float64)  # biased batch variance
                s[0] = s[0] + m_b * mean
                s[1] = s[1] + m_b * (var + mean ** 2)
                s[2] += m_b
    finally:
        for (_, lay), mode in zip(named, modes):
            lay.training = mode
        model.training = modes[-1]
    for name, bn in bns:
        s1, s2, M = sums[name]
        mu = s1 / M
        var = get_xp(mu).maximum(s2 / M - mu ** 2, 0.0) * (M / max(M - 1, 1))
        ref = bn.buffers["running_mean"]
        bn.buffers["running_mean"] = asarray(mu, device_of(ref), ref.dtype)
        bn.buffers["running_var"] = asarray(var, device_of(ref), ref.dtype)


def _layer_rngs(model):
    """Layers that draw random numbers of their own (e.g. Dropout's ``rng``), by name.

    Their generator states go into the checkpoint (a JSON-able dict of Python ints), so
    that a resumed run draws the same masks as an uninterrupted one.
    """
    named = model.named_layers() if hasattr(model, "named_layers") else []
    return {n: lay.rng for n, lay in named
            if isinstance(getattr(lay, "rng", None), np.random.Generator)}


def _save_checkpoint(path, model, optimizer, epochs_done, history, run):
    """Atomically write model state, optimiser state, epoch count and history to ``path``."""
    opt = optimizer.state_dict()
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"optim/{k}": v for k, v in opt["arrays"].items()})
    meta = {"format": CHECKPOINT_FORMAT, "version": 1, "epoch": epochs_done,
            "history": history.as_dict(), "optimizer": opt["scalars"], "run": run,
            "rng_states": {n: g.bit_generator.state for n, g in _layer_rngs(model).items()}}
    io.save_arrays(path, arrays, meta)


def _load_checkpoint(path, model, optimizer, run):
    """Restore model, optimiser and layer generators from ``path``; return ``(epochs, history)``."""
    arrays, meta = io.load_arrays(path)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise io.WeightFileError(f"{path}: not a training checkpoint "
                                 f"(format {meta.get('format')!r})")
    if meta.get("run") != run:
        # NOTE: another seed or batch size would silently break "resumed == uninterrupted".
        raise ValueError(f"{path}: checkpoint was written with {meta.get('run')}, this run uses "
                         f"{run}; pass resume=False or another checkpoint path")
    rngs, states = _layer_rngs(model), meta.get("rng_states", {})
    if set(rngs) != set(states):
        raise ValueError(f"{path}: checkpoint has generator states for {sorted(states)}, "
                         f"the model has random layers {sorted(rngs)}")
    model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model/")})
    optimizer.load_state_dict({"scalars": meta["optimizer"],
                               "arrays": {k[6:]: v for k, v in arrays.items()
                                          if k.startswith("optim/")}})
    for n, g in rngs.items():
        g.bit_generator.state = states[n]
    h = meta["history"]
    return int(meta["epoch"]), History(h["loss"], h["acc"], h["val_acc"], h["seconds"])


def _bar(epoch, done, total, loss):
    """One-line progress bar redrawn with ``\\r`` on stderr (only called for a TTY)."""
    width = 24
    fill = int(width * done / total)
    sys.stderr.write(f"\repoch {epoch + 1} [{'=' * fill}{' ' * (width - fill)}] "
                     f"{done}/{total} loss {loss:.4f}")
    sys.stderr.flush()


def fit(model, optimizer, X, y, epochs, batch_size=64, seed=0, val=None, checkpoint=None,
        resume=True, progress=True, augment=None):
    """Train ``model`` with ``optimizer`` on ``(X, y)`` for ``epochs`` epochs.

    Per epoch e: order = default_rng((seed, e)).permutation(N); for each mini-batch B:
    L = softmax_cross_entropy(model(X[B]), y[B]); backward; optimizer.step().

    Parameters
    ----------
    model : Sequential-like (``__call__``, ``backward``, ``named_parameters``, ``state_dict``,
        ``load_state_dict``, ``train``, ``eval``, ``training``)
    optimizer : :class:`minicnn.optim.SGD` or ``Adam`` bound to ``model``
    X : (N, C, H, W) inputs, usually a host NumPy array; each batch is moved to the
        model's device and dtype
    y : (N,) integer labels
    epochs : total number of epochs (a resumed run continues up to this number)
    batch_size : int; the last batch of an epoch may be smaller
    seed : int, seeds the per-epoch shuffling (and ``augment``)
    val : optional ``(X_val, y_val)``, evaluated in eval mode after every epoch
    checkpoint : optional path of an ``.npz`` written atomically after every epoch
    resume : with an existing ``checkpoint``, load it and continue after its last epoch
    progress : print a per-batch bar (stderr, TTY only) and one line per epoch (stdout)
    augment : optional ``augment(x_batch, rng) -> x_batch`` on host arrays; ``rng`` is the
        epoch's generator, so augmentation is reproducible and resumable too

    Returns
    -------
    History with per-epoch ``loss``, ``acc``, ``val_acc``, ``seconds``
    Raises
    ------
    NonFiniteLoss : a mini-batch loss is NaN or inf; training stops before that batch's
        update, and the checkpoint keeps the last complete epoch (the model's parameters are
        those of the step before, which produced the non-finite loss: reload the checkpoint)
    """
    N = len(X)
    y = to_numpy(y)
    if y.shape != (N,):
        raise ValueError(f"labels must have shape ({N},), got {y.shape}")
    if N == 0 or batch_size < 1 or epochs < 0:
        raise ValueError(f"need N > 0, batch_size >= 1, epochs >= 0 "
                         f"(got N={N}, batch_size={batch_size}, epochs={epochs})")
    run = {"seed": int(seed), "batch_size": int(batch_size), "n_samples": int(N)}
    history, start = History(), 0
    if checkpoint is not None and resume and os.path.exists(checkpoint):
        start, history = _load_checkpoint(checkpoint, model, optimizer, run)
    device, dtype = _model_device_dtype(model)
    y_dev = asarray(y, device)  # NOTE: the labels cross once per run, not once per step
    bar = progress and sys.stderr.isatty()
    n_batches = -(-N // batch_size)
    checked = False
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        rng = np.random.default_rng((seed, epoch))  # depends on (seed, epoch) only: resumable
        order = rng.permutation(N)
        order_dev = asarray(order, device)
        model.train()
        # NOTE: the epoch's sums stay where the scores are (0-d arrays; the loss in float64):
        # reading them every step would be a host sync per step; they are read once, below
        loss_sum = correct = 0
        for i, (a, b) in enumerate(_batches(N, batch_size)):
            idx = order[a:b]
            xb = X[idx] if augment is None else augment(X[idx], rng)
            xb = asarray(xb, device, dtype)
            yb = y_dev[order_dev[a:b]]
            scores = model(xb)
            if not checked:  # once per run, on the host copy: CuPy wraps bad indices silently
                check_labels(y, scores.shape[1])
                checked = True
            loss, dscores = softmax_cross_entropy(scores, yb, sync=False)
            # NOTE: on the host every batch is checked (free); on a device that would be a sync
            # per step, so the epoch's summed loss is checked at its one sync below instead
            if device == "numpy" and not math.isfinite(float(loss)):
                if bar:
                    sys.stderr.write("\r\033[K")
                raise NonFiniteLoss(epoch + 1, epochs, i + 1, n_batches, float(loss),
                                    history, checkpoint)
            model.backward(dscores, need_dx=False)  # stores parameter grads only
            optimizer.step()
            loss_sum = loss_sum + loss * (b - a)  # sum over samples: batches may differ in size
            correct = correct + _correct(scores, yb)
            if bar:  # NOTE: a host sync per step, only with the interactive bar
                _bar(epoch, i + 1, n_batches, float(loss_sum) / b)
        xp = get_xp(scores)
        loss_sum, correct = to_numpy(xp.stack([loss_sum, correct.astype(np.float64)])).tolist()
        if not math.isfinite(loss_sum):  # a device run: some batch of this epoch went non-finite
            raise NonFiniteLoss(epoch + 1, epochs, None, n_batches, loss_sum, history, checkpoint)
        val_acc = model_accuracy(model, val[0], val[1]) if val is not None else None
        history.loss.append(loss_sum / N)
        history.acc.append(correct / N)
        history.val_acc.append(val_acc)
        history.seconds.append(time.perf_counter() - t0)
        if bar:
            sys.stderr.write("\r\033[K")  # clear the bar before the epoch line
            sys.stderr.flush()
        if progress:
            v = "-" if val_acc is None else f"{val_acc:.4f}"
            print(f"epoch {epoch + 1}/{epochs}  loss {history.loss[-1]:.4f}  "
                  f"acc {history.acc[-1]:.4f}  val_acc {v}  {history.seconds[-1]:.1f}s",
                  flush=True)
        if checkpoint is not None:
            _save_checkpoint(checkpoint, model, optimizer, epoch + 1, history, run)
    return history
