"""Growing normalisation layers (TINY, TMLR 2024): grow, extended_forward, get_growth_info."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gromo.modules.growing_normalisation import (
    GrowingBatchNorm1d,
    GrowingBatchNorm2d,
    GrowingGroupNorm,
    GrowingLayerNorm,
    base_norm_kwargs,
)


def _randomise_bn(bn: nn.Module, generator: torch.Generator) -> None:
    """Give every parameter and running statistic a non-trivial value."""
    c = bn.num_features
    with torch.no_grad():
        bn.weight.copy_(torch.rand(c, generator=generator, dtype=torch.float64) + 0.5)
        bn.bias.copy_(torch.randn(c, generator=generator, dtype=torch.float64))
        bn.running_mean.copy_(torch.randn(c, generator=generator, dtype=torch.float64))
        bn.running_var.copy_(torch.rand(c, generator=generator, dtype=torch.float64) + 0.5)


def _bn_eval_reference(x, mean, var, weight, bias, eps):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    x64 = x.detach().to("cpu", torch.float64)
    return (x64 - mean.view(shape)) / torch.sqrt(var.view(shape) + eps) * weight.view(shape) + bias.view(shape)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batchnorm2d_grow_defaults_keep_old_channels_and_normalise_new_ones(generator, device, dtype):
    bn = GrowingBatchNorm2d(3, device=device, dtype=dtype)
    _randomise_bn(bn, generator)
    bn.num_batches_tracked.fill_(7)
    old = {k: v.detach().to("cpu", torch.float64).clone() for k, v in bn.state_dict().items()}
    bn.grow(2)
    assert bn.num_features == 5
    assert isinstance(bn.weight, nn.Parameter) and bn.weight.requires_grad
    assert bn.weight.dtype == dtype and bn.running_var.device.type == device.type
    assert int(bn.num_batches_tracked) == 7
    mean = torch.cat([old["running_mean"], torch.zeros(2, dtype=torch.float64)])
    var = torch.cat([old["running_var"], torch.ones(2, dtype=torch.float64)])
    weight = torch.cat([old["weight"], torch.ones(2, dtype=torch.float64)])
    bias = torch.cat([old["bias"], torch.zeros(2, dtype=torch.float64)])
    bn.eval()
    x = torch.randn(4, 5, 3, 3, generator=generator, dtype=torch.float64).to(device, dtype)
    ref = _bn_eval_reference(x, mean, var, weight, bias, bn.eps)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(bn(x).to("cpu", torch.float64), ref, rtol=tol, atol=tol)
    # A new channel in eval mode is x / sqrt(1 + eps).
    torch.testing.assert_close(bn(x)[:, 4].to("cpu", torch.float64),
                               x[:, 4].to("cpu", torch.float64) / (1 + bn.eps) ** 0.5, rtol=tol, atol=tol)


def test_batchnorm_grow_with_values_converts_dtype_and_device(generator, device):
    bn = GrowingBatchNorm1d(2, device=device, dtype=torch.float64)
    values = [torch.randn(3, generator=generator) for _ in range(4)]
    values[3] = values[3].abs() + 0.1
    bn.grow(3, new_weights=values[0], new_biases=values[1], new_running_mean=values[2],
            new_running_var=values[3])
    for tensor, new in zip((bn.weight, bn.bias, bn.running_mean, bn.running_var), values):
        assert tensor.dtype == torch.float64 and tensor.device.type == device.type
        torch.testing.assert_close(tensor[2:].detach().cpu(), new.to(torch.float64), rtol=0, atol=0)
    x = torch.randn(6, 5, generator=generator, dtype=torch.float64).to(device)
    bn.train()
    out = bn(x)
    assert out.shape == (6, 5)
    # Training mode: each channel is standardised by the batch (biased) variance, then affine.
    xc = x.cpu()
    ref = (xc - xc.mean(0)) / torch.sqrt(xc.var(0, unbiased=False) + bn.eps) * bn.weight.detach().cpu() \
        + bn.bias.detach().cpu()
    torch.testing.assert_close(out.detach().cpu(), ref, rtol=1e-10, atol=1e-10)


def test_batchnorm1d_three_dim_input_after_growth(generator):
    bn = GrowingBatchNorm1d(2)
    bn.grow(1)
    x = torch.randn(3, 3, 7, generator=generator)
    bn.eval()
    torch.testing.assert_close(bn(x)[:, 2], x[:, 2] / (1 + bn.eps) ** 0.5)


def test_batchnorm_without_affine_or_running_stats_grows_feature_count_only(generator):
    bn = GrowingBatchNorm2d(2, affine=False, track_running_stats=False)
    bn.grow(3)
    assert bn.num_features == 5 and bn.weight is None and bn.running_mean is None
    x = torch.randn(4, 5, 2, 2, generator=generator, dtype=torch.float64).to(torch.float32)
    out = bn(x)
    ref = (x - x.mean((0, 2, 3), keepdim=True)) / torch.sqrt(x.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_batchnorm_with_zero_features_forwards_then_grows(generator):
    bn = GrowingBatchNorm2d(0)
    x = torch.randn(2, 0, 3, 3, generator=generator)
    assert bn(x).shape == (2, 0, 3, 3)
    bn.eval()
    assert bn(x).shape == (2, 0, 3, 3)
    bn.grow(2)
    y = torch.randn(2, 2, 3, 3, generator=generator)
    torch.testing.assert_close(bn(y), y / (1 + bn.eps) ** 0.5)


@pytest.mark.parametrize("bad", [0, -2, 1.5])
def test_batchnorm_grow_rejects_non_positive_sizes(bad):
    bn = GrowingBatchNorm2d(2)
    with pytest.raises(ValueError, match="additional_features"):
        bn.grow(bad)
    assert bn.num_features == 2


@pytest.mark.parametrize("arg", ["new_weights", "new_biases", "new_running_mean", "new_running_var"])
def test_batchnorm_grow_validates_every_tensor_before_mutating(arg, generator):
    bn = GrowingBatchNorm2d(2)
    kwargs = {"new_weights": torch.ones(3), arg: torch.randn(2, generator=generator)}
    with pytest.raises(ValueError, match=arg):
        bn.grow(3, **kwargs)
    assert bn.num_features == 2 and bn.weight.shape == (2,) and bn.running_var.shape == (2,)


def test_batchnorm_extended_forward_bypasses_extension_and_reports_growth_info(generator):
    bn = GrowingBatchNorm2d(3, name="bn_mid")
    x = torch.randn(4, 3, 2, 2, generator=generator)
    x_ext = torch.randn(4, 5, 2, 2, generator=generator)
    out, out_ext = bn.extended_forward(x, x_ext)
    torch.testing.assert_close(out, bn(x))
    assert out_ext is x_ext
    none_out, ext_only = bn.extended_forward(None, x_ext)
    assert none_out is None and ext_only is x_ext
    assert bn.get_growth_info() == {"num_features": 3, "name": "bn_mid"}
    assert "name=bn_mid" in bn.extra_repr() and "3" in repr(bn)


def test_batchnorm_extend_parameter_directly(generator):
    bn = GrowingBatchNorm1d(2)
    before = bn.weight.detach().clone()
    new = torch.randn(4, generator=generator)
    bn._extend_parameter("weight", 4, new, torch.ones, None, as_parameter=True)
    torch.testing.assert_close(bn.weight.detach(), torch.cat([before, new]))
    bn._extend_parameter("running_mean", 4, None, torch.zeros, None, as_parameter=False)
    assert "running_mean" in dict(bn.named_buffers()) and bn.running_mean.shape == (6,)
    with pytest.raises(ValueError, match="new_values"):
        bn._extend_parameter("bias", 3, torch.ones(2), torch.zeros, None)


def test_grown_batchnorm_parameters_train(generator):
    bn = GrowingBatchNorm2d(2)
    bn.grow(2)
    x = torch.randn(3, 4, 2, 2, generator=generator)
    bn(x).pow(2).mul(torch.arange(4.0).view(1, 4, 1, 1)).sum().backward()
    assert bn.weight.grad is not None and bn.weight.grad.shape == (4,)
    assert float(bn.weight.grad[3].abs()) > 0


def test_base_norm_kwargs_defaults():
    assert base_norm_kwargs == {"eps": 1e-5, "momentum": 0.1, "affine": True, "track_running_stats": True,
                                "num_groups": 1, "elementwise_affine": True, "bias": True}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layernorm_grows_first_normalised_dim(generator, device, dtype):
    ln = GrowingLayerNorm((3, 2, 2), device=device, dtype=dtype, name="ln")
    with torch.no_grad():
        ln.weight.copy_(torch.rand(3, 2, 2, generator=generator, dtype=torch.float64) + 0.5)
        ln.bias.copy_(torch.randn(3, 2, 2, generator=generator, dtype=torch.float64))
    old_w, old_b = ln.weight.detach().clone(), ln.bias.detach().clone()
    new_b = torch.randn(2, 2, 2, generator=generator, dtype=torch.float64)
    ln.grow(2, new_biases=new_b)
    assert ln.normalized_shape == (5, 2, 2)
    assert ln.get_growth_info() == {"num_features": 5, "normalized_shape": (5, 2, 2), "name": "ln"}
    torch.testing.assert_close(ln.weight[:3].detach(), old_w, rtol=0, atol=0)
    torch.testing.assert_close(ln.weight[3:].detach().cpu(), torch.ones(2, 2, 2, dtype=dtype), rtol=0, atol=0)
    torch.testing.assert_close(ln.bias[:3].detach(), old_b, rtol=0, atol=0)
    torch.testing.assert_close(ln.bias[3:].detach().cpu(), new_b.to(dtype), rtol=0, atol=0)
    x = torch.randn(4, 5, 2, 2, generator=generator, dtype=torch.float64).to(device, dtype)
    x64 = x.cpu().to(torch.float64)
    mu = x64.mean((1, 2, 3), keepdim=True)
    var = x64.var((1, 2, 3), unbiased=False, keepdim=True)
    ref = (x64 - mu) / torch.sqrt(var + ln.eps) * ln.weight.detach().cpu().double() + ln.bias.detach().cpu().double()
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(ln(x).detach().cpu().double(), ref, rtol=tol, atol=tol)
    out, ext = ln.extended_forward(x, x[:, :1])
    assert ext.shape == (4, 1, 2, 2)


def test_layernorm_grow_errors():
    ln = GrowingLayerNorm((3, 2))
    with pytest.raises(ValueError, match="additional_first_dim"):
        ln.grow(0)
    with pytest.raises(ValueError, match="new_weights"):
        ln.grow(2, new_weights=torch.ones(2, 3))
    assert ln.normalized_shape == (3, 2)


def test_layernorm_without_affine_grows():
    ln = GrowingLayerNorm(4, elementwise_affine=False)
    ln.grow(3)
    assert ln.normalized_shape == (7,) and ln.weight is None
    x = torch.arange(14.0).view(2, 7)
    torch.testing.assert_close(ln(x), nn.functional.layer_norm(x, (7,)))


def test_groupnorm_grow_keeps_groups_and_normalises(generator, device):
    gn = GrowingGroupNorm(2, 4, device=device, dtype=torch.float64, name="gn")
    with torch.no_grad():
        gn.weight.copy_(torch.rand(4, generator=generator, dtype=torch.float64) + 0.5)
    gn.grow(2)
    assert gn.num_channels == 6 and gn.num_groups == 2
    assert gn.get_growth_info() == {"num_features": 6, "num_channels": 6, "num_groups": 2, "name": "gn"}
    x = torch.randn(3, 6, 2, 2, generator=generator, dtype=torch.float64).to(device)
    ref = nn.functional.group_norm(x.cpu(), 2, gn.weight.detach().cpu(), gn.bias.detach().cpu(), gn.eps)
    torch.testing.assert_close(gn(x).detach().cpu(), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gn.bias[4:].detach().cpu(), torch.zeros(2, dtype=torch.float64))
    gn.grow(3, new_num_groups=3)
    assert gn.num_channels == 9 and gn.num_groups == 3


def test_groupnorm_grow_errors():
    gn = GrowingGroupNorm(2, 4)
    with pytest.raises(ValueError, match="divisible"):
        gn.grow(1)
    with pytest.raises(ValueError, match="additional_channels"):
        gn.grow(-1)
    with pytest.raises(ValueError, match="new_biases"):
        gn.grow(2, new_biases=torch.zeros(3))
    with pytest.raises(ValueError, match="new_num_groups"):
        gn.grow(2, new_num_groups=0)
    assert gn.num_channels == 4 and gn.weight.shape == (4,)
