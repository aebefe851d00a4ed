"""GroMo's contract checks as AssertionErrors that survive ``python -O``.

GroMo states many preconditions with ``assert condition, message``; code written against GroMo
catches those ``AssertionError``s (and matches their texts). A bare ``assert`` disappears under
``python -O``, so the package raises them through :func:`ensure` (or its alias
:func:`gromo_assert`), which always runs.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["ensure", "gromo_assert"]


def ensure(condition: object, message: str | Callable[[], str]) -> None:
    """Raise ``AssertionError(message)`` unless ``condition`` is truthy (also under ``python -O``).

    Args:
        condition: anything ``bool()`` accepts (a one-element tensor included).
        message: the error text, or a zero-argument callable building it (for texts that would be
            costly, or invalid, to build when the condition holds).
    Raises:
        AssertionError: ``condition`` is falsy.
    """
    if not condition:
        raise AssertionError(message() if callable(message) else message)


def gromo_assert(condition: object, message: str = "") -> None:
    """= ``ensure(condition, message)`` (GroMo's text for the failure).

    Raises:
        AssertionError: ``condition`` is falsy.
    """
    ensure(condition, message)
