"""``gromo_kernels.use_backend``: a block that forces the backend of "auto" calls, over the environment."""

from __future__ import annotations

import threading

import pytest
import torch

import gromo_kernels as gk
from gromo_kernels import testing
from gromo_kernels._backend import forced_backend, resolve_backend


def test_block_forces_triton_and_raises_on_cpu_without_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.delenv("GROMO_KERNELS_BACKEND", raising=False)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    with gk.use_backend("triton"):
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
            gk.linear_input_cov(x)
    assert resolve_backend("auto", x) == "torch"  # the block ended: automatic choice again


def test_block_wins_over_the_environment_and_nests(monkeypatch):
    monkeypatch.setenv("GROMO_KERNELS_BACKEND", "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with gk.use_backend("torch"):
        out = gk.linear_input_cov(x)
        torch.testing.assert_close(out, testing.linear_input_cov_reference(x), rtol=1e-12, atol=1e-12)
        with gk.use_backend("auto"):  # automatic choice inside the outer block, environment ignored
            assert forced_backend() is None
        assert forced_backend() == "torch" and resolve_backend("auto", x) == "torch"
    assert forced_backend() == "triton"


def test_block_is_local_to_its_thread(monkeypatch):
    monkeypatch.delenv("GROMO_KERNELS_BACKEND", raising=False)
    seen = []
    x = torch.ones(2, 2)
    with gk.use_backend("triton"):
        worker = threading.Thread(target=lambda: seen.append(resolve_backend("auto", x)))
        worker.start()
        worker.join()
    assert seen == ["torch"]


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend must be one of"):
        with gk.use_backend("numpy"):
            pass
