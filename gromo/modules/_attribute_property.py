"""Read-only properties that restate another attribute under GroMo's name for it.

GroMo names one quantity several ways (a convolution's ``in_neurons`` and ``in_channels`` are both
its layer's ``in_channels``; a merge's ``in_features``, ``out_features`` and ``out_channels`` are its
channels): one table line per name instead of one hand-written property each.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

__all__ = ["attribute_property"]


def attribute_property(path: str, doc: str, convert: Callable[[Any], Any] | None = None) -> property:
    """A read-only property returning ``self.<path>`` (a dotted path such as ``"layer.in_channels"``),
    passed through ``convert`` when given; ``doc`` is its docstring."""
    read_path = operator.attrgetter(path)

    def read(self: Any) -> Any:
        value = read_path(self)
        return value if convert is None else convert(value)

    read.__doc__ = doc
    return property(read, doc=doc)
