"""Named results returned by the public statistics and solves (shapes in each docstring)."""

from __future__ import annotations

from typing import NamedTuple

import torch


class RestrictedGrowthStats(NamedTuple):
    """Restricted conv-of-conv statistics (sums), TINY, TMLR 2024

    m_prev: (D_p, C_out)   Σ Ũ_p dAᵀ (centre tap only)
    cross_cov: (D_p, D)    Σ Ũ_p Uᵀ
    """

    m_prev: torch.Tensor
    cross_cov: torch.Tensor


class FullGrowthStats(NamedTuple):
    """Full conv-of-conv statistics (sums), TINY, TMLR 2024

    s_growth: (D_p, D_p)          Σ B̂ᵀB̂ over positions and taps
    m_prev: (D_p, C_out·kk)       column c·kk + e
    cross_cov: (kk, D_p, D)
    """

    s_growth: torch.Tensor
    m_prev: torch.Tensor
    cross_cov: torch.Tensor


class SolveResult(NamedTuple):
    """x (..., d, k); rank (...) int64; used_pinv (...) bool."""

    x: torch.Tensor
    rank: torch.Tensor
    used_pinv: torch.Tensor


class InvSqrtResult(NamedTuple):
    """r (..., d, d) the pseudo-inverse square root; rank (...) int64."""

    r: torch.Tensor
    rank: torch.Tensor


class _DeltaPair(NamedTuple):
    delta: torch.Tensor
    decrease: torch.Tensor


class DeltaResult(_DeltaPair):
    """delta (..., o, D); decrease (...) = tr(M·delta).

    A pair, as API.md promises (``delta, decrease = optimal_delta(S, M)`` keeps working), with one
    attribute beside it: ``used_pinv`` (...) bool, S (or E) was rank-deficient at the cutoff so a
    pseudo-inverse was needed (None when the result was built by hand). The gromo layer reads it to
    issue GroMo's "Using the pseudo-inverse" warning.
    """

    def __new__(cls, delta: torch.Tensor, decrease: torch.Tensor, used_pinv: torch.Tensor | None = None):
        self = super().__new__(cls, delta, decrease)
        self.used_pinv = used_pinv
        return self

    def __repr__(self) -> str:
        return f"DeltaResult(delta={self.delta!r}, decrease={self.decrease!r}, used_pinv={self.used_pinv!r})"


class AddedNeurons(NamedTuple):
    """alpha (k, s), omega (t, k), sigma (k,) — the k kept singular triplets."""

    alpha: torch.Tensor
    omega: torch.Tensor
    sigma: torch.Tensor
