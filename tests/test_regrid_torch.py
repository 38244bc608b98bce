"""Differentiable torch application of regridding weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from coupler.regrid import RegridError, Weights


def random_weights(n_a=12, n_b=5, src_dims=(4, 3), seed=0, unmapped=False):
    rng = np.random.default_rng(seed)
    rows, cols, vals = [], [], []
    for j in range(n_b - (1 if unmapped else 0)):
        k = rng.choice(n_a, size=4, replace=False)
        v = rng.random(4)
        rows += [j] * 4
        cols += list(k)
        vals += list(v / v.sum())
    return Weights(n_a=n_a, n_b=n_b, row=rows, col=cols, S=vals, src_grid_dims=src_dims, method="conserve",
                   norm_type="fracarea")


@pytest.mark.parametrize("kernel", ["scipy", "torch"])
def test_forward_matches_numpy_including_missing_values(kernel):
    w = random_weights(unmapped=True)
    rt = w.to_torch(dtype=torch.float64, cpu_kernel=kernel)
    x = np.random.default_rng(1).normal(size=(6, 3, 4))
    x[2, 0, 1] = np.nan
    x[4, 2, 3] = np.nan
    got = rt(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(got, w.apply(x), rtol=1e-13, equal_nan=True)
    assert np.isnan(got[:, -1]).all()  # the unmapped destination
    np.testing.assert_allclose(rt(torch.as_tensor(x), chunk_size=2).numpy(), w.apply(x), rtol=1e-13, equal_nan=True)
    np.testing.assert_allclose(rt(torch.as_tensor(x), min_valid_fraction=0.9).numpy(),
                               w.apply(x, min_valid_fraction=0.9), rtol=1e-13, equal_nan=True)
    # float32 default
    rt32 = w.to_torch(cpu_kernel=kernel)
    y32 = rt32(torch.as_tensor(x, dtype=torch.float32))
    assert y32.dtype == torch.float32
    np.testing.assert_allclose(y32.numpy(), w.apply(x), rtol=1e-5, equal_nan=True)


@pytest.mark.parametrize("kernel", ["scipy", "torch"])  # CPU kernels; "torch" is the path used on CUDA
def test_gradcheck_values_and_correction(kernel):
    w = random_weights()
    rt = w.to_torch(dtype=torch.float64, cpu_kernel=kernel)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 12, dtype=torch.float64, generator=gen, requires_grad=True)
    c = (1.0 + 0.1 * torch.randn(12, dtype=torch.float64, generator=gen)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: rt(a, correction=b), (x, c))
    # with missing values (every destination keeps a valid source): gradients of the renormalised path
    xm = x.detach().clone()
    xm[0, w.col[0]] = float("nan")
    xm[2, w.col[5]] = float("nan")
    xm.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: rt(a, correction=b), (xm, c))


def test_gradient_is_the_transposed_matrix():
    w = random_weights()
    rt = w.to_torch(dtype=torch.float64)
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 5, dtype=torch.float64)
    (rt(x) * g).sum().backward()
    expect = g.numpy() @ w.matrix.toarray()
    np.testing.assert_allclose(x.grad.reshape(2, 12).numpy(), expect, rtol=1e-12)


def test_learn_a_forcing_correction():
    # recover a multiplicative bias of the source field from destination observations
    w = Weights(n_a=4, n_b=4, row=[0, 1, 1, 2, 2, 3], col=[0, 1, 2, 2, 3, 3], S=[1, .5, .5, .5, .5, 1],
                src_grid_dims=[2, 2], method="conserve", norm_type="fracarea")
    rt = w.to_torch(dtype=torch.float64)
    x = torch.rand(50, 2, 2, dtype=torch.float64) + 0.5
    true_c = torch.tensor([1.2, 0.8, 1.0, 1.5], dtype=torch.float64)
    target = rt(x, correction=true_c).detach()
    c = torch.ones(4, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([c], max_iter=100, tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        loss = ((rt(x, correction=c) - target) ** 2).mean()
        loss.backward()
        return loss

    opt.step(closure)
    np.testing.assert_allclose(c.detach().numpy(), true_c.numpy(), rtol=1e-6)


def test_shape_errors():
    rt = random_weights().to_torch()
    with pytest.raises(RegridError, match="do not match the weights' source grid"):
        rt(torch.zeros(2, 5, 4))
    with pytest.raises(RegridError, match="correction has shape"):
        rt(torch.zeros(2, 12), correction=torch.ones(11))
    with pytest.raises(RegridError, match="floating point"):
        random_weights().to_torch(dtype=torch.int64)
    with pytest.raises(RegridError, match="cpu_kernel"):
        random_weights().to_torch(cpu_kernel="mkl")
