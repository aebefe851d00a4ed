"""GroMo's abstract members written once: properties and statistic update functions that each
layer type defines, raising NotImplementedError in the base classes until it does.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["abstract_property", "abstract_update"]


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


class _AbstractUpdate:
    """Placeholder that, once named in its class, becomes a plain method raising NotImplementedError
    (a plain function, so that signatures and ``inspect`` see an ordinary method)."""

    def __init__(self, summary: str) -> None:
        self.summary = summary

    def __set_name__(self, owner: type, name: str) -> None:
        def update(self: Any) -> tuple[torch.Tensor, int]:
            raise NotImplementedError

        update.__name__ = name
        update.__qualname__ = f"{owner.__qualname__}.{name}"
        update.__doc__ = f"{self.summary} Raises NotImplementedError (abstract)."
        setattr(owner, name, update)


def abstract_update(summary: str) -> Any:
    """A statistic update function ``(self) -> (sum, n)`` documented as ``summary``, raising
    NotImplementedError (abstract).

    Args:
        summary: the first sentence of its docstring (the statistic a layer type returns).
    """
    return _AbstractUpdate(summary)
