"""Bad input to the public statistics: the exception type, and a message that names the argument.

Cases: wrong rank, batch mismatch, grid mismatch (current conv output, previous conv output vs x),
grids too small for the kernel, mixed devices ("meta" as the second device), mixed dtypes, integer
and complex dtypes, NaN/Inf with check_finite=True, unknown backend/precision/kind/statistic, bad
flags, geometry and chunk, and backend="triton" on CPU without the interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gromo_kernels as gk
from gromo_kernels._backend import resolve_backend

PREV = gk.Conv2dGeometry(3, 1, 1)
CUR = gk.Conv2dGeometry(3, 2, 1)


def rand(shape, generator, dtype=torch.float32):
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)


@pytest.fixture
def linear(generator):
    return dict(x_prev=rand((4, 3), generator), x=rand((4, 5), generator), grad=rand((4, 2), generator))


@pytest.fixture
def conv(generator):
    # x_prev 9x8 -> (prev, pad 1) 9x8 = x's grid -> (cur, stride 2, pad 1) 5x4 = grad's grid.
    return dict(x_prev=rand((2, 3, 9, 8), generator), x=rand((2, 4, 9, 8), generator),
                grad=rand((2, 6, 5, 4), generator))


# Every public statistic as (name, call(tensors, **options)) so each bad case runs against all.
def _calls():
    pair = dict(prev=PREV, cur=CUR)
    return {
        "linear_input_cov": ("linear", lambda t, **o: gk.linear_input_cov(t["x"], **o)),
        "linear_input_grad": ("linear", lambda t, **o: gk.linear_input_grad(t["x"], t["grad"], **o)),
        "linear_cross_cov": ("linear", lambda t, **o: gk.linear_cross_cov(t["x_prev"], t["x"], **o)),
        "grad_cov": ("linear", lambda t, **o: gk.grad_cov(t["grad"], **o)),
        "layer_statistics_linear": ("linear", lambda t, **o: gk.layer_statistics(
            "linear", t["x"], t["grad"], x_prev=t["x_prev"], **o)),
        "conv2d_input_cov": ("conv", lambda t, **o: gk.conv2d_input_cov(t["x"], CUR, **o)),
        "conv2d_input_grad": ("conv", lambda t, **o: gk.conv2d_input_grad(t["x"], t["grad"], CUR, **o)),
        "conv2d_restricted_growth_stats": ("conv", lambda t, **o: gk.conv2d_restricted_growth_stats(
            t["x_prev"], t["x"], t["grad"], **pair, **o)),
        "conv2d_full_growth_stats": ("conv", lambda t, **o: gk.conv2d_full_growth_stats(
            t["x_prev"], t["x"], t["grad"], **pair, **o)),
        "layer_statistics_restricted": ("conv", lambda t, **o: gk.layer_statistics(
            "conv2d_restricted", t["x"], t["grad"], x_prev=t["x_prev"], **pair, **o)),
        "layer_statistics_full": ("conv", lambda t, **o: gk.layer_statistics(
            "conv2d_full", t["x"], t["grad"], x_prev=t["x_prev"], **pair, **o)),
    }


CALLS = _calls()
# The tensors each call reads.
READS = {
    "linear_input_cov": ("x",), "linear_input_grad": ("x", "grad"), "linear_cross_cov": ("x_prev", "x"),
    "grad_cov": ("grad",), "layer_statistics_linear": ("x_prev", "x", "grad"),
    "conv2d_input_cov": ("x",), "conv2d_input_grad": ("x", "grad"),
    "conv2d_restricted_growth_stats": ("x_prev", "x", "grad"),
    "conv2d_full_growth_stats": ("x_prev", "x", "grad"),
    "layer_statistics_restricted": ("x_prev", "x", "grad"), "layer_statistics_full": ("x_prev", "x", "grad"),
}
CASES = [(name, arg) for name in CALLS for arg in READS[name]]
CASE_IDS = [f"{name}-{arg}" for name, arg in CASES]


def _tensors(name, linear, conv):
    family = CALLS[name][0]
    return dict(linear if family == "linear" else conv)


@pytest.mark.parametrize("name", list(CALLS))
def test_valid_inputs_run(name, linear, conv):
    """The fixtures themselves are valid for every call (so each failure below is the one we caused)."""
    out = CALLS[name][1](_tensors(name, linear, conv), backend="torch")
    values = out.values() if isinstance(out, dict) else (out if isinstance(out, tuple) else (out,))
    for value in values:
        assert bool(torch.isfinite(value).all())
        assert float(value.abs().sum()) > 0


@pytest.mark.parametrize("name,arg", CASES, ids=CASE_IDS)
def test_wrong_rank(name, arg, linear, conv):
    t = _tensors(name, linear, conv)
    # linear: a 0-d tensor has no feature dimension; conv: drop the batch dimension.
    t[arg] = t[arg][0, 0] if CALLS[name][0] == "linear" else t[arg][0]
    with pytest.raises(ValueError, match=arg):
        CALLS[name][1](t, backend="torch")


@pytest.mark.parametrize("name,arg", [c for c in CASES if len(READS[c[0]]) > 1],
                         ids=[i for c, i in zip(CASES, CASE_IDS) if len(READS[c[0]]) > 1])
def test_batch_mismatch(name, arg, linear, conv):
    """One tensor with a different batch (linear: different leading dims); the message names one of
    the two disagreeing tensors and the mismatch is never silently broadcast."""
    t = _tensors(name, linear, conv)
    t[arg] = torch.cat([t[arg], t[arg][:1]])
    others = [a for a in READS[name] if a != arg]
    with pytest.raises(ValueError, match="|".join([arg, *others])) as info:
        CALLS[name][1](t, backend="torch")
    assert "batch" in str(info.value)


def test_linear_leading_dims_must_match(generator):
    x = rand((2, 3, 5), generator)
    with pytest.raises(ValueError, match=r"grad.*\(2, 3, 'o'\)"):
        gk.linear_input_grad(x, rand((3, 2, 4), generator), backend="torch")
    with pytest.raises(ValueError, match="x_prev"):
        gk.layer_statistics("linear", x, rand((2, 3, 4), generator), x_prev=rand((6, 5), generator),
                            backend="torch")


@pytest.mark.parametrize("name", ["conv2d_input_grad", "conv2d_restricted_growth_stats",
                                  "conv2d_full_growth_stats", "layer_statistics_restricted",
                                  "layer_statistics_full"])
def test_grad_grid_mismatch(name, conv):
    """grad's grid is not the current conv's output grid: the message gives the expected shape."""
    t = dict(conv)
    t["grad"] = t["grad"][:, :, :, :3]
    with pytest.raises(ValueError, match=r"grad.*\(2, C_out, 5, 4\)"):
        CALLS[name][1](t, backend="torch")


@pytest.mark.parametrize("name", ["conv2d_restricted_growth_stats", "conv2d_full_growth_stats",
                                  "layer_statistics_restricted", "layer_statistics_full"])
def test_prev_output_grid_must_be_x_grid(name, conv):
    t = dict(conv)
    t["x_prev"] = t["x_prev"][:, :, :, :7]   # prev now outputs 9x7, x is 9x8
    with pytest.raises(ValueError, match=r"x has grid \(9, 8\).*\(2, C, 9, 7\)"):
        CALLS[name][1](t, backend="torch")


def test_grid_too_small_for_the_kernel(generator):
    with pytest.raises(ValueError, match="x .*too small"):
        gk.conv2d_input_cov(rand((1, 2, 2, 5), generator), 5)
    with pytest.raises(ValueError, match="x_prev .*too small"):
        gk.conv2d_full_growth_stats(rand((1, 2, 2, 2), generator), rand((1, 2, 2, 2), generator),
                                    rand((1, 2, 2, 2), generator), prev=3, cur=1)
    with pytest.raises(ValueError, match="x .*non-empty spatial grid"):
        gk.conv2d_input_cov(rand((1, 2, 0, 5), generator), 1, padding=1)


@pytest.mark.parametrize("name,arg", [c for c in CASES if len(READS[c[0]]) > 1 and c[1] != READS[c[0]][0]],
                         ids=[i for c, i in zip(CASES, CASE_IDS)
                              if len(READS[c[0]]) > 1 and c[1] != READS[c[0]][0]])
def test_mixed_devices(name, arg, linear, conv):
    t = _tensors(name, linear, conv)
    t[arg] = t[arg].to("meta")
    with pytest.raises(ValueError, match=f"{arg} is on meta"):
        CALLS[name][1](t, backend="torch")


@pytest.mark.parametrize("name,arg", [c for c in CASES if len(READS[c[0]]) > 1 and c[1] != READS[c[0]][0]],
                         ids=[i for c, i in zip(CASES, CASE_IDS)
                              if len(READS[c[0]]) > 1 and c[1] != READS[c[0]][0]])
def test_mixed_dtypes(name, arg, linear, conv):
    t = _tensors(name, linear, conv)
    t[arg] = t[arg].double()
    with pytest.raises(TypeError, match=f"{arg} has dtype torch.float64"):
        CALLS[name][1](t, backend="torch")


@pytest.mark.parametrize("bad_dtype", [torch.int64, torch.int32, torch.bool, torch.complex64])
@pytest.mark.parametrize("name,arg", CASES, ids=CASE_IDS)
def test_integer_and_complex_dtypes(name, arg, bad_dtype, linear, conv):
    t = _tensors(name, linear, conv)
    t[arg] = t[arg].to(bad_dtype)
    with pytest.raises(TypeError, match=f"{arg} must be a floating tensor"):
        CALLS[name][1](t, backend="torch")


def test_non_tensor_input():
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        gk.linear_input_cov([[1.0, 2.0]])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("name,arg", CASES, ids=CASE_IDS)
def test_nan_inf_with_check_finite(name, arg, bad, linear, conv):
    t = _tensors(name, linear, conv)
    t[arg] = t[arg].clone()
    t[arg].view(-1)[3] = bad
    with pytest.raises(ValueError, match=f"{arg} contains NaN or Inf"):
        CALLS[name][1](t, backend="torch", check_finite=True)


def test_nan_passes_through_without_check_finite(generator):
    """check_finite defaults to False for statistics: no host sync, the NaN reaches the sum."""
    x = rand((4, 3), generator)
    x[1, 2] = float("nan")
    s = gk.linear_input_cov(x, backend="torch")
    assert bool(torch.isnan(s[2]).all())
    assert bool(torch.isfinite(s[:2, :2]).all())


@pytest.mark.parametrize("name", list(CALLS))
def test_unknown_backend_and_precision(name, linear, conv):
    t = _tensors(name, linear, conv)
    with pytest.raises(ValueError, match="backend"):
        CALLS[name][1](t, backend="cuda")
    with pytest.raises(ValueError, match="precision"):
        CALLS[name][1](t, backend="torch", precision="fp8")
    with pytest.raises(ValueError, match="precision"):
        CALLS[name][1](t, backend="torch", precision="TF32")


@pytest.mark.parametrize("name", list(CALLS))
def test_explicit_triton_on_cpu_without_interpreter_raises(name, linear, conv, monkeypatch):
    """backend="triton" never falls back to torch: without TRITON_INTERPRET it raises RuntimeError."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        resolve_backend("triton", linear["x"])
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        CALLS[name][1](_tensors(name, linear, conv), backend="triton")


def test_bad_environment_backend(monkeypatch, linear):
    monkeypatch.setenv("GROMO_KERNELS_BACKEND", "numpy")
    with pytest.raises(ValueError, match="GROMO_KERNELS_BACKEND"):
        gk.linear_input_cov(linear["x"])


def test_importing_the_package_does_not_import_triton():
    """triton_impl is imported lazily, only when the triton backend is chosen."""
    code = ("import sys, torch, gromo_kernels as gk; x = torch.ones(3, 2); gk.linear_input_cov(x); "
            "gk.layer_statistics('linear', x, x, x_prev=x); print('triton' in sys.modules)")
    repo_root = str(Path(gk.__file__).resolve().parent.parent)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": repo_root, "PATH": ""}, cwd=repo_root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_bad_flags_chunk_and_geometry(linear, conv):
    with pytest.raises(TypeError, match="bias"):
        gk.linear_input_cov(linear["x"], bias=1)
    with pytest.raises(TypeError, match="bias_prev"):
        gk.linear_cross_cov(linear["x_prev"], linear["x"], bias_prev=None)
    with pytest.raises(TypeError, match="check_finite"):
        gk.grad_cov(linear["grad"], check_finite="yes")
    with pytest.raises(ValueError, match="chunk"):
        gk.conv2d_input_cov(conv["x"], 3, chunk=0)
    with pytest.raises(TypeError, match="chunk"):
        gk.conv2d_input_cov(conv["x"], 3, chunk=2.5)
    with pytest.raises(TypeError, match="prev"):
        gk.conv2d_full_growth_stats(conv["x_prev"], conv["x"], conv["grad"], prev="3x3", cur=CUR)
    with pytest.raises(ValueError, match="cur"):
        gk.conv2d_restricted_growth_stats(conv["x_prev"], conv["x"], conv["grad"], prev=PREV,
                                          cur=gk.Conv2dGeometry(3, 0))
    with pytest.raises(ValueError, match="stride"):
        gk.conv2d_input_cov(conv["x"], 3, stride=0)
    with pytest.raises(TypeError, match="kernel_size"):
        gk.conv2d_input_cov(conv["x"], 2.0)
    with pytest.raises(ValueError, match="kernel_size"):
        gk.conv2d_input_cov(conv["x"], CUR, stride=2)


def test_grad_cov_channel_dim(linear):
    with pytest.raises(ValueError, match="channel_dim"):
        gk.grad_cov(linear["grad"], channel_dim=2)
    with pytest.raises(ValueError, match="channel_dim"):
        gk.grad_cov(linear["grad"], channel_dim=-3)
    with pytest.raises(TypeError, match="channel_dim"):
        gk.grad_cov(linear["grad"], channel_dim=1.0)


def test_layer_statistics_bad_arguments(linear, conv):
    with pytest.raises(ValueError, match="kind"):
        gk.layer_statistics("conv3d", conv["x"], conv["grad"], cur=CUR)
    with pytest.raises(ValueError, match="want"):
        gk.layer_statistics("linear", linear["x"], linear["grad"], want=("s", "n"))
    with pytest.raises(ValueError, match="want.*x_prev"):
        gk.layer_statistics("linear", linear["x"], linear["grad"], want=("cross_cov",))
    with pytest.raises(ValueError, match="want.*grad"):
        gk.layer_statistics("linear", linear["x"], None, x_prev=linear["x_prev"], want=("m_prev",))
    with pytest.raises(ValueError, match="want.*growth"):
        gk.layer_statistics("conv2d", conv["x"], conv["grad"], cur=CUR, want=("s_growth",))
    with pytest.raises(ValueError, match="x_prev"):
        gk.layer_statistics("conv2d", conv["x"], conv["grad"], x_prev=conv["x_prev"], prev=PREV, cur=CUR)
    with pytest.raises(ValueError, match="cur"):
        gk.layer_statistics("conv2d_full", conv["x"], conv["grad"], x_prev=conv["x_prev"], prev=PREV)
    with pytest.raises(ValueError, match="prev"):
        gk.layer_statistics("conv2d_full", conv["x"], conv["grad"], x_prev=conv["x_prev"], cur=CUR)
    with pytest.raises(ValueError, match="prev and cur"):
        gk.layer_statistics("linear", linear["x"], linear["grad"], cur=CUR)
    with pytest.raises(TypeError, match="want"):
        gk.layer_statistics("linear", linear["x"], linear["grad"], want=3)
