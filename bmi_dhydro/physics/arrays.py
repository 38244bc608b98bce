"""One set of equations, two array types: the few operations the physics kernels need, for torch and numpy.

The kernels (:func:`~bmi_dhydro.physics.hbv.step`, the PET methods, the routing step) are written once against
:func:`ops`, which picks the namespace from the arguments: torch tensors run the torch operations exactly as
written before (same calls, same autograd conventions at kinks), numpy arrays run the numpy equivalents.  numpy
serves inference on tiny problems (one ngen catchment: ``n_units · nmul`` of a few dozen values), where torch's
per-operation dispatch, not the arithmetic, is the cost.  Elementwise arithmetic is IEEE in both and gives the
same numbers; transcendental functions (``**``, ``exp``, ...) and reductions may differ in the last bit.
"""

from __future__ import annotations

import numpy as np
import torch


class TorchOps:
    name = "torch"
    where = staticmethod(torch.where)

    @staticmethod
    def where0(cond, x):
        """``x`` where ``cond`` holds, else 0."""
        return torch.where(cond, x, torch.zeros_like(x))

    minimum = staticmethod(torch.minimum)
    zeros_like = staticmethod(torch.zeros_like)
    exp = staticmethod(torch.exp)
    sqrt = staticmethod(torch.sqrt)
    sin = staticmethod(torch.sin)
    cos = staticmethod(torch.cos)
    tan = staticmethod(torch.tan)
    arccos = staticmethod(torch.arccos)
    deg2rad = staticmethod(torch.deg2rad)
    cat = staticmethod(torch.cat)

    @staticmethod
    def clamp(x, lo=None, hi=None):
        return torch.clamp(x, min=lo, max=hi)

    @staticmethod
    def flip(x):
        return x.flip(-1)

    @staticmethod
    def numel(x):
        return x.numel()

    @staticmethod
    def cumsum(x):
        return x.cumsum(-1)

    @staticmethod
    def sum(x):
        return x.sum(-1)

    @staticmethod
    def as_array(x, like):
        if isinstance(x, torch.Tensor):
            return x
        dtype = like.dtype if isinstance(like, torch.Tensor) else torch.float64
        if isinstance(x, np.ndarray) and not x.flags.writeable:  # e.g. pandas values: torch wants writable memory
            x = x.copy()
        return torch.as_tensor(x, dtype=dtype)


class NumpyOps:
    name = "numpy"
    where = staticmethod(np.where)
    minimum = staticmethod(np.minimum)

    @staticmethod
    def where0(cond, x):
        return np.where(cond, x, 0.0)

    @staticmethod
    def zeros_like(x):
        return np.zeros(x.shape, x.dtype)  # np.zeros_like is 4x slower on small arrays
    exp = staticmethod(np.exp)
    sqrt = staticmethod(np.sqrt)
    sin = staticmethod(np.sin)
    cos = staticmethod(np.cos)
    tan = staticmethod(np.tan)
    arccos = staticmethod(np.arccos)
    deg2rad = staticmethod(np.deg2rad)

    @staticmethod
    def clamp(x, lo=None, hi=None):
        # max then min, as torch.clamp (NaN stays NaN); np.clip is several times slower on small arrays
        if lo is not None:
            x = np.maximum(x, lo)
        if hi is not None:
            x = np.minimum(x, hi)
        return x

    @staticmethod
    def cat(xs, dim):
        return np.concatenate(xs, axis=dim)

    @staticmethod
    def flip(x):
        return x[..., ::-1]

    @staticmethod
    def numel(x):
        return x.size

    @staticmethod
    def cumsum(x):
        return np.cumsum(x, axis=-1)

    @staticmethod
    def sum(x):
        return np.add.reduce(x, axis=-1)

    @staticmethod
    def as_array(x, like):
        if isinstance(x, np.ndarray):
            return x
        dtype = like.dtype if isinstance(like, np.ndarray) else np.float64
        return np.asarray(x, dtype=dtype)


TORCH = TorchOps()
NUMPY = NumpyOps()


def ops(*xs):
    """numpy operations when none of ``xs`` is a torch tensor and one is a numpy array, else torch operations."""
    found_numpy = False
    for x in xs:
        if isinstance(x, torch.Tensor):
            return TORCH
        if isinstance(x, np.ndarray):
            found_numpy = True
    return NUMPY if found_numpy else TORCH


__all__ = ["NUMPY", "TORCH", "NumpyOps", "TorchOps", "ops"]
