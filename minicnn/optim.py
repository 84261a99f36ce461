"""Optimisers: SGD (with momentum / Nesterov) and Adam, with PyTorch's update rules.

An optimiser holds no parameters of its own. Each ``step()`` asks the model for
``named_parameters()`` -> ``[(key, p, grad), ...]`` and updates every ``p`` *in place*
(``p -= ...``), so the layers keep the same array objects. Per-parameter state
(momentum buffers, Adam moments) lives in ``self.state[key]``, keyed like
``state_dict()``, so a checkpoint can save and restore it.

References: torch.optim.SGD and torch.optim.Adam docs (the "algorithm" boxes);
Adam is Kingma & Ba, arXiv:1412.6980v9, Algorithm 1.
"""

from __future__ import annotations

from .backend import asarray, device_of, get_xp, to_numpy


class Optimizer:
    """Base class: parameter iteration, per-key state and (de)serialisation.

    Subclasses set ``_hyper`` (names of scalar hyper-parameters saved in the state
    dict) and ``_buffers`` (names of per-parameter arrays) and implement ``_update``.
    """

    _hyper: tuple = ()
    _buffers: tuple = ()

    def __init__(self, model, lr):
        if lr < 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        self.model = model
        self.lr = float(lr)  # settable between steps, e.g. by a schedule
        self.state = {}  # key -> {"step": int, <buffer name>: array}

    def __repr__(self):
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in ("lr",) + self._hyper)
        return f"{type(self).__name__}({args})"

    def step(self):
        """Update every parameter that has a gradient, in place; skip those whose grad is None."""
        for key, p, grad in self.model.named_parameters():
            if grad is None:
                continue
            if grad.shape != p.shape:
                raise ValueError(f"{key}: grad shape {grad.shape} != parameter shape {p.shape}")
            st = self.state.setdefault(key, {"step": 0})
            # create each buffer lazily, or adopt a loaded one to p's device and dtype
            for name in self._buffers:
                buf = st.get(name)
                if buf is None or device_of(buf) != device_of(p) or buf.dtype != p.dtype:
                    st[name] = (asarray(buf, device_of(p), p.dtype) if buf is not None
                                else get_xp(p).zeros_like(p))
                if st[name].shape != p.shape:
                    raise ValueError(f"{key}: optimizer {name} shape {st[name].shape} "
                                     f"!= parameter shape {p.shape}")
            st["step"] += 1
            self._update(p, grad, st)

    def _update(self, p, grad, st):  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self):
        """Return ``{"scalars": JSON-able dict, "arrays": {name: host ndarray}}``.

        ``scalars`` holds the optimiser type, ``lr``, the hyper-parameters and each key's
        step count; ``arrays`` holds buffers under ``"<param key>/<buffer name>"``, so both
        parts can be stored in one ``.npz`` (scalars as JSON, arrays as entries).
        """
        scalars = {"type": type(self).__name__, "lr": self.lr,
                   "hyper": {k: _jsonable(getattr(self, k)) for k in self._hyper},
                   "steps": {key: int(st["step"]) for key, st in self.state.items()}}
        arrays = {f"{key}/{name}": to_numpy(st[name]).copy()
                  for key, st in self.state.items() for name in self._buffers if name in st}
        return {"scalars": scalars, "arrays": arrays}

    def load_state_dict(self, state):
        """Restore from :meth:`state_dict` output; checks type, hyper-parameters and keys.

        Arrays stay on the host here and move to each parameter's device and dtype on
        the next ``step()``.
        """
        scalars, arrays = state["scalars"], state["arrays"]
        if scalars.get("type") != type(self).__name__:
            raise ValueError(f"optimizer state is for {scalars.get('type')!r}, "
                             f"not {type(self).__name__!r}")
        hyper = scalars.get("hyper", {})
        unknown = sorted(set(hyper) - set(self._hyper))
        if unknown:
            raise ValueError(f"unknown {type(self).__name__} hyper-parameters {unknown}")
        old = {k: getattr(self, k) for k in self._hyper}
        for k, v in hyper.items():  # first, so that _buffers reflects the saved momentum
            setattr(self, k, tuple(v) if isinstance(v, list) else v)
        try:
            new_state = {key: {"step": int(n)} for key, n in scalars["steps"].items()}
            for name, arr in arrays.items():
                key, _, buf = name.rpartition("/")
                if key not in new_state or buf not in self._buffers:
                    raise ValueError(f"unexpected optimizer state entry {name!r}")
                new_state[key][buf] = to_numpy(arr).copy()
        except Exception:
            for k, v in old.items():  # leave the optimiser as it was
                setattr(self, k, v)
            raise
        self.lr = float(scalars["lr"])
        self.state = new_state


def _jsonable(v):
    return list(v) if isinstance(v, tuple) else v


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov and L2 weight decay.

    g   = grad + weight_decay * p
    buf = g                        (first step)        torch.optim.SGD, dampening = 0
    buf = momentum * buf + g       (later steps)
    d   = g + momentum * buf       (nesterov)   else   d = buf   (or d = g if momentum == 0)
    p  <- p - lr * d

    Parameters
    ----------
    model : object with ``named_parameters()`` -> [(key, p, grad_or_None), ...]
    lr : float learning rate
    momentum, weight_decay : float >= 0
    nesterov : bool, needs momentum > 0
    """

    _hyper = ("momentum", "weight_decay", "nesterov")

    def __init__(self, model, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(model, lr)
        if momentum < 0 or weight_decay < 0:
            raise ValueError("momentum and weight_decay must be >= 0")
        if nesterov and momentum <= 0:
            raise ValueError("nesterov momentum needs momentum > 0")
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        self.nesterov = bool(nesterov)

    @property
    def _buffers(self):
        # NOTE: a property, because load_state_dict may restore a different momentum.
        return ("momentum_buffer",) if self.momentum else ()

    def _update(self, p, grad, st):
        g = grad + self.weight_decay * p if self.weight_decay else grad
        if self.momentum:
            buf = st["momentum_buffer"]
            if st["step"] == 1:
                buf[...] = g  # NOTE: torch starts the buffer at g (= momentum*0 + g)
            else:
                buf *= self.momentum
                buf += g
            d = g + self.momentum * buf if self.nesterov else buf
        else:
            d = g
        p -= self.lr * d  # in place: the layer keeps its array object


class Adam(Optimizer):
    """Adam with bias correction; weight decay is L2 added to the gradient (torch.optim.Adam).

    g     = grad + weight_decay * p
    m     = beta1 * m + (1 - beta1) * g                       Kingma & Ba, Alg. 1
    v     = beta2 * v + (1 - beta2) * g**2
    p    <- p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Parameters
    ----------
    model : object with ``named_parameters()``
    lr : float
    betas : (beta1, beta2) in [0, 1)
    eps : float, added to the denominator (after bias correction, as torch does)
    weight_decay : float >= 0
    """

    _hyper = ("betas", "eps", "weight_decay")
    _buffers = ("exp_avg", "exp_avg_sq")

    def __init__(self, model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(model, lr)
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError("eps and weight_decay must be >= 0")
        self.betas = (float(b1), float(b2))
        self.eps, self.weight_decay = float(eps), float(weight_decay)

    def _update(self, p, grad, st):
        xp = get_xp(p)
        b1, b2 = self.betas
        t = st["step"]
        g = grad + self.weight_decay * p if self.weight_decay else grad
        m, v = st["exp_avg"], st["exp_avg_sq"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * (g * g)
        step_size = self.lr / (1 - b1**t)
        denom = xp.sqrt(v) / (1 - b2**t) ** 0.5 + self.eps
        p -= step_size * (m / denom)
