"""The batched descent of all node candidates equals each candidate's own descent (same batch
order), and it lowers every candidate's bottleneck loss."""

from __future__ import annotations

import torch
from torch import nn

from gromo.containers._candidate_descent import descend_candidates


def test_batched_descent_equals_a_loop_of_single_descents(generator):
    x = torch.randn(160, 7, generator=generator)
    v = 0.01 * torch.randn(160, 5, generator=generator) + 0.01 * torch.tanh(x[:, :5] * x[:, 1:6])
    inputs = [[0, 1, 2], [0, 1, 2, 3, 4, 5, 6], [4, 5]]
    targets = [[0, 1], [2, 3, 4], [0, 1]]
    widths, bias_columns = [3, 4, 2], [1, 2, 0]
    alphas = [torch.randn(k, len(i), generator=generator) / len(i) ** 0.5 for k, i in zip(widths, inputs)]
    biases = [torch.zeros(k, b) for k, b in zip(widths, bias_columns)]
    omegas = [torch.randn(len(t), k, generator=generator) for k, t in zip(widths, targets)]
    selu = nn.SELU()
    batched = descend_candidates(alphas, biases, omegas, inputs, targets, selu, x, v, lrate=1e-2, epochs=4,
                                 batch_size=32, generator=torch.Generator().manual_seed(5))
    for c in range(3):
        single = descend_candidates([alphas[c]], [biases[c]], [omegas[c]], [inputs[c]], [targets[c]], selu, x, v,
                                    lrate=1e-2, epochs=4, batch_size=32, generator=torch.Generator().manual_seed(5))
        for many, one in zip(batched[:3], single[:3]):
            torch.testing.assert_close(many[c], one[0], rtol=1e-4, atol=1e-6)
        assert max(abs(a - b) for a, b in zip(batched[3][c], single[3][0])) < 1e-5
        assert batched[3][c][-1] < batched[3][c][0]  # the bottleneck loss went down
        if bias_columns[c] > 1:  # every bias column of a candidate moves identically (GroMo's layout)
            torch.testing.assert_close(batched[1][c][:, 0], batched[1][c][:, 1])
