"""GroMo's bi-level descent of new neurons, for all node candidates of a growth step at once.

Each candidate c trains ``ω_c σ(α_c x + Σ_j b_cj)`` on the scale-free bottleneck loss
``mean⟨a, v⟩ / √(mean‖a‖² + 1e-8)`` with AdamW (no weight decay). Candidates share no parameter, so
one optimiser over block-structured tensors (α: rows of c on its source columns; ω: block diagonal;
entries outside a candidate's block are masked, receive zero gradients and stay zero under Adam)
minimising ``Σ_c loss_c`` performs, step for step, each candidate's own descent — with one shuffled
batch order for all of them. One forward/backward per batch replaces one per batch and candidate.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["descend_candidates"]


def descend_candidates(alphas: list[torch.Tensor], biases: list[torch.Tensor], omegas: list[torch.Tensor],
                       inputs: list[list[int]], targets: list[list[int]], activation: nn.Module,
                       x: torch.Tensor, v: torch.Tensor, lrate: float, epochs: int, batch_size: int,
                       generator: torch.Generator | None = None) -> tuple[list, list, list, list[list[float]]]:
    """Descend every candidate's (α, b, ω) together.

    Args:
        alphas: per candidate α (K_c, len(inputs[c])).
        biases: per candidate b (K_c, k_c), one column per biased incoming edge (k_c may be 0).
        omegas: per candidate ω (len(targets[c]), K_c).
        inputs: per candidate, the columns of ``x`` it reads.
        targets: per candidate, the columns of ``v`` it answers.
        activation: σ (the same for every candidate).
        x: sources (n, D); v: bottlenecks (n, O).
        lrate, epochs, batch_size: AdamW's learning rate, epochs, rows per step.
        generator: the shuffling (one permutation per epoch, shared by all candidates).
    Returns:
        (α list, b list, ω list, per candidate the mean batch loss of each epoch).
    """
    count = len(alphas)
    widths = [a.shape[0] for a in alphas]
    row = torch.cumsum(torch.tensor([0, *widths]), 0).tolist()
    outs = [len(t) for t in targets]
    col = torch.cumsum(torch.tensor([0, *outs]), 0).tolist()
    k_max = max([b.shape[1] for b in biases] + [0])
    dtype, device = x.dtype, x.device
    alpha = torch.zeros(row[-1], x.shape[1], dtype=dtype, device=device)
    alpha_mask = torch.zeros_like(alpha)
    bias = torch.zeros(row[-1], k_max, dtype=dtype, device=device)
    bias_mask = torch.zeros_like(bias)
    omega = torch.zeros(col[-1], row[-1], dtype=dtype, device=device)
    omega_mask = torch.zeros_like(omega)
    for c in range(count):
        rows, columns = slice(row[c], row[c + 1]), torch.tensor(inputs[c], dtype=torch.long)
        alpha[rows, columns] = alphas[c].to(dtype)
        alpha_mask[rows, columns] = 1.0
        bias[rows, : biases[c].shape[1]] = biases[c].to(dtype)
        bias_mask[rows, : biases[c].shape[1]] = 1.0
        omega[col[c]:col[c + 1], rows] = omegas[c].to(dtype)
        omega_mask[col[c]:col[c + 1], rows] = 1.0
    target_columns = torch.tensor([i for t in targets for i in t], dtype=torch.long, device=device)
    owner = torch.repeat_interleave(torch.arange(count, device=device), torch.tensor(outs, device=device))
    parameters = [p.requires_grad_(True) for p in (alpha, bias, omega)]
    optimizer = torch.optim.AdamW(parameters, lr=lrate, weight_decay=0)
    n = x.shape[0]
    history: list[list[float]] = [[] for _ in range(count)]
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(device)
        totals = torch.zeros(count, dtype=torch.float64, device=device)
        batches = 0
        for begin in range(0, n, batch_size):
            index = order[begin:begin + batch_size]
            xb, vb = x[index], v[index][:, target_columns]
            hidden = activation(xb @ (alpha * alpha_mask).T + (bias * bias_mask).sum(dim=1))
            out = hidden @ (omega * omega_mask).T
            rows_in_batch = xb.shape[0]
            inner = torch.zeros(count, dtype=dtype, device=device).index_add_(0, owner, (out * vb).sum(0))
            square = torch.zeros(count, dtype=dtype, device=device).index_add_(0, owner, (out * out).sum(0))
            losses = (inner / rows_in_batch) / torch.sqrt(square / rows_in_batch + 1e-8)
            optimizer.zero_grad()
            losses.sum().backward()
            optimizer.step()
            totals += losses.detach().double()
            batches += 1
        for c in range(count):
            history[c].append(float(totals[c]) / max(batches, 1))
    for p in parameters:
        p.requires_grad_(False)
    return ([alpha[row[c]:row[c + 1], inputs[c]].detach().clone() for c in range(count)],
            [bias[row[c]:row[c + 1], : biases[c].shape[1]].detach().clone() for c in range(count)],
            [omega[col[c]:col[c + 1], row[c]:row[c + 1]].detach().clone() for c in range(count)],
            history)
