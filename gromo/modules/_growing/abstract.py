"""GroMo's abstract properties, written once: each layer type defines them, the base classes raise
NotImplementedError until it does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["abstract_property"]


class _AbstractProperty(property):
    """A read-only property whose getter raises NotImplementedError; it takes its attribute's name."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.fget.__name__ = name
        self.fget.__qualname__ = f"{owner.__qualname__}.{name}"


def abstract_property(summary: str) -> property:
    """A property documented as ``summary`` that raises NotImplementedError (abstract).

    Args:
        summary: the first sentence of its docstring (what a layer type returns).
    """

    def getter(self: Any) -> Any:
        raise NotImplementedError

    getter.__doc__ = f"{summary} Raises NotImplementedError (abstract)."
    return _AbstractProperty(getter)
