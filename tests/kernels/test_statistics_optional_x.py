"""layer_statistics with x=None: the statistics that do not read x (e, s_growth, m_prev) from x_prev and
grad alone, equal to the float64 references, on the torch path and on the fused triton path (under
TRITON_INTERPRET=1 on CPU, at tiny shapes); a wanted statistic that reads x raises, naming both.

A conv's input grid then comes from x_prev and the previous geometry: the references are computed
with a random x of that grid (m_prev and s_growth do not depend on it).
"""

from __future__ import annotations

import pytest
import torch

import gromo_kernels as gk
from gromo_kernels import testing
from gromo_kernels._precision import accumulate_dtype

PREV = gk.Conv2dGeometry(3, 1, 1)
CUR = gk.Conv2dGeometry((3, 2), (2, 1), (1, 0), (1, 2))
CONV_KINDS = ("conv2d_restricted", "conv2d_full")
WANT = ("e", "s_growth", "m_prev")


def rand(shape, generator, device):
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(device, torch.float32)


def check(out, ref, *, length, name):
    assert out.dtype == accumulate_dtype(torch.float32), name
    testing.assert_close_to_reference(out, ref, precision=None, dtype=torch.float32,
                                      reduction_length=length, name=name)


def conv_operands(generator, device, prev=PREV, n=2, c_prev=2, c=3, c_out=4):
    """x_prev, the x of prev's output grid (for the references only), grad and the row count."""
    x_prev = rand((n, c_prev, 6, 7), generator, device)
    grid = prev.output_size(6, 7)
    x = rand((n, c, *grid), generator, device)
    ho, wo = CUR.output_size(*grid)
    return x_prev, x, rand((n, c_out, ho, wo), generator, device), n * ho * wo


def conv_references(kind, x_prev, x, grad, prev=PREV):
    refs = {"e": testing.grad_cov_reference(grad, channel_dim=1)}
    if kind == "conv2d_restricted":
        growth = testing.conv2d_restricted_growth_stats_reference(x_prev, x, grad, prev=prev, cur=CUR)
        refs.update(s_growth=testing.conv2d_input_cov_reference(x_prev, prev), m_prev=growth.m_prev)
    else:
        growth = testing.conv2d_full_growth_stats_reference(x_prev, x, grad, prev=prev, cur=CUR)
        refs.update(s_growth=growth.s_growth, m_prev=growth.m_prev)
    return refs


def conv_length(kind, name, rows):
    return rows * CUR.kernel_area if (kind, name) == ("conv2d_full", "s_growth") else rows


BACKENDS = ["torch", pytest.param("triton", marks=pytest.mark.interpreter)]


@pytest.fixture
def backend(request):
    if request.param == "triton":
        pytest.importorskip("triton")
    return request.param


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("kind", CONV_KINDS)
@pytest.mark.parametrize("prev", [PREV, gk.Conv2dGeometry(3, 2, 0)], ids=["same", "strided"])
def test_conv_without_x_matches_reference(generator, device, backend, kind, prev):
    x_prev, x, grad, rows = conv_operands(generator, device, prev)
    refs = conv_references(kind, x_prev, x, grad, prev)
    for want in (WANT, ("m_prev",), ("s_growth",), ("e", "m_prev")):
        out = gk.layer_statistics(kind, None, grad, x_prev=x_prev, prev=prev, cur=CUR, want=want,
                                  backend=backend)
        assert tuple(out) == want
        for name in want:
            check(out[name], refs[name], length=conv_length(kind, name, rows), name=name)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_linear_without_x_matches_reference(generator, device, backend):
    x_prev, grad = rand((3, 4, 5), generator, device), rand((3, 4, 2), generator, device)
    refs = {"e": testing.grad_cov_reference(grad), "s_growth": testing.linear_input_cov_reference(x_prev),
            "m_prev": testing.linear_input_grad_reference(x_prev, grad)}
    for want in (WANT, ("m_prev",), ("s_growth",)):
        out = gk.layer_statistics("linear", None, grad, x_prev=x_prev, want=want, backend=backend)
        assert tuple(out) == want
        for name in want:
            check(out[name], refs[name], length=12, name=name)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("kind", ("linear", *CONV_KINDS))
def test_want_none_without_x_gives_what_the_operands_allow(generator, device, backend, kind):
    if kind == "linear":
        x_prev, grad = rand((4, 3), generator, device), rand((4, 2), generator, device)
        geometry = {}
    else:
        x_prev, _, grad, _ = conv_operands(generator, device)
        geometry = dict(prev=PREV, cur=CUR)
    out = gk.layer_statistics(kind, None, grad, x_prev=x_prev, backend=backend, **geometry)
    assert tuple(out) == WANT


@pytest.mark.interpreter
@pytest.mark.parametrize("kind", CONV_KINDS)
def test_growth_only_without_x_keeps_the_fused_triton_path(generator, device, kind, monkeypatch):
    """x=None growth requests reach layer_statistics_triton with x=None: one fused call."""
    triton_impl = pytest.importorskip("gromo_kernels.triton_impl")
    calls = []
    real = triton_impl.layer_statistics_triton

    def spy(kind, x, grad, **kwargs):
        calls.append((kind, x, kwargs["names"]))
        return real(kind, x, grad, **kwargs)

    monkeypatch.setattr(triton_impl, "layer_statistics_triton", spy)
    x_prev, x, grad, rows = conv_operands(generator, device)
    out = gk.layer_statistics(kind, None, grad, x_prev=x_prev, prev=PREV, cur=CUR,
                              want=("s_growth", "m_prev"), backend="triton")
    assert calls == [(kind, None, ("s_growth", "m_prev"))]
    refs = conv_references(kind, x_prev, x, grad)
    for name in ("s_growth", "m_prev"):
        check(out[name], refs[name], length=conv_length(kind, name, rows), name=name)


@pytest.mark.parametrize("name", ["s", "m", "cross_cov"])
@pytest.mark.parametrize("kind", ("linear", *CONV_KINDS))
def test_a_statistic_reading_x_without_x_raises(generator, device, kind, name):
    if kind == "linear":
        x_prev, grad = rand((4, 3), generator, device), rand((4, 2), generator, device)
        geometry = {}
    else:
        x_prev, _, grad, _ = conv_operands(generator, device)
        geometry = dict(prev=PREV, cur=CUR)
    with pytest.raises(ValueError, match=rf"want: '{name}' reads x \(the layer input\), but x is None"):
        gk.layer_statistics(kind, None, grad, x_prev=x_prev, want=(name,), **geometry)


def test_conv_without_x_checks_grad_against_prev_grid(generator, device):
    x_prev, _, grad, _ = conv_operands(generator, device)
    with pytest.raises(ValueError, match="grad has output grid"):
        gk.layer_statistics("conv2d_restricted", None, grad[:, :, 1:], x_prev=x_prev, prev=PREV, cur=CUR,
                            want=("m_prev",))
    with pytest.raises(ValueError, match="grad has batch 1 but x_prev has batch 2"):
        gk.layer_statistics("conv2d_full", None, grad[:1], x_prev=x_prev, prev=PREV, cur=CUR,
                            want=("m_prev",))
