"""The tolerance table's term for truncating tensor-core accumulation (GPU tf32/bf16 dots)."""

from __future__ import annotations

import math

import pytest
import torch

from gromo_kernels import testing as T

U32 = 2.0**-24


@pytest.mark.parametrize("mode, k", [("tf32", 8), ("bf16", 16)])
def test_chain_adds_two_ulps_per_mma_step(mode, k):
    rows, chain = 65536, 1024
    plain = T.tolerance(mode, torch.float32, rows)
    tc = T.tolerance(mode, torch.float32, rows, tensor_core_chain=chain)
    assert tc.rtol == plain.rtol
    assert tc.atol - plain.atol == pytest.approx(2 * U32 * math.ceil(chain / k) * rows, rel=1e-12)


def test_chain_longer_than_the_reduction_is_the_reduction():
    short = T.tolerance("tf32", torch.float32, 100, tensor_core_chain=100)
    assert T.tolerance("tf32", torch.float32, 100, tensor_core_chain=10**6) == short


@pytest.mark.parametrize("mode, dtype", [(None, torch.float32), ("ieee", torch.float32),
                                         ("tf32x3", torch.float32), ("tf32", torch.float64)])
def test_no_term_for_ieee_accumulation(mode, dtype):
    assert T.tolerance(mode, dtype, 4096, tensor_core_chain=4096) == T.tolerance(mode, dtype, 4096)


def test_truncating_sum_within_and_rounded_sum_far_within(generator):
    """A sum truncated to fp32 after every 8 products (what the model bounds) passes; its error
    exceeds the IEEE-only tolerance, so the term is needed."""
    rows = 8192
    x = torch.rand(rows, generator=generator, dtype=torch.float64) + 0.5
    acc = torch.zeros((), dtype=torch.float64)
    for start in range(0, rows, 8):
        exact = acc + (x[start:start + 8] ** 2).sum()
        f32 = exact.to(torch.float32)
        # Round toward zero: step back one ulp when rounding went up.
        if float(f32) > float(exact):
            f32 = torch.nextafter(f32, torch.zeros((), dtype=torch.float32))
        acc = f32.to(torch.float64)
    ref = (x ** 2).sum()
    err = float(abs(acc - ref))
    scale = float((x ** 2).mean())
    assert err <= T.tolerance("tf32", torch.float32, rows, tensor_core_chain=rows).atol * scale
    assert err > T.tolerance("tf32", torch.float32, rows).atol * scale + T.tolerance("tf32", torch.float32, rows).rtol * float(ref)
