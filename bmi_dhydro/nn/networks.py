"""Parameter providers for the δHBV 2.0 split.

* :class:`NeuralParameters` — an MLP on static attributes gives the static physics parameters and the routing
  parameters; an LSTM on the normalised forcings plus attributes gives the dynamic (time-varying) parameters.
  Because only the LSTM sees time, one-step running (``dynamic_step``) and sequence running (``dynamic_sequence``)
  are the same computation.
* :class:`FixedParameters` — classic HBV with given parameter values (calibrated HBV, component swaps, tests).

``dynamic_step_numpy`` is ``dynamic_step`` for inference on numpy arrays: the same LSTM cell and head written out
in numpy over views of the weights (no copies: in-place weight updates are seen), for tiny problems where torch's
per-call overhead dominates (one ngen catchment).  Its numbers equal torch's to rounding (matrix products and
``exp``/``tanh`` may differ in the last bit).

Both return physical values (inside the physics bounds) shaped ``(n_units, nmul)`` for HBV parameters and
``(n_units,)`` for routing parameters.  Normalisation statistics are buffers, so they travel in the checkpoint.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ..physics import PARAM_BOUNDS, ROUTE_BOUNDS, descale

ROUTE_NAMES = ("route_a", "route_b")


def _descale_route(raw: torch.Tensor, name: str) -> torch.Tensor:
    lo, hi = ROUTE_BOUNDS[name]
    return lo + raw * (hi - lo)


class _NumpyLstm(NamedTuple):
    """numpy views of the weights ``dynamic_step_numpy`` uses (kept while the tensors' storage is unchanged)."""

    ptrs: tuple  # data_ptr of every source tensor when the views were taken
    sources: tuple  # the tensors themselves: holding them keeps their storage (and so the pointers) unique
    w_ih_t: np.ndarray  # (F + A, 4H)
    w_hh_t: np.ndarray  # (H, 4H)
    b_ih: np.ndarray
    b_hh: np.ndarray
    w_head_t: np.ndarray  # (H, n_dynamic * nmul)
    b_head: np.ndarray
    forc_mean: np.ndarray
    forc_std: np.ndarray
    sigmoid: object  # scipy.special.expit: one ufunc, no overflow warnings
    lo: np.ndarray  # (n_dynamic, 1) lower bounds of the dynamic parameters: descale for all of them at once
    span: np.ndarray  # (n_dynamic, 1) hi - lo


class NeuralParameters(nn.Module):
    """MLP (static + routing) and LSTM (dynamic) parameterisation."""

    def __init__(
        self,
        n_attributes: int,
        n_forcings: int,
        param_names: tuple[str, ...],
        dynamic: tuple[str, ...],
        nmul: int = 16,
        lstm_hidden: int = 64,
        mlp_hidden: int = 128,
        mlp_layers: int = 2,
        log_attributes: tuple[bool, ...] | None = None,
    ):
        super().__init__()
        unknown = [d for d in dynamic if d not in param_names]
        if unknown:
            raise ValueError(f"dynamic_params: expected names among {list(param_names)}, got {unknown}")
        self.param_names = tuple(param_names)
        self.dynamic = tuple(d for d in param_names if d in dynamic)
        self.static = tuple(p for p in param_names if p not in dynamic)
        self.nmul = nmul
        self.lstm_hidden = lstm_hidden
        self.n_attributes = n_attributes
        self.n_forcings = n_forcings

        layers: list[nn.Module] = []
        width = n_attributes
        for _ in range(mlp_layers):
            layers += [nn.Linear(width, mlp_hidden), nn.Tanh()]
            width = mlp_hidden
        layers.append(nn.Linear(width, len(self.static) * nmul + len(ROUTE_NAMES)))
        self.mlp = nn.Sequential(*layers)
        self.lstm = nn.LSTM(n_forcings + n_attributes, lstm_hidden) if self.dynamic else None
        self.lstm_head = nn.Linear(lstm_hidden, len(self.dynamic) * nmul) if self.dynamic else None

        # attributes taken as log(x) before normalisation (skewed ones: area, slope ...); from the model config, so
        # not stored in the state dict
        mask = torch.zeros(n_attributes, dtype=torch.bool)
        if log_attributes is not None:
            mask[:] = torch.as_tensor(list(log_attributes), dtype=torch.bool)
        self.register_buffer("attr_log", mask, persistent=False)
        self.register_buffer("attr_mean", torch.zeros(n_attributes))
        self.register_buffer("attr_std", torch.ones(n_attributes))
        self.register_buffer("forc_mean", torch.zeros(n_forcings))
        self.register_buffer("forc_std", torch.ones(n_forcings))

    # -- normalisation -------------------------------------------------------------------------------------------
    def set_normalization(self, attr_mean, attr_std, forc_mean, forc_std) -> None:
        for name, value in (("attr_mean", attr_mean), ("attr_std", attr_std), ("forc_mean", forc_mean), ("forc_std", forc_std)):
            getattr(self, name).copy_(torch.as_tensor(value, dtype=getattr(self, name).dtype))

    def transform_attributes(self, attrs: torch.Tensor) -> torch.Tensor:
        """Physical attributes → the network's input scale before normalisation (log where configured)."""
        if not bool(self.attr_log.any()):
            return attrs
        return torch.where(self.attr_log, torch.log(attrs.clamp(min=1e-6)), attrs)

    def normalize_attributes(self, attrs: torch.Tensor) -> torch.Tensor:
        return (self.transform_attributes(attrs) - self.attr_mean) / self.attr_std

    def normalize_forcings(self, forc: torch.Tensor) -> torch.Tensor:
        return (forc - self.forc_mean) / self.forc_std

    # -- parameters ----------------------------------------------------------------------------------------------
    def lstm_state_size(self) -> int:
        return self.lstm_hidden if self.dynamic else 0

    def static_parameters(self, attrs: torch.Tensor):
        """``attrs`` (n, A) physical → (dict name → (n, nmul), dict route name → (n,), normalised attrs)."""
        a = self.normalize_attributes(attrs)
        raw = torch.sigmoid(self.mlp(a))
        n = attrs.shape[0]
        nst = len(self.static)
        hbv = raw[:, : nst * self.nmul].reshape(n, nst, self.nmul)
        params = {name: descale(hbv[:, i, :], name) for i, name in enumerate(self.static)}
        route = {name: _descale_route(raw[:, nst * self.nmul + i], name) for i, name in enumerate(ROUTE_NAMES)}
        return params, route, a

    def dynamic_sequence(self, forc: torch.Tensor, attrs_norm: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        """``forc`` (T, n, F) physical, returns (dict name → (T, n, nmul), h, c)."""
        if not self.dynamic:
            return {}, h, c
        t_len, n, _ = forc.shape
        x = torch.cat([self.normalize_forcings(forc), attrs_norm.unsqueeze(0).expand(t_len, n, -1)], dim=-1)
        low = self.__dict__.get("lstm_autocast")
        if low is None:
            out, (h1, c1) = self.lstm(x, (h.unsqueeze(0), c.unsqueeze(0)))
        else:  # mixed precision (training only): the LSTM's matrix products in ``low``, everything after in x's dtype
            with torch.autocast(x.device.type, dtype=low):
                out, (h1, c1) = self.lstm(x, (h.unsqueeze(0), c.unsqueeze(0)))
            out, h1, c1 = out.to(x.dtype), h1.to(x.dtype), c1.to(x.dtype)
        raw = torch.sigmoid(self.lstm_head(out)).reshape(t_len, n, len(self.dynamic), self.nmul)
        params = {name: descale(raw[:, :, i, :], name) for i, name in enumerate(self.dynamic)}
        return params, h1[0], c1[0]

    def dynamic_step(self, forc: torch.Tensor, attrs_norm: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        """``forc`` (n, F), returns (dict name → (n, nmul), h, c); the same computation as one sequence step.

        Without autograd (inference: the BMI, ``dhydro run``) the attributes' share of the LSTM's input gates,
        ``attrs_norm @ W_ih[:, F:]ᵀ + b_ih + b_hh``, is computed once per set of units and weights and kept with
        ``attrs_norm``; a step then multiplies only the F forcings and the hidden state (the same cell, equal to the
        fused LSTM to rounding: tests/test_model.py)."""
        if torch.is_grad_enabled() or self.__dict__.get("lstm_autocast") is not None or not self.dynamic:
            params, h, c = self.dynamic_sequence(forc.unsqueeze(0), attrs_norm, h, c)
            return {k: v[0] for k, v in params.items()}, h, c
        lp = self.lstm._parameters
        w_ih, w_hh, b_ih, b_hh = lp["weight_ih_l0"], lp["weight_hh_l0"], lp["bias_ih_l0"], lp["bias_hh_l0"]
        nf = self.n_forcings
        key = tuple((t.data_ptr(), t._version) for t in (w_ih, b_ih, b_hh, attrs_norm))
        cached = getattr(attrs_norm, "_dhydro_static_gates", None)
        if cached is None or cached[0] != key:
            gates0 = torch.addmm(b_ih + b_hh, attrs_norm, w_ih[:, nf:].t())
            cached = (key, gates0, w_ih[:, :nf].t().contiguous(), w_hh.t().contiguous())
            attrs_norm._dhydro_static_gates = cached  # lives and dies with these units' normalised attributes
        _, gates0, w_f_t, w_hh_t = cached
        gates = torch.addmm(gates0, self.normalize_forcings(forc), w_f_t)
        gates.addmm_(h, w_hh_t)
        hs = self.lstm_hidden
        act = torch.sigmoid(gates)  # i, f, o (the g quarter is replaced by its tanh)
        g = torch.tanh(gates[:, 2 * hs: 3 * hs])
        c1 = torch.addcmul(act[:, hs: 2 * hs] * c, act[:, :hs], g)
        h1 = act[:, 3 * hs:] * torch.tanh(c1)
        raw = torch.sigmoid(self.lstm_head(h1)).reshape(forc.shape[0], len(self.dynamic), self.nmul)
        return {name: descale(raw[:, i, :], name) for i, name in enumerate(self.dynamic)}, h1, c1

    def _numpy_lstm(self) -> _NumpyLstm:
        lstm, head = self._modules["lstm"], self._modules["lstm_head"]
        lp, hp = lstm._parameters, head._parameters
        sources = (lp["weight_ih_l0"], lp["weight_hh_l0"], lp["bias_ih_l0"], lp["bias_hh_l0"], hp["weight"], hp["bias"],
                   self._buffers["forc_mean"], self._buffers["forc_std"])
        ptrs = tuple(map(torch.Tensor.data_ptr, sources))
        cache = self.__dict__.get("_np_lstm")
        if cache is not None and cache.ptrs == ptrs:
            return cache
        if any(t.device.type != "cpu" for t in sources):
            raise RuntimeError("dynamic_step_numpy: the network is not on the CPU")
        from scipy.special import expit

        w_ih, w_hh, b_ih, b_hh, w_head, b_head, fm, fs = (t.detach().numpy() for t in sources)
        bounds = np.array([PARAM_BOUNDS[p] for p in self.dynamic])  # float64, as descale's Python floats
        lo, span = bounds[:, :1].astype(w_head.dtype), (bounds[:, 1:] - bounds[:, :1]).astype(w_head.dtype)
        cache = _NumpyLstm(ptrs, sources, w_ih.T, w_hh.T, b_ih, b_hh, w_head.T, b_head, fm, fs, expit, lo, span)
        self.__dict__["_np_lstm"] = cache
        return cache

    def dynamic_step_numpy(self, forc: np.ndarray, attrs_norm: np.ndarray, h: np.ndarray, c: np.ndarray):
        """:meth:`dynamic_step` on numpy arrays (inference only): the LSTM cell as torch computes it (gates in the
        order i, f, g, o; ``c' = f c + i g``, ``h' = o tanh(c')``), then the head."""
        if not self.dynamic:
            return {}, h, c
        w = self._numpy_lstm()
        sig = w.sigmoid
        x = np.concatenate([(forc - w.forc_mean) / w.forc_std, attrs_norm], axis=-1)
        gates = (h @ w.w_hh_t + w.b_hh) + (x @ w.w_ih_t + w.b_ih)
        hs = self.lstm_hidden
        act = sig(gates)  # i, f and o; the g quarter is replaced by its tanh
        g = np.tanh(gates[:, 2 * hs: 3 * hs])
        c1 = act[:, hs: 2 * hs] * c + act[:, :hs] * g
        h1 = act[:, 3 * hs:] * np.tanh(c1)
        raw = sig(h1 @ w.w_head_t + w.b_head).reshape(forc.shape[0], len(self.dynamic), self.nmul)
        values = w.lo + raw * w.span  # descale, every dynamic parameter in one go
        params = {name: values[:, i, :] for i, name in enumerate(self.dynamic)}
        return params, h1, c1


@contextmanager
def lstm_precision(provider: nn.Module, dtype: torch.dtype | None):
    """Run the provider's LSTM under ``torch.autocast(dtype)`` inside the block (``None``: unchanged).

    For training only: bfloat16 matrix products (AMX/AVX-512-BF16 on recent x86 CPUs, tensor cores on GPUs) with
    float32 weights, optimiser state, head, physics and outputs.  Outside the block the model is float32 again, so
    validation, checkpoints and every inference path are unaffected."""
    if dtype is None or not getattr(provider, "dynamic", ()):
        yield
        return
    provider.__dict__["lstm_autocast"] = dtype
    try:
        yield
    finally:
        provider.__dict__.pop("lstm_autocast", None)


class FixedParameters(nn.Module):
    """Given parameter values: scalars or per-unit values, ``nmul`` 1, no dynamic parameters."""

    def __init__(self, values: dict[str, torch.Tensor], param_names: tuple[str, ...]):
        super().__init__()
        missing = [p for p in param_names if p not in values]
        if missing:
            raise ValueError(f"parameters: missing values for {missing} (expected all of {list(param_names)})")
        self.param_names = tuple(param_names)
        self.static = tuple(param_names)
        self.dynamic: tuple[str, ...] = ()
        self.nmul = 1
        for name in list(param_names) + list(ROUTE_NAMES):
            v = values.get(name, torch.tensor(0.0, dtype=torch.float64))
            self.register_buffer("p_" + name, torch.as_tensor(v, dtype=torch.float64).reshape(-1))

    def lstm_state_size(self) -> int:
        return 0

    def value(self, name: str) -> torch.Tensor:
        return getattr(self, "p_" + name)

    def set_value(self, name: str, value) -> None:
        buf = getattr(self, "p_" + name)
        new = torch.as_tensor(value, dtype=buf.dtype).reshape(-1)
        setattr(self, "p_" + name, new.clone())

    def static_parameters(self, attrs: torch.Tensor):
        n = attrs.shape[0]

        def per_unit(name):
            v = self.value(name).to(attrs.dtype)
            if v.numel() not in (1, n):
                raise ValueError(f"parameter {name}: expected 1 or {n} values (one per unit), got {v.numel()}")
            return v.expand(n) if v.numel() == 1 else v

        params = {name: per_unit(name).unsqueeze(-1) for name in self.static}
        route = {name: per_unit(name) for name in ROUTE_NAMES}
        return params, route, attrs

    def dynamic_sequence(self, forc, attrs_norm, h, c):
        return {}, h, c

    def dynamic_step(self, forc, attrs_norm, h, c):
        return {}, h, c

    def dynamic_step_numpy(self, forc, attrs_norm, h, c):
        return {}, h, c
