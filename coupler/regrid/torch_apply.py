"""Differentiable application of regridding weights with torch sparse matrices.

:class:`TorchRegridder` is a :class:`torch.nn.Module` holding ``S`` (``n_b x n_a``) and its
transpose as sparse CSR buffers. Its forward pass is

    y = S @ (x * c)        (with the missing-value renormalisation of :mod:`.weights`)

where ``c`` is an optional multiplicative per-source-cell correction (for example a learned
forcing bias field). Gradients flow from ``y`` back to ``x`` and to ``c``; the backward pass is
the transposed sparse product ``S^T @ grad`` (custom autograd functions: torch CSR kernels on
CUDA/other devices, scipy.sparse on zero-copy views for CPU tensors, which is 2-4x faster there).
The weights themselves are constants.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from .crs import RegridError

__all__ = ["TorchRegridder"]


class _SparseMatmul(torch.autograd.Function):
    """``S @ x`` for a constant sparse ``S`` (torch CSR) with ``S^T @ g`` as the backward pass."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, S: torch.Tensor, ST: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.ST = ST
        return torch.sparse.mm(S, x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        return torch.sparse.mm(ctx.ST, grad), None, None


class _ScipyMatmul(torch.autograd.Function):
    """CPU path: ``x @ S^T`` with scipy.sparse on zero-copy numpy views, ``(S^T @ g^T)^T`` backwards.

    torch's CPU sparse kernels are 2-4x slower than scipy's for this shape (many time steps times
    a wide, very sparse matrix), mostly because they need ``x`` transposed and copied.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, mt: Any) -> torch.Tensor:  # type: ignore[override]
        ctx.mt = mt
        return torch.from_numpy(np.ascontiguousarray(x.detach().contiguous().numpy() @ mt))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        g = np.ascontiguousarray(grad.detach().numpy().T)  # (n_b, batch), small
        return torch.from_numpy((ctx.mt @ g).T), None  # (batch, n_a), a strided view is fine for autograd


def _csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, shape: tuple[int, int], dtype: torch.dtype,
         device: Any) -> torch.Tensor:
    coo = torch.sparse_coo_tensor(torch.as_tensor(np.vstack([rows, cols]), dtype=torch.int64),
                                  torch.as_tensor(vals, dtype=dtype), size=shape,
                                  check_invariants=True).coalesce()
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return coo.to_sparse_csr().to(device)


class TorchRegridder(torch.nn.Module):
    """Apply :class:`~coupler.regrid.weights.Weights` to torch tensors, differentiably.

    Parameters
    ----------
    weights:
        The weights.
    dtype:
        Floating dtype of the sparse matrices (default: ``torch.get_default_dtype()``); inputs
        are cast to it.
    device:
        Where the matrices live; inputs are moved there.
    cpu_kernel:
        ``"scipy"`` (default, faster) or ``"torch"``: which sparse product runs for CPU tensors.
        Other devices always use torch's sparse CSR kernels.
    """

    def __init__(self, weights: Any, dtype: torch.dtype | None = None, device: Any = None,
                 cpu_kernel: str = "scipy"):
        super().__init__()
        if cpu_kernel not in ("scipy", "torch"):
            raise RegridError(f"cpu_kernel must be 'scipy' or 'torch', got {cpu_kernel!r}")
        self.weights = weights
        dtype = dtype or torch.get_default_dtype()
        if not dtype.is_floating_point:
            raise RegridError(f"TorchRegridder dtype must be floating point, got {dtype}")
        m = weights.matrix.tocoo()
        n_b, n_a = weights.n_b, weights.n_a
        self.n_a, self.n_b = n_a, n_b
        self.register_buffer("S", _csr(m.row, m.col, m.data, (n_b, n_a), dtype, device), persistent=False)
        self.register_buffer("ST", _csr(m.col, m.row, m.data, (n_a, n_b), dtype, device), persistent=False)
        np_dtype = torch.empty((), dtype=dtype).numpy().dtype
        self._np = {}  # scipy copies for the CPU path, by numpy dtype
        if cpu_kernel == "scipy" and np_dtype in (np.float32, np.float64):
            self._np[np_dtype] = weights.matrix_t.astype(np_dtype)
        self.register_buffer("W", torch.as_tensor(weights.row_sums, dtype=dtype, device=device), persistent=False)
        self.register_buffer("unmapped", torch.as_tensor(weights.unmapped, device=device), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        return self.W.dtype

    @property
    def device(self) -> torch.device:
        return self.W.device

    def _mm(self, x2: torch.Tensor) -> torch.Tensor:
        """(batch, n_a) -> (batch, n_b)."""
        if x2.device.type == "cpu":
            mt = self._np.get(torch.empty((), dtype=x2.dtype).numpy().dtype)
            if mt is not None:
                return _ScipyMatmul.apply(x2, mt)
        return _SparseMatmul.apply(x2.t(), self.S, self.ST).t()

    def forward(self, x: torch.Tensor, correction: torch.Tensor | None = None, *, skipna: bool = True,
                min_valid_fraction: float = 0.0, chunk_size: int | None = None,
                flatten_dst: bool = False) -> torch.Tensor:
        """Regrid ``x`` of shape ``(..., *src_shape)`` or ``(..., n_a)``.

        ``correction`` (shape ``src_shape`` or ``(n_a,)``) multiplies every source value before
        regridding. Returns ``(..., *dst_shape)`` (``(..., n_b)`` with ``flatten_dst``).
        """
        if not torch.is_tensor(x):
            x = torch.as_tensor(x)
        lead, _ = self.weights._split_values(tuple(x.shape), "tensor values")
        x = x.to(device=self.device, dtype=self.dtype)
        nt = int(np.prod(lead)) if lead else 1
        x2 = x.reshape(nt, self.n_a)
        valid = ~torch.isnan(x2)
        missing = skipna and not bool(valid.all())
        if missing:
            # zero the missing values *before* any arithmetic so no NaN reaches a gradient
            x2 = torch.where(valid, x2, torch.zeros((), dtype=x2.dtype, device=x2.device))
        if correction is not None:
            c = correction.to(device=self.device, dtype=self.dtype)
            if tuple(c.shape) not in ((self.n_a,), self.weights.src_shape):
                raise RegridError(f"correction has shape {tuple(c.shape)}, expected {self.weights.src_shape} or "
                                  f"({self.n_a},)")
            x2 = x2 * c.reshape(1, self.n_a)
        if chunk_size is None:
            chunk_size = max(1, int(2e7 // max(self.n_a, 1)))
        chunk_size = max(1, int(chunk_size))
        outs = []
        for s in range(0, nt, chunk_size):
            xc = x2[s:s + chunk_size]
            vc = valid[s:s + chunk_size]
            if missing and not bool(vc.all()):
                num = self._mm(xc)
                with torch.no_grad():
                    V = self._mm(vc.to(self.dtype))
                    ok = (V > 0) & (V > min_valid_fraction * self.W)
                    scale = torch.where(ok, self.W / torch.where(V > 0, V, torch.ones_like(V)),
                                        torch.zeros_like(V))
                y = torch.where(ok, num * scale, torch.full_like(num, float("nan")))
            else:
                y = self._mm(xc)
            outs.append(y)
        out = torch.cat(outs, dim=0) if len(outs) > 1 else outs[0]
        if bool(self.unmapped.any()):
            out = out.masked_fill(self.unmapped.reshape(1, -1), float("nan"))
        shape = lead + ((self.n_b,) if flatten_dst else self.weights.dst_shape)
        return out.reshape(shape)
