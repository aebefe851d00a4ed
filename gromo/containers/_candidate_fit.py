"""Fitting every candidate of a DAG growth step against the expressivity bottleneck, as one batched
computation.

A candidate reads the activities of its source nodes, ``X (n, D_c)`` (concatenated, with a ones
column ``x̃`` when it has a bias), and answers the bottleneck of its target nodes, ``V (n, O_c)``.
For features ``f`` (n, F) with ``S = fᵀf/n`` and ``M = fᵀV/n``, the linear map ``a = W f`` that
minimises the scale-free bottleneck loss ``mean⟨a, v⟩ / √mean‖a‖²`` is ``W = −(S⁺M)ᵀ / √tr(MᵀS⁺M)``
(Cauchy–Schwarz in the S-inner product; the loss there is ``−√tr(MᵀS⁺M)``), normalised to a unit
mean squared output. Hence:

* a new edge: ``f = x̃``, the exact minimiser;
* new neurons ``ω σ(α x)``: α is drawn as GroMo starts its descent (LeCun normal, zero bias) and
  ``f = σ(α x)``: ω is the exact minimiser given α. (The bottleneck is orthogonal to what the
  existing edges from the same sources can produce linearly, so a linearised, TINY-like α would fit
  rounding noise: the new neurons must act through σ.)

Batching: one pass over the rows computes ``S`` and ``M`` of *all* source activities against *all*
target bottlenecks (``gromo_kernels.layer_statistics``), every edge's statistics being a sub-block
(shared inputs are read once); a second pass computes every node candidate's features with one
matmul against a block-structured α and their ``S``, ``M`` with one batched product; the solves are
grouped lists (one batched call per distinct shape) inside one ``factorization_cache()`` block
(edges with the same sources share one factorisation); a third pass computes the per-neuron
first-order improvements, block outputs and bottleneck losses. Linear nodes only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

import gromo_kernels as gk
from gromo.utils.tools import lecun_normal_

@dataclass(frozen=True)
class CandidatePlan:
    """What one candidate reads and answers.

    Attributes:
        kind: "edge" (a new edge) or "node" (new neurons).
        inputs: source node ``_name``s (their activities are concatenated in this order).
        targets: target node ``_name``s (their bottlenecks are concatenated in this order).
        bias: the block has a bias (a ones column on the inputs).
        activation: σ of new neurons (None for an edge).
        neurons: neurons proposed (nodes).
    """

    kind: str
    inputs: tuple[str, ...]
    targets: tuple[str, ...]
    bias: bool
    activation: nn.Module | None = None
    neurons: int = 0


@dataclass
class CandidateFit:
    """Fitted weights of a candidate and what they do on the data.

    Attributes:
        weight: edge ``W (O, D)``; node ``α (K, D)``.
        bias: edge ``(O,)``; node ``(K,)`` (zeros, GroMo's start); None without bias.
        omega: node ``ω (O, K)``; None for an edge.
        foi: node per-neuron first-order improvement ``(K,)``: ``−mean_b h_b ⊙ (V ω)_b``.
        block_output: ``(n, O)``: ``W̃x̃`` or ``ω σ(α x̃)``.
        loss: bottleneck loss of ``block_output`` against the targets.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None
    omega: torch.Tensor | None
    foi: torch.Tensor | None
    block_output: torch.Tensor
    loss: float


def _columns(names: tuple[str, ...], offsets: dict[str, tuple[int, int]]) -> list[int]:
    return [i for name in names for i in range(*offsets[name])]


def _layout(names: list[str], tensors: dict[str, torch.Tensor]) -> tuple[dict[str, tuple[int, int]], int]:
    offsets, start = {}, 0
    for name in names:
        width = tensors[name].shape[1]
        offsets[name] = (start, start + width)
        start += width
    return offsets, start


def _rows(tensors: dict[str, torch.Tensor], names: list[str], rows: slice, dtype) -> torch.Tensor:
    return torch.cat([tensors[name][rows].to(dtype) for name in names], dim=1)


def _least_squares_maps(s_list: list[torch.Tensor], m_list: list[torch.Tensor], dtype) -> list[torch.Tensor]:
    """``W = −(S⁺M)ᵀ / √tr(MᵀS⁺M)`` (O, F) for each pair, grouped by shape in batched solves."""
    maps = []
    for s, m, result in zip(s_list, m_list, gk.optimal_delta(s_list, m_list)):
        delta = result.delta.to(dtype)  # (O, F) = (S⁺M)ᵀ
        norm = (delta * m.T).sum().clamp_min(torch.finfo(dtype).tiny).sqrt()
        maps.append(-delta / norm)
    return maps


def _draw_alphas(plans: list[CandidatePlan], nodes: list[int], in_cols: list[list[int]], dtype,
                 device) -> dict[int, torch.Tensor]:
    """GroMo's starting α (neurons, D_c): LeCun normal, drawn in candidate order from torch's RNG."""
    alphas = {}
    for i in nodes:
        alpha = torch.empty(plans[i].neurons, len(in_cols[i]), dtype=dtype, device=device)
        alphas[i] = lecun_normal_(alpha)
    return alphas


def _place(block: torch.Tensor, rows: list[int], start: int, values: torch.Tensor) -> slice:
    """``block[rows, start:start+k] = values`` (values (len(rows), k)); returns the column span."""
    span = slice(start, start + values.shape[1])
    block[rows, span] = values
    return span


def fit_candidates(plans: list[CandidatePlan], bottlenecks: dict[str, torch.Tensor],
                   activities: dict[str, torch.Tensor], batch_size: int = 256,
                   dtype: torch.dtype = torch.float32) -> list[CandidateFit]:
    """Weights of every candidate (see the module docstring), batched. Node candidates draw their α
    from torch's RNG, in plan order.

    Args:
        plans: the candidates.
        bottlenecks: target ``_name`` → ``(n, size)``.
        activities: source ``_name`` → ``(n, size)``.
        batch_size: rows per pass chunk.
        dtype: precision of the statistics and of the results (solves run in float64).
    Returns:
        one CandidateFit per plan, in order.
    Raises:
        KeyError: a plan names an absent source or target.
        ValueError: a source or target is not 2-D (convolution nodes are not supported).
    """
    sources = list(dict.fromkeys(name for plan in plans for name in plan.inputs))
    targets = list(dict.fromkeys(name for plan in plans for name in plan.targets))
    for kind, table, names in (("source", activities, sources), ("target", bottlenecks, targets)):
        for name in names:
            if table[name].ndim != 2:
                raise ValueError(f"fit_candidates: the {kind} {name} has shape {tuple(table[name].shape)}; "
                                 "only linear (2-D) nodes are supported")
    in_offsets, width = _layout(sources, activities)
    out_offsets, total_out = _layout(targets, bottlenecks)
    n = activities[sources[0]].shape[0]
    device = activities[sources[0]].device
    edges = [i for i, p in enumerate(plans) if p.kind == "edge"]
    nodes = [i for i, p in enumerate(plans) if p.kind == "node"]
    in_cols = [_columns(p.inputs, in_offsets) + ([width] if p.bias and p.kind == "edge" else []) for p in plans]
    out_cols = [_columns(p.targets, out_offsets) for p in plans]

    def passes():
        for start in range(0, n, batch_size):
            rows = slice(start, start + batch_size)
            yield _rows(activities, sources, rows, dtype), _rows(bottlenecks, targets, rows, dtype)

    # Pass 1 (edges): S and M of all sources (ones column last) against all targets.
    s_all = m_all = None
    if edges:
        for x, v in passes():
            stats = gk.layer_statistics("linear", x, v, want=("s", "m"), bias=True)
            s_all = stats["s"] if s_all is None else s_all + stats["s"]
            m_all = stats["m"] if m_all is None else m_all + stats["m"]
    # Pass 2 (nodes): features σ(α x) of every node candidate from one matmul, their S and M.
    alphas = _draw_alphas(plans, nodes, in_cols, dtype, device)
    alpha_block = torch.zeros(width + 1, sum(p.neurons for p in plans if p.kind == "node"), dtype=dtype,
                              device=device)
    spans, start = {}, 0
    for i in nodes:
        spans[i] = _place(alpha_block, in_cols[i], start, alphas[i].T)
        start = spans[i].stop
    s_h = {i: 0.0 for i in nodes}
    m_h = {i: 0.0 for i in nodes}
    if nodes:
        for x, v in passes():
            hidden = _activate(plans, nodes, spans, _with_ones(x) @ alpha_block)
            cross = hidden.T @ v
            for i in nodes:
                h = hidden[:, spans[i]]
                s_h[i] = s_h[i] + h.T @ h
                m_h[i] = m_h[i] + cross[spans[i]][:, out_cols[i]]
    weights: dict[int, torch.Tensor] = {}
    omegas: dict[int, torch.Tensor] = {}
    with gk.factorization_cache():
        if edges:
            s_all, m_all = s_all / n, m_all / n
            maps = _least_squares_maps([s_all[in_cols[i]][:, in_cols[i]] for i in edges],
                                       [m_all[in_cols[i]][:, out_cols[i]] for i in edges], dtype)
            weights.update(zip(edges, maps))
        if nodes:
            maps = _least_squares_maps([s_h[i] / n for i in nodes], [m_h[i] / n for i in nodes], dtype)
            omegas.update(zip(nodes, maps))
            weights.update(alphas)
    return _evaluate_fits(plans, weights, omegas, alpha_block, spans, in_cols, out_cols, passes, n, width,
                          total_out, dtype, device)


def _with_ones(x: torch.Tensor) -> torch.Tensor:
    return torch.cat((x, torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)), dim=1)


def _activate(plans, nodes, spans, pre: torch.Tensor) -> torch.Tensor:
    """σ of each node candidate on its column span of the pre-activations."""
    hidden = torch.empty_like(pre)
    for i in nodes:
        hidden[:, spans[i]] = plans[i].activation(pre[:, spans[i]])
    return hidden


def _evaluate_fits(plans, weights, omegas, alpha_block, spans, in_cols, out_cols, passes, n, width, total_out,
                   dtype, device) -> list[CandidateFit]:
    """Pass 3: first-order improvements, block outputs and bottleneck losses of every candidate."""
    edges = [i for i, p in enumerate(plans) if p.kind == "edge"]
    nodes = [i for i, p in enumerate(plans) if p.kind == "node"]
    edge_block = torch.zeros(width + 1, sum(weights[i].shape[0] for i in edges), dtype=dtype, device=device)
    edge_spans, start = {}, 0
    for i in edges:
        edge_spans[i] = _place(edge_block, in_cols[i], start, weights[i].T)
        start = edge_spans[i].stop
    omega_block = torch.zeros(total_out, alpha_block.shape[1], dtype=dtype, device=device)
    for i in nodes:
        omega_block[out_cols[i], spans[i]] = omegas[i]

    outputs: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(plans))}
    foi_sum = torch.zeros(alpha_block.shape[1], dtype=dtype, device=device)
    inner = torch.zeros(len(plans), dtype=torch.float64)
    square = torch.zeros(len(plans), dtype=torch.float64)
    for x, v in passes():
        x = _with_ones(x)
        edge_out = x @ edge_block
        hidden = _activate(plans, nodes, spans, x @ alpha_block)
        foi_sum += (hidden * (v @ omega_block)).sum(dim=0)
        for i in range(len(plans)):
            out = edge_out[:, edge_spans[i]] if i in edge_spans else hidden[:, spans[i]] @ omegas[i].T
            outputs[i].append(out)
            inner[i] += float((out * v[:, out_cols[i]]).sum())
            square[i] += float((out * out).sum())
    fits = []
    for i, plan in enumerate(plans):
        loss = float((inner[i] / n) / torch.sqrt(square[i] / n + 1e-8))
        if plan.kind == "edge":
            weight = weights[i]
            main, bias = (weight[:, :-1], weight[:, -1]) if plan.bias else (weight, None)
            fits.append(CandidateFit(weight=main.contiguous(), bias=None if bias is None else bias.contiguous(),
                                     omega=None, foi=None, block_output=torch.cat(outputs[i]), loss=loss))
        else:
            bias = torch.zeros(plan.neurons, dtype=dtype, device=device) if plan.bias else None
            fits.append(CandidateFit(weight=weights[i], bias=bias, omega=omegas[i], foi=-foi_sum[spans[i]] / n,
                                     block_output=torch.cat(outputs[i]), loss=loss))
    return fits
