"""Classification scores, an information criterion and candidate labels (names of GroMo's
``gromo.utils.utils``, re-exported there).

F1 of one label ``2PR/(P+R)``; micro F1 pools the counts over the labels present in ``actual``,
macro F1 averages the per-label F1. ``compute_BIC`` puts the loss in place of the likelihood.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["alphabetic_index", "calculate_true_positives", "compute_BIC", "f1", "f1_macro", "f1_micro"]


def _as_array(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def calculate_true_positives(actual: Any, predicted: Any, label: Any) -> tuple[int, int, int]:
    """Counts of one label.

    Args:
        actual, predicted: label sequences (n,) (lists, arrays or tensors).
        label: the positive label.
    Returns:
        (true positives, false positives, false negatives).
    """
    actual, predicted = _as_array(actual), _as_array(predicted)
    true_positives = int(np.sum((actual == label) & (predicted == label)))
    false_positives = int(np.sum((actual != label) & (predicted == label)))
    false_negatives = int(np.sum((actual == label) & (predicted != label)))
    return true_positives, false_positives, false_negatives


def f1(actual: Any, predicted: Any, label: Any) -> float:
    """F1 score ``2PR/(P+R)`` of ``label``.

    Raises:
        ZeroDivisionError: precision or recall undefined (label never predicted / never present).
    """
    true_positives, false_positives, false_negatives = calculate_true_positives(actual, predicted, label)
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / (true_positives + false_negatives)
    return 2 * precision * recall / (precision + recall)


def f1_micro(actual: Any, predicted: Any) -> float:
    """F1 of the counts summed over the labels present in ``actual``."""
    totals = np.zeros(3, dtype=np.int64)
    for label in np.unique(_as_array(actual)):
        totals += np.asarray(calculate_true_positives(actual, predicted, label))
    true_positives, false_positives, false_negatives = (int(v) for v in totals)
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / (true_positives + false_negatives)
    return 2 * precision * recall / (precision + recall)


def f1_macro(actual: Any, predicted: Any) -> float:
    """Mean of the per-label F1 over the labels present in ``actual``."""
    return float(np.mean([f1(actual, predicted, label) for label in np.unique(_as_array(actual))]))


def compute_BIC(nb_params: int, loss: float, n: int) -> float:  # noqa: N802 (GroMo's name)
    """``nb_params·log₂(n) − 2·log₂(loss)`` (Bayesian information criterion with the loss in place
    of the likelihood)."""
    return nb_params * math.log2(n) - 2 * math.log2(loss)


def alphabetic_index(i: int, alphabet: Sequence[str] = string.ascii_lowercase) -> str:
    """Bijective base-``len(alphabet)`` label: 0 → "a", 25 → "z", 26 → "aa", 701 → "zz".

    Raises:
        ValueError: ``i < 0``.
    """
    if i < 0:
        raise ValueError("index must be non-negative")
    base = len(alphabet)
    letters = []
    i += 1
    while i > 0:
        i, remainder = divmod(i - 1, base)
        letters.append(alphabet[remainder])
    return "".join(reversed(letters))
