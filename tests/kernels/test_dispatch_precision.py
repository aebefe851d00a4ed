"""Per-statistic dispatch on CUDA and the TF32 switches of the torch path, checked on CPU.

The CUDA table is exercised with stand-in tensors that report ``is_cuda``; the switches are read
inside the torch backend's cuDNN weight-gradient call while a real statistic is computed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import gromo_kernels as gk
from gromo_kernels import _dispatch
from gromo_kernels import testing as T
from gromo_kernels._precision import TF32_ALLOWED, _tf32_switches, torch_fp32_precision
from gromo_kernels.geometry import Conv2dGeometry

MODES = (None, "ieee", "tf32x3", "tf32", "bf16")
README = Path(__file__).resolve().parents[2] / "README.md"


class _CudaStandIn:
    """Only what the dispatch reads of a tensor: its device kind."""

    is_cuda = True


def _switch_values() -> list:
    return [getattr(owner, name) for owner, name, _, _ in _tf32_switches()]


def _expected(precision) -> list:
    allowed = TF32_ALLOWED["ieee" if precision is None else precision]
    return [on if allowed else off for _, _, off, on in _tf32_switches()]


@pytest.mark.parametrize("precision", MODES)
def test_switches_set_inside_and_restored_after(precision):
    before = _switch_values()
    with torch_fp32_precision(precision):
        assert _switch_values() == _expected(precision)
    assert _switch_values() == before


def test_switches_restored_after_an_error():
    before = _switch_values()
    with pytest.raises(RuntimeError, match="inside"), torch_fp32_precision("tf32"):
        raise RuntimeError("inside")
    assert _switch_values() == before


def test_only_tf32_allows_tf32():
    assert TF32_ALLOWED == {"ieee": False, "tf32x3": False, "tf32": True, "bf16": False}


@pytest.mark.parametrize("precision", MODES)
def test_torch_m_runs_cudnn_with_the_modes_switches(precision, generator, monkeypatch):
    """The cuDNN weight gradient (M) sees TF32 off for None/ieee/tf32x3/bf16, on for tf32."""
    from gromo_kernels.torch_impl import conv2d as torch_conv2d

    seen = []
    real = torch_conv2d.conv_weight_grad

    def recording(*args, **kwargs):
        seen.append(_switch_values())
        return real(*args, **kwargs)

    monkeypatch.setattr(torch_conv2d, "conv_weight_grad", recording)
    x = torch.randn(2, 3, 6, 6, generator=generator)
    grad = torch.randn(2, 4, 6, 6, generator=generator)
    before = _switch_values()
    m = gk.conv2d_input_grad(x, grad, 3, padding=1, backend="torch", precision=precision)
    assert seen and all(v == _expected(precision) for v in seen)
    assert _switch_values() == before
    ref = T.conv2d_input_grad_reference(x, grad, Conv2dGeometry(3, 1, 1, 1), bias=True, precision=precision)
    T.assert_close_to_reference(m, ref, precision=precision, dtype=torch.float32, reduction_length=72)


@pytest.mark.parametrize("op", sorted(_dispatch.CUDA_AUTO))
def test_cuda_auto_follows_the_table(op, monkeypatch):
    monkeypatch.setattr(_dispatch, "triton_importable", lambda: True)
    monkeypatch.delenv("GROMO_KERNELS_BACKEND", raising=False)
    assert _dispatch.statistic_backend(op, "auto", _CudaStandIn()) == _dispatch.CUDA_AUTO[op]


def test_cuda_auto_table_choices():
    """The choices the README documents: triton for conv S and conv-of-conv, torch for GEMMs and M."""
    triton_ops = {op for op, be in _dispatch.CUDA_AUTO.items() if be == "triton"}
    assert triton_ops == {"conv2d_input_cov", "conv2d_restricted_growth_stats", "conv2d_full_growth_stats"}


def test_explicit_backend_and_environment_override_the_table(monkeypatch):
    monkeypatch.setattr(_dispatch, "triton_importable", lambda: True)
    cpu = torch.zeros(1)
    assert _dispatch.statistic_backend("conv2d_input_cov", "torch", cpu) == "torch"
    assert _dispatch.statistic_backend("conv2d_input_cov", "auto", cpu) == "torch"
    monkeypatch.setenv("GROMO_KERNELS_BACKEND", "torch")
    assert _dispatch.statistic_backend("conv2d_input_cov", "auto", cpu) == "torch"
    with pytest.raises(ValueError, match="backend"):
        _dispatch.statistic_backend("conv2d_input_cov", "cuda", cpu)


@pytest.mark.parametrize("kind", ["linear", "conv2d", "conv2d_restricted", "conv2d_full"])
def test_layer_names_follow_their_functions(kind, monkeypatch):
    monkeypatch.setattr(_dispatch, "triton_importable", lambda: True)
    monkeypatch.delenv("GROMO_KERNELS_BACKEND", raising=False)
    names = tuple(_dispatch.LAYER_STATISTIC[kind])
    got = _dispatch.layer_backends(kind, names, "auto", _CudaStandIn())
    assert got == {n: _dispatch.CUDA_AUTO[_dispatch.LAYER_STATISTIC[kind][n]] for n in names}
    if kind == "conv2d_full":
        assert got == {"s": "triton", "m": "torch", "e": "torch", "s_growth": "triton",
                       "m_prev": "triton", "cross_cov": "triton"}


def test_mixed_backends_in_one_layer_call(generator, monkeypatch):
    """A layer whose statistics go to two backends (as on CUDA) returns every one, correct."""
    import gromo_kernels.statistics as stats

    mix = {"s": "triton", "m": "torch", "e": "torch"}
    monkeypatch.setattr(stats, "layer_backends",
                        lambda kind, names, backend, *t: {n: mix[n] if backend == "auto" else backend
                                                          for n in names})
    x = torch.randn(2, 3, 5, 5, generator=generator)
    grad = torch.randn(2, 4, 5, 5, generator=generator)
    geometry = Conv2dGeometry(3, 1, 1, 1)
    out = gk.layer_statistics("conv2d", x, grad, cur=geometry, want=("e", "s", "m"))
    assert list(out) == ["e", "s", "m"]
    rows = 2 * 25
    T.assert_close_to_reference(out["s"], T.conv2d_input_cov_reference(x, geometry), precision=None,
                                dtype=torch.float32, reduction_length=rows)
    T.assert_close_to_reference(out["m"], T.conv2d_input_grad_reference(x, grad, geometry),
                                precision=None, dtype=torch.float32, reduction_length=rows)
    T.assert_close_to_reference(out["e"], T.grad_cov_reference(grad.movedim(1, -1).reshape(-1, 4)),
                                precision=None, dtype=torch.float32, reduction_length=rows)


def test_readme_dispatch_table_matches_the_code():
    """README's "Dispatch on CUDA" table lists every statistic with the backend the code picks."""
    text = README.read_text()
    section = text[text.index("## Dispatch on CUDA"):]
    rows = dict(re.findall(r"^\| `(\w+)` \| (torch|triton) \|", section, flags=re.MULTILINE))
    assert rows == _dispatch.CUDA_AUTO
