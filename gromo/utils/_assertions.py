"""GroMo's assertion failures, raised so that they survive ``python -O``.

GroMo checks many preconditions with ``assert``; code written against GroMo catches the resulting
``AssertionError`` and matches its text. A plain ``assert`` vanishes under ``-O``, so the new files
raise through :func:`gromo_assert` instead.
"""

from __future__ import annotations

__all__ = ["gromo_assert"]


def gromo_assert(condition: object, message: str = "") -> None:
    """Raise ``AssertionError(message)`` unless ``condition`` is truthy (also under ``python -O``).

    Args:
        condition: the precondition.
        message: GroMo's text for the failure.
    Raises:
        AssertionError: ``condition`` is falsy.
    """
    if not condition:
        raise AssertionError(message)
