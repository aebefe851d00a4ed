"""The benchmark cases: a pair of layers, its inputs, and "update the statistics of the pair" done
ours (gromo_kernels.layer_statistics, torch backend) and GroMo's way (bench/gromo_baseline.py).

"Update the statistics of the pair" = S, M, E of the current layer, plus S_growth, M₋₂ and P that
growing it needs. Shapes are those GroMo's own growth benchmarks use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import gromo_baseline as baseline
import torch

import gromo_kernels as gk

SEED = 20240611


@dataclass(frozen=True)
class PairInputs:
    """x_prev feeds the previous layer, x the current one, grad = dA of the current one."""

    x_prev: torch.Tensor
    x: torch.Tensor
    grad: torch.Tensor

    def head(self, n: int) -> "PairInputs":
        """The first n batch items (views): a cheap warm-up at the same widths."""
        return PairInputs(self.x_prev[:n], self.x[:n], self.grad[:n])


@dataclass(frozen=True)
class Case:
    """One benchmark case. ``rounds``/``warmup`` per implementation ("ours", "gromo")."""

    name: str
    kind: str
    description: str
    n: int
    build: Callable[[int], PairInputs]
    prev: gk.Conv2dGeometry | None = None
    cur: gk.Conv2dGeometry | None = None
    rounds: dict = field(default_factory=lambda: {"ours": 5, "gromo": 3})
    warmup: dict = field(default_factory=lambda: {"ours": 1, "gromo": 1})
    cpu1_rounds: dict = field(default_factory=lambda: {"ours": 3, "gromo": 1})
    # Run the other implementation (untimed) before every timed round, so both see the same
    # background load on a shared machine; only affordable where the baseline is cheap.
    interleave: bool = False

    def inputs(self, n: int | None = None) -> PairInputs:
        return self.build(self.n if n is None else n)

    def ours(self) -> Callable[[PairInputs], dict]:
        """gromo_kernels' public API: one layer_statistics call, torch backend."""
        geo = {} if self.kind == "linear" else dict(prev=self.prev, cur=self.cur)

        def run(t: PairInputs) -> dict:
            return gk.layer_statistics(self.kind, t.x, t.grad, x_prev=t.x_prev, backend="torch", **geo)

        return run

    def gromo(self, like: PairInputs) -> Callable[[PairInputs], dict]:
        """GroMo's formulation; its cached tensors (mask T, bordering kernel) built once, here."""
        if self.kind == "linear":
            return lambda t: baseline.linear_pair_statistics(t.x_prev, t.x, t.grad)
        if self.kind == "conv2d_restricted":
            d_prev = like.x_prev.shape[1] * self.prev.kernel_area + 1
            weight = baseline.bordering_weight(d_prev, self.cur, like.x.device)
            return lambda t: baseline.restricted_pair_statistics(t.x_prev, t.x, t.grad, prev=self.prev,
                                                                 cur=self.cur, weight=weight)
        mask = baseline.mask_tensor_t(like.x.shape[2], like.x.shape[3], self.cur).to(like.x.device)
        return lambda t: baseline.full_pair_statistics(t.x_prev, t.x, t.grad, prev=self.prev, cur=self.cur,
                                                       mask=mask)

    def reduction_lengths(self) -> dict[str, int]:
        """Products summed per output entry, for the agreement tolerance."""
        if self.kind == "linear":
            return dict.fromkeys(gk.STATISTIC_NAMES, self.n)
        positions = self.n * 32 * 32
        lengths = dict.fromkeys(gk.STATISTIC_NAMES, positions)
        if self.kind == "conv2d_full":
            lengths["s_growth"] = positions * self.cur.kernel_area
        return lengths


def _randn(generator, *shape) -> torch.Tensor:
    return torch.randn(*shape, generator=generator)


def _linear_inputs(n: int) -> PairInputs:
    g = torch.Generator().manual_seed(SEED)
    return PairInputs(_randn(g, n, 512), _randn(g, n, 256), _randn(g, n, 512))


def _conv_inputs(n: int) -> PairInputs:
    g = torch.Generator().manual_seed(SEED)
    return PairInputs(_randn(g, n, 64, 32, 32), _randn(g, n, 64, 32, 32), _randn(g, n, 64, 32, 32))


_CONV = gk.Conv2dGeometry(3, 1, 1)

CASES: dict[str, Case] = {
    case.name: case
    for case in (
        Case("linear", "linear", "Linear pair 512→256→512, n=1024", 1024, _linear_inputs,
             rounds={"ours": 100, "gromo": 100}, warmup={"ours": 5, "gromo": 5},
             cpu1_rounds={"ours": 20, "gromo": 20}, interleave=True),
        Case("restricted_n64", "conv2d_restricted", "Restricted conv pair 64→64→64, 3×3 pad 1, 32×32, n=64",
             64, _conv_inputs, _CONV, _CONV, rounds={"ours": 5, "gromo": 3}),
        Case("full_n16", "conv2d_full", "Full conv pair 64→64→64, 3×3 pad 1, 32×32, n=16",
             16, _conv_inputs, _CONV, _CONV, rounds={"ours": 5, "gromo": 2}, warmup={"ours": 1, "gromo": 0}),
        Case("full_n64", "conv2d_full", "Full conv pair 64→64→64, 3×3 pad 1, 32×32, n=64",
             64, _conv_inputs, _CONV, _CONV, rounds={"ours": 3, "gromo": 1}, warmup={"ours": 1, "gromo": 0}),
    )
}
