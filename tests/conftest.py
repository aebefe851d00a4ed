"""Shared fixtures. The device under test comes from GROMO_TEST_DEVICE (default cpu); on CPU the
Triton interpreter is switched on here, before any test module can import triton."""

from __future__ import annotations

import os
import zlib

import pytest
import torch

TEST_DEVICE = os.environ.get("GROMO_TEST_DEVICE", "cpu")
if TEST_DEVICE == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def device() -> torch.device:
    """The device the suite runs on (GROMO_TEST_DEVICE; CUDA only when asked for)."""
    return torch.device(TEST_DEVICE)


@pytest.fixture
def generator(request) -> torch.Generator:
    """A CPU generator seeded from the test's id: fresh, reproducible, no global RNG state."""
    g = torch.Generator()
    g.manual_seed(zlib.crc32(request.node.nodeid.encode()))
    return g


@pytest.fixture
def factorization_caches(monkeypatch) -> list:
    """The caches of every ``gromo_kernels.factorization_cache()`` block opened during the test (their
    hits and misses stay readable after the block closed)."""
    import gromo_kernels as gk

    caches: list = []
    real = gk.factorization_cache

    class Recording:
        def __init__(self, *args, **kwargs):
            self.manager = real(*args, **kwargs)

        def __enter__(self):
            caches.append(self.manager.__enter__())
            return caches[-1]

        def __exit__(self, *exc):
            return self.manager.__exit__(*exc)

    monkeypatch.setattr(gk, "factorization_cache", Recording)
    return caches
