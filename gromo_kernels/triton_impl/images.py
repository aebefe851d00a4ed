"""Host-side operands of the Gram kernel: the kernel images it gathers from and the tap counts.

Both are built with torch on the operands' device before the launch; the kernel then needs no
bounds masks (images) and no loop over taps (counts).
"""

from __future__ import annotations

import torch

from ..geometry import Conv2dGeometry

__all__ = ["kernel_image", "tap_counts"]


def kernel_image(x: torch.Tensor, geometry: Conv2dGeometry, bias: bool) -> torch.Tensor:
    """The copy of ``x (n, C, H, W)`` the kernel reads: (n + 1, C + b, H + 2p_h, W + 2p_w).

    Zero border (the conv's padding), a ones channel last when ``bias`` (ones on the border too:
    the bias column reads it at tap 0), and a zero image n for rows past the end. So the gathers
    need neither masks nor selects: every address is inside, every value is the one Z holds.
    """
    (_, _), _, (ph, pw), _ = geometry
    n, c, h, w = x.shape
    out = x.new_zeros((n + 1, c + int(bias), h + 2 * ph, w + 2 * pw))
    out[:n, :c, ph:ph + h, pw:pw + w] = x
    if bias:
        out[:n, c] = 1
    return out


def tap_counts(size: int, out: int, k: int, stride: int, pad: int, dil: int,
                device: torch.device) -> torch.Tensor:
    """(size,) fp32: for each input position o, the pairs (o', t) with o'·stride − pad + t·dil == o."""
    counts = torch.zeros(size, dtype=torch.float64)
    positions = torch.arange(out, dtype=torch.int64) * stride - pad
    for t in range(k):
        p = positions + t * dil
        p = p[(p >= 0) & (p < size)]
        counts.index_add_(0, p, torch.ones(p.numel(), dtype=torch.float64))
    return counts.to(torch.float32).to(device)
