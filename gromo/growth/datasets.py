"""Datasets for the growth command: scikit-learn's bundled digits and a dependency-free synthetic task.

Both are classification tasks returned as standardised float32 tensors (train statistics only):

    digits     1797 images 8×8 (1 channel), 10 classes; stratified split 1347 / 450 with
               random_state 0, exactly scikit-learn's ``train_test_split(..., stratify=y)``.
    synthetic  Gaussian inputs (n, d) labelled by a random ReLU teacher network (argmax of its
               logits), so a 1-neuron student cannot fit it and growth has something to find.

The digits file is read straight from scikit-learn's package data (no ``import sklearn``: that
import alone costs about a second of the command's 20 s budget); the split reproduces
``StratifiedShuffleSplit`` with numpy's legacy ``RandomState``, and a test checks it against
scikit-learn itself.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from dataclasses import dataclass

import numpy as np
import torch

from ._choices import DATASETS, unknown_dataset  # noqa: F401  (DATASETS: importable here as before)


class MissingDependencyError(RuntimeError):
    """An optional dependency needed for the requested feature is not installed."""


@dataclass
class ClassificationData:
    """Standardised classification data; ``x_*`` are (n, *input_shape) float32, ``y_*`` (n,) int64.

    ``x_val``/``y_val`` are empty (0 rows) when no validation split was requested.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    input_shape: tuple[int, ...]

    @property
    def num_features(self) -> int:
        """Number of input features once flattened (product of ``input_shape``)."""
        return int(np.prod(self.input_shape))

    def to(self, device: torch.device | str) -> "ClassificationData":
        """Return a copy whose tensors live on ``device``."""
        moved = {
            key: getattr(self, key).to(device)
            for key in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
        }
        return ClassificationData(
            name=self.name, num_classes=self.num_classes, input_shape=self.input_shape, **moved
        )


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Per-class draw counts closest to proportional, ties broken with ``rng`` (scikit-learn's rule)."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (candidates,) = np.where(remainder == value)
            add_now = min(len(candidates), need_to_add)
            floored[rng.choice(candidates, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def stratified_split(labels: np.ndarray, n_test: int, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) of a stratified shuffle split, identical to scikit-learn's.

    ``train_test_split(x, y, test_size=n_test, stratify=y, random_state=random_state)`` returns
    ``x[train], x[test]`` for the indices returned here.

    Args:
        labels: (n,) class labels.
        n_test: number of test samples, 1 <= n_test < n.
        random_state: seed of numpy's legacy ``RandomState``.

    Returns:
        (train indices (n - n_test,), test indices (n_test,)).

    Raises:
        ValueError: ``n_test`` out of range or a class with fewer than 2 members.
    """
    n = len(labels)
    if not 1 <= n_test < n:
        raise ValueError(f"n_test must be in [1, {n - 1}], got {n_test}")
    n_train = n - n_test
    _, class_of_sample, class_counts = np.unique(labels, return_inverse=True, return_counts=True)
    if class_counts.min() < 2:
        raise ValueError("labels: every class needs at least 2 members for a stratified split")
    class_indices = np.split(np.argsort(class_of_sample, kind="stable"), np.cumsum(class_counts)[:-1])
    rng = np.random.RandomState(random_state)
    train_counts = _approximate_mode(class_counts, n_train, rng)
    test_counts = _approximate_mode(class_counts - train_counts, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for members, n_tr, n_te in zip(class_indices, train_counts, test_counts):
        shuffled = members.take(rng.permutation(len(members)), mode="clip")
        train.extend(shuffled[:n_tr])
        test.extend(shuffled[n_tr : n_tr + n_te])
    return rng.permutation(train), rng.permutation(test)


def _digits_file() -> str:
    """Path of scikit-learn's bundled ``digits.csv.gz``, found without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "dataset 'digits' needs scikit-learn (pip install scikit-learn, or the [demo] extra)"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data", "digits.csv.gz")
    if not os.path.exists(path):
        raise MissingDependencyError(f"scikit-learn is installed but its digits data is missing ({path})")
    return path


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 digits as (pixels (1797, 64) float64 in 0..16, labels (1797,) int64).

    Raises:
        MissingDependencyError: scikit-learn (which ships the data) is not installed.
    """
    with gzip.open(_digits_file(), "rt") as handle:
        table = np.loadtxt(handle, delimiter=",")
    return table[:, :-1], table[:, -1].astype(np.int64)


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """(x − μ_train) / σ_train per feature; constant features are only centred (σ := 1)."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0] = 1.0
    return [(array - mean) / std for array in (train, *others)]


def _carve_validation(n_train: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split range(n_train) into (kept training indices, validation indices), seeded."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(val_fraction * n_train))
    order = np.random.RandomState(seed).permutation(n_train)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _to_data(name, x_tr, y_tr, x_va, y_va, x_te, y_te, num_classes, input_shape) -> ClassificationData:
    def features(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).reshape(-1, *input_shape)

    def labels(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))

    return ClassificationData(
        name=name,
        x_train=features(x_tr), y_train=labels(y_tr),
        x_val=features(x_va), y_val=labels(y_va),
        x_test=features(x_te), y_test=labels(y_te),
        num_classes=num_classes, input_shape=tuple(input_shape),
    )


def load_digits(*, val_fraction: float = 0.0, seed: int = 0, test_size: int = 450) -> ClassificationData:
    """scikit-learn digits, stratified 1347/450 split (random_state 0), standardised with train stats.

    ``input_shape`` is (1, 8, 8); an MLP flattens it to 64 features.

    Args:
        val_fraction: fraction of the 1347 training samples moved to a validation split (seeded by
            ``seed``; the test split never changes). Standardisation uses the remaining train rows.
        seed: seed of the validation carve-out.
        test_size: test samples (450 reproduces the reference protocol).

    Raises:
        MissingDependencyError: scikit-learn is not installed.
        ValueError: ``val_fraction`` outside [0, 1) or ``test_size`` out of range.
    """
    pixels, labels = load_digits_arrays()
    train_idx, test_idx = stratified_split(labels, test_size, random_state=0)
    keep, val = _carve_validation(len(train_idx), val_fraction, seed)
    train_idx, val_idx = train_idx[keep], train_idx[val]
    x_tr, x_va, x_te = _standardise(pixels[train_idx], pixels[val_idx], pixels[test_idx])
    return _to_data(
        "digits", x_tr, labels[train_idx], x_va, labels[val_idx], x_te, labels[test_idx], 10, (1, 8, 8)
    )


def make_synthetic(
    *,
    n_train: int = 1000,
    n_test: int = 500,
    num_features: int = 16,
    num_classes: int = 4,
    teacher_width: int = 32,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> ClassificationData:
    """Teacher-labelled Gaussian classification: y = argmax(std(W₂ relu(W₁ x / √d + b₁))), x ~ N(0, I_d).

    The teacher is drawn from ``seed`` (CPU generator, no global RNG); ``input_shape`` is
    (num_features,).

    Args:
        n_train, n_test: sample counts (>= 1 each).
        num_features: input dimension d >= 1.
        num_classes: classes >= 2.
        teacher_width: hidden width of the labelling network >= 1.
        val_fraction: fraction of the training samples moved to a validation split.
        seed: seed of inputs, teacher and validation carve-out.

    Raises:
        ValueError: a size out of range.
    """
    for name, value, low in (
        ("n_train", n_train, 1), ("n_test", n_test, 1), ("num_features", num_features, 1),
        ("num_classes", num_classes, 2), ("teacher_width", teacher_width, 1),
    ):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value}")
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, num_features, generator=generator, dtype=torch.float64)
    w1 = torch.randn(num_features, teacher_width, generator=generator, dtype=torch.float64)
    b1 = 0.5 * torch.randn(teacher_width, generator=generator, dtype=torch.float64)
    w2 = torch.randn(teacher_width, num_classes, generator=generator, dtype=torch.float64)
    logits = torch.relu(x @ w1 / num_features**0.5 + b1) @ w2
    # Standardising each class logit keeps the classes roughly balanced for any draw of the teacher.
    y = ((logits - logits.mean(dim=0)) / logits.std(dim=0)).argmax(dim=1)
    x, y = x.numpy(), y.numpy()
    keep, val = _carve_validation(n_train, val_fraction, seed)
    x_tr, x_va, x_te = _standardise(x[:n_train][keep], x[:n_train][val], x[n_train:])
    return _to_data(
        "synthetic", x_tr, y[:n_train][keep], x_va, y[:n_train][val], x_te, y[n_train:],
        num_classes, (num_features,),
    )


def load_dataset(name: str, *, val_fraction: float = 0.0, seed: int = 0) -> ClassificationData:
    """Load a dataset by name (one of ``DATASETS``).

    Raises:
        ValueError: unknown ``name``.
        MissingDependencyError: the dataset needs a package that is not installed.
    """
    if name == "digits":
        return load_digits(val_fraction=val_fraction, seed=seed)
    if name == "synthetic":
        return make_synthetic(val_fraction=val_fraction, seed=seed)
    raise ValueError(unknown_dataset(name))
