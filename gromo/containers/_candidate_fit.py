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
(edges with the same sources share one factorisation); the bottleneck losses and per-neuron
first-order improvements follow from the statistics (``FOI_j = −Σ_o M[j, o] ω[o, j]``), and a third
pass computes the block outputs. Linear nodes only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

import gromo_kernels as gk
from gromo.utils.tools import lecun_normal_

#: elements of one pass chunk (rows × all columns): 16 MiB in float32
_CHUNK_ELEMENTS = 2**22

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
    # fp32 Cholesky (fp64 for any element that needs the pseudo-inverse or fails its check)
    for s, m, result in zip(s_list, m_list, gk.optimal_delta(s_list, m_list, dtype=torch.float32)):
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
        batch_size: least rows per pass chunk (chunks hold about 4M elements).
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

    hidden_width = sum(p.neurons for p in plans if p.kind == "node")
    chunk = max(batch_size, _CHUNK_ELEMENTS // (width + 1 + hidden_width + total_out))

    def passes():
        for begin in range(0, n, chunk):
            rows = slice(begin, begin + chunk)
            yield _rows(activities, sources, rows, dtype), _rows(bottlenecks, targets, rows, dtype)

    # Pass 1 (edges): S and M of all sources (ones column last) against all targets.
    s_all = m_all = None
    if edges:
        for x, v in passes():
            stats = gk.layer_statistics("linear", x, v, want=("s", "m"), bias=True)
            s_all = stats["s"] if s_all is None else s_all + stats["s"]
            m_all = stats["m"] if m_all is None else m_all + stats["m"]
    # Pass 2 (nodes): features σ(α x) of every node candidate from one matmul; their S (one batched
    # product when all candidates propose the same number of neurons) and M.
    alphas = _draw_alphas(plans, nodes, in_cols, dtype, device)
    alpha_block = torch.zeros(width + 1, hidden_width, dtype=dtype, device=device)
    spans, begin = {}, 0
    for i in nodes:
        spans[i] = _place(alpha_block, in_cols[i], begin, alphas[i].T)
        begin = spans[i].stop
    same_width = len({plans[i].neurons for i in nodes}) == 1
    s_h: dict[int, torch.Tensor] = {}
    cross = None
    single_chunk = n <= chunk
    cached_hidden = None
    if nodes:
        s_stack = None
        for x, v in passes():
            hidden = _activate(plans, nodes, spans, _with_ones(x) @ alpha_block)
            if single_chunk:  # pass 3 reuses the features instead of recomputing them
                cached_hidden = hidden
            cross = hidden.T @ v if cross is None else cross + hidden.T @ v
            if same_width:
                h3 = hidden.view(len(hidden), len(nodes), plans[nodes[0]].neurons)
                batch_s = torch.einsum("nck,ncl->ckl", h3, h3)
                s_stack = batch_s if s_stack is None else s_stack + batch_s
            else:
                for i in nodes:
                    h = hidden[:, spans[i]]
                    s_h[i] = h.T @ h + s_h.get(i, 0.0)
        if same_width:
            s_h = {i: s_stack[j] for j, i in enumerate(nodes)}
    weights: dict[int, torch.Tensor] = {}
    omegas: dict[int, torch.Tensor] = {}
    losses: dict[int, float] = {}
    fois: dict[int, torch.Tensor] = {}
    with gk.factorization_cache():
        if edges:
            s_all, m_all = s_all / n, m_all / n
            s_list = [s_all[in_cols[i]][:, in_cols[i]] for i in edges]
            m_list = [m_all[in_cols[i]][:, out_cols[i]] for i in edges]
            maps = _least_squares_maps(s_list, m_list, dtype)
            weights.update(zip(edges, maps))
            losses.update(_losses(edges, maps, s_list, m_list))
        if nodes:
            s_list = [s_h[i] / n for i in nodes]
            m_list = [cross[spans[i]][:, out_cols[i]] / n for i in nodes]
            maps = _least_squares_maps(s_list, m_list, dtype)
            omegas.update(zip(nodes, maps))
            weights.update(alphas)
            losses.update(_losses(nodes, maps, s_list, m_list))
            # FOI_j = −mean_b h_bj (v_b ω)_j = −Σ_o M_h[j, o] ω[o, j]: from the statistics, no pass
            fois = {i: -(m * w.T).sum(dim=1) for i, w, m in zip(nodes, maps, m_list)}
    return _evaluate_fits(plans, weights, omegas, losses, fois, alpha_block, spans, in_cols, passes, width,
                          dtype, device, cached_hidden)


def _losses(indices: list[int], maps: list[torch.Tensor], s_list: list[torch.Tensor],
            m_list: list[torch.Tensor]) -> dict[int, float]:
    """Bottleneck loss ``tr(W M) / √(tr(W S Wᵀ) + 1e-8)`` of each fitted map (no pass over the data)."""
    inner = torch.stack([(w * m.T).sum() for w, m in zip(maps, m_list)]).double()
    square = torch.stack([(w @ s * w).sum() for w, s in zip(maps, s_list)]).double()
    return dict(zip(indices, (inner / torch.sqrt(square + 1e-8)).tolist()))


def _with_ones(x: torch.Tensor) -> torch.Tensor:
    return torch.cat((x, torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)), dim=1)


def _activate(plans, nodes, spans, pre: torch.Tensor) -> torch.Tensor:
    """σ of each node candidate on its column span of the pre-activations (once when all σ agree)."""
    if len({repr(plans[i].activation) for i in nodes}) == 1:
        return plans[nodes[0]].activation(pre)
    hidden = torch.empty_like(pre)
    for i in nodes:
        hidden[:, spans[i]] = plans[i].activation(pre[:, spans[i]])
    return hidden


def _evaluate_fits(plans, weights, omegas, losses, fois, alpha_block, spans, in_cols, passes, width, dtype,
                   device, cached_hidden) -> list[CandidateFit]:
    """Pass 3: the block output of every candidate (edges from one matmul, nodes from one matmul for
    all features and one per candidate for its ω)."""
    edges = [i for i, p in enumerate(plans) if p.kind == "edge"]
    nodes = [i for i, p in enumerate(plans) if p.kind == "node"]
    edge_block = torch.zeros(width + 1, sum(weights[i].shape[0] for i in edges), dtype=dtype, device=device)
    edge_spans, begin = {}, 0
    for i in edges:
        edge_spans[i] = _place(edge_block, in_cols[i], begin, weights[i].T)
        begin = edge_spans[i].stop
    outputs: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(plans))}
    for x, _ in passes():
        x = _with_ones(x)
        if edges:
            edge_out = x @ edge_block
            for i in edges:
                outputs[i].append(edge_out[:, edge_spans[i]])
        if nodes:
            hidden = cached_hidden if cached_hidden is not None else _activate(plans, nodes, spans, x @ alpha_block)
            for i in nodes:
                outputs[i].append(hidden[:, spans[i]] @ omegas[i].T)
    fits = []
    for i, plan in enumerate(plans):
        output = outputs[i][0] if len(outputs[i]) == 1 else torch.cat(outputs[i])
        if plan.kind == "edge":
            weight = weights[i]
            main, bias = (weight[:, :-1], weight[:, -1]) if plan.bias else (weight, None)
            fits.append(CandidateFit(weight=main, bias=bias, omega=None, foi=None, block_output=output,
                                     loss=losses[i]))
        else:
            bias = torch.zeros(plan.neurons, dtype=dtype, device=device) if plan.bias else None
            fits.append(CandidateFit(weight=weights[i], bias=bias, omega=omegas[i], foi=fois[i],
                                     block_output=output, loss=losses[i]))
    return fits
