"""Conv2d geometry shared by the statistics: kernel, stride, padding, dilation as pairs."""

from __future__ import annotations

from typing import NamedTuple


def _pair(name: str, value) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return (int(value[0]), int(value[1]))
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


class Conv2dGeometry(NamedTuple):
    """Geometry of a 2-D convolution (ints or pairs); ``.normalized()`` returns pairs.

    Args:
        kernel_size: (kh, kw) >= 1.
        stride: >= 1.  padding: >= 0.  dilation: >= 1.
    """

    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    dilation: int | tuple[int, int] = 1

    def normalized(self) -> "Conv2dGeometry":
        """Pairs everywhere, validated (TypeError for non-ints, ValueError for bad values)."""
        k = _pair("kernel_size", self.kernel_size)
        s = _pair("stride", self.stride)
        p = _pair("padding", self.padding)
        d = _pair("dilation", self.dilation)
        if min(k) < 1:
            raise ValueError(f"kernel_size must be >= 1, got {k}")
        if min(s) < 1:
            raise ValueError(f"stride must be >= 1, got {s}")
        if min(p) < 0:
            raise ValueError(f"padding must be >= 0, got {p}")
        if min(d) < 1:
            raise ValueError(f"dilation must be >= 1, got {d}")
        return Conv2dGeometry(k, s, p, d)

    @property
    def kernel_area(self) -> int:
        """kk = kh·kw."""
        kh, kw = self.normalized().kernel_size
        return kh * kw

    @property
    def is_pointwise(self) -> bool:
        """1×1 kernel, stride 1, no padding, dilation 1: each output position reads its own pixel."""
        return self.normalized() == POINTWISE

    @property
    def has_unit_stride(self) -> bool:
        """Stride 1 along both axes (output positions step one pixel at a time)."""
        return self.normalized().stride == (1, 1)

    @property
    def centre_tap_position(self) -> tuple[int, int]:
        """(kh // 2, kw // 2): the kernel tap at the centre (for even sizes, the lower-right one)."""
        kh, kw = self.normalized().kernel_size
        return (kh // 2, kw // 2)

    @property
    def centre_tap(self) -> int:
        """Flat index e₀ = (kh // 2)·kw + kw // 2 of the centre tap (unfold order e = i·kw + j)."""
        i, j = self.centre_tap_position
        return i * self.normalized().kernel_size[1] + j

    @property
    def centre_offset(self) -> tuple[int, int]:
        """Pixel read by the centre tap of output (0, 0): (i₀·d_h − p_h, j₀·d_w − p_w)."""
        g = self.normalized()
        (i, j), (dh, dw), (ph, pw) = self.centre_tap_position, g.dilation, g.padding
        return (i * dh - ph, j * dw - pw)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Output grid ``⌊(h + 2p − d(k−1) − 1)/s⌋ + 1`` per dimension (may be <= 0 when too small)."""
        g = self.normalized()
        out = []
        for size, k, s, p, d in zip((height, width), g.kernel_size, g.stride, g.padding, g.dilation):
            out.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
        return (out[0], out[1])


POINTWISE = Conv2dGeometry((1, 1), (1, 1), (0, 0), (1, 1))
"""The 1×1 conv of stride 1: a dense layer applied at every pixel (rows as (R, d, 1, 1) images)."""


def as_geometry(name: str, value) -> Conv2dGeometry:
    """Accept a Conv2dGeometry (or a kernel size) and return it normalised; TypeError names ``name``."""
    if isinstance(value, Conv2dGeometry):
        return value.normalized()
    if isinstance(value, (int, tuple, list)):
        return Conv2dGeometry(value).normalized()
    raise TypeError(f"{name} must be a Conv2dGeometry, got {type(value).__name__}")
