"""The CPU Mish (``agentcomm.policies.activations``) against torch's, values and gradients."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from agentcomm.policies.activations import _MIN_ELEMENTS, Mish, mish


def _big(generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """``[64, 512]`` values spanning the regimes: around 0, large +/-, and the clamp at 20."""
    x = torch.randn(64, 512, generator=generator, dtype=dtype) * 6
    x[0, :8] = torch.tensor([-1e4, -90.0, -20.0, 0.0, 19.9, 20.0, 20.1, 1e4], dtype=dtype)
    return x


def test_values_match_torch_mish_within_float32_rounding(generator):
    x = _big(generator)
    assert x.numel() >= _MIN_ELEMENTS
    ref = F.mish(x.double())
    got = mish(x)
    assert got.dtype == torch.float32 and got.shape == x.shape
    # torch's float32 kernel is itself ~7e-7 from float64; the composition stays within 2e-6.
    assert (got.double() - ref).abs().max().item() < 2e-6
    assert (F.mish(x).double() - ref).abs().max().item() < 2e-6
    assert torch.isfinite(got).all()
    assert got[0, 7].item() == 1e4  # mish(x) = x for large x, no overflow


def test_gradients_match_closed_form_in_float64(generator):
    x = _big(generator, torch.float64).requires_grad_()
    mish(x).backward(torch.ones_like(x))
    ref = x.detach().clone().requires_grad_()
    F.mish(ref).backward(torch.ones_like(ref))
    assert torch.isfinite(x.grad).all()
    torch.testing.assert_close(x.grad, ref.grad, rtol=1e-12, atol=1e-12)
    # And autograd's numerical check of the hand-written backward (float64, small input
    # tiled past the size threshold so the custom function is the one checked).
    y = torch.linspace(-8, 8, 64, dtype=torch.float64).repeat(_MIN_ELEMENTS // 64)
    assert torch.autograd.gradcheck(mish, (y.requires_grad_(),), fast_mode=True)


def test_float32_gradients_close_to_float64(generator):
    x = _big(generator).requires_grad_()
    mish(x).backward(torch.ones_like(x))
    ref = x.detach().double().requires_grad_()
    F.mish(ref).backward(torch.ones_like(ref))
    assert (x.grad.double() - ref.grad).abs().max().item() < 5e-6


@pytest.mark.parametrize("shape", [(1, 128), (8, 128)])
def test_small_tensors_are_torch_mish_exactly(generator, shape):
    """A batch-1 sampling step stays on torch's kernel (faster there), bit for bit."""
    x = torch.randn(*shape, generator=generator)
    assert x.numel() < _MIN_ELEMENTS
    assert torch.equal(mish(x), F.mish(x))


def test_no_grad_and_inference_paths_agree_with_autograd_path(generator):
    x = _big(generator)
    before = x.clone()
    with torch.inference_mode():
        a = mish(x)
    with torch.no_grad():
        b = mish(x.clone().requires_grad_())
    c = mish(x.clone().requires_grad_())
    assert torch.equal(a, b) and torch.equal(b, c.detach())
    assert torch.equal(x, before)  # the in-place steps work on fresh buffers only


def test_module_has_no_state_and_computes_mish(generator):
    module = Mish()
    assert module.state_dict() == {}
    x = _big(generator)
    assert torch.equal(module(x), mish(x))
