"""Where the growth loop's batches come from: in-memory tensors or any iterable of ``(x, y)`` batches.

The loop never indexes a dataset; it asks a *batch source* for the batches of one pass and reads them
once, so the memory it needs is one batch (plus the line-search samples it keeps), whatever the
dataset's size. Two sources:

    TensorBatches    tensors held in memory (``ClassificationData``); a pass draws a fresh
                     permutation from its generator (like a DataLoader with a ``RandomSampler``) or
                     keeps the order (validation / test). Data-parallel workers each take their
                     share of every global batch (:func:`~gromo.growth.distributed.shard`).
    LoaderBatches    any re-iterable of ``(x, y)`` batches: ``torch.utils.data.DataLoader`` (with a
                     ``DistributedSampler`` in a data-parallel run), a generator factory, a list.
                     Batches are moved to the model's device as they arrive.

Both yield ``(x_local, y_local, n_global)`` where ``n_global`` is the size of the global batch
(``None`` when only a collective could tell: the training pass then sums the local sizes).
:class:`Splits` bundles the train / validation / test sources of a run. ``load_npz`` reads a user's
own arrays (``x_train``, ``y_train``, optional ``x_val``, ``y_val``, ``x_test``, ``y_test``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .datasets import ClassificationData, _carve_validation, _standardise, _to_data
from .distributed import Communicator, shard

Batch = tuple[torch.Tensor, torch.Tensor, "int | None"]


class TensorBatches:
    """Batches of in-memory tensors ``x`` (n, ...) and ``y`` (n,).

    Args:
        x, y: the samples and their labels (same first dimension).
        batch_size: default global batch size of a pass.
        generator: when given, every pass draws ``torch.randperm(n, generator=generator)`` (so a pass
            sees the samples in the order a ``DataLoader`` with ``RandomSampler(generator=...)`` and
            the same batch size would); None keeps the stored order.
        comm: data-parallel communicator (each worker takes every ``world_size``-th sample of a
            global batch).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, generator: torch.Generator | None = None,
                 comm: Communicator | None = None):
        if len(x) != len(y):
            raise ValueError(f"x and y: {len(x)} samples but {len(y)} labels")
        self.x, self.y, self.batch_size = x, y, int(batch_size)
        self.generator = generator
        self.comm = comm or Communicator()

    def __len__(self) -> int:
        return len(self.y)

    @property
    def num_samples(self) -> int | None:
        """Number of samples of a pass (known for tensors)."""
        return len(self.y)

    def passes(self, batch_size: int | None = None) -> Iterator[Batch]:
        """One pass: ``(x_local, y_local, n_global)`` per global batch of ``batch_size`` samples."""
        size = int(batch_size or self.batch_size)
        n = len(self.y)
        order = torch.randperm(n, generator=self.generator) if self.generator is not None else torch.arange(n)
        order = order.to(self.y.device)
        for start in range(0, n, size):
            chunk = order[start : start + size]
            local = shard(chunk, self.comm)
            yield self.x[local], self.y[local], len(chunk)

    def get_state(self) -> dict:
        """What a resumed run needs to draw the same permutations (the generator state)."""
        return {} if self.generator is None else {"generator": self.generator.get_state()}

    def set_state(self, state: dict) -> None:
        """Restore :meth:`get_state`."""
        if self.generator is not None and "generator" in state:
            self.generator.set_state(state["generator"])


class LoaderBatches:
    """Batches of a re-iterable of ``(x, y)`` pairs (a DataLoader, a list, ...).

    Args:
        loader: iterated once per pass; each item is ``(x (b, ...), y (b,))``.
        device: where batches are moved (None: left where they are).
        comm: data-parallel communicator; with more than one worker each worker's loader must yield
            the same number of batches (a ``DistributedSampler`` does).
    """

    def __init__(self, loader: Iterable, *, device: torch.device | None = None, comm: Communicator | None = None):
        if isinstance(loader, Iterator):
            raise TypeError("data: an iterator can only be read once; pass a re-iterable (a DataLoader, a list)")
        self.loader, self.device = loader, device
        self.comm = comm or Communicator()
        self._epoch = 0

    @property
    def num_samples(self) -> int | None:
        """Samples of a pass when the loader knows its dataset's size, else None."""
        dataset = getattr(self.loader, "dataset", None)
        try:
            return None if dataset is None else len(dataset)
        except TypeError:
            return None

    def passes(self, batch_size: int | None = None) -> Iterator[Batch]:
        """One pass over the loader (``batch_size`` is the loader's own; the argument is ignored)."""
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self._epoch)  # a DistributedSampler reshuffles per epoch only when told
        self._epoch += 1
        for item in self.loader:
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise TypeError(f"data: every batch must be an (x, y) pair, got {type(item).__name__}")
            x, y = item
            if self.device is not None:
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            yield x, y, (None if self.comm.active else len(y))

    def get_state(self) -> dict:
        """The pass counter (a loader's own random state is the loader's business)."""
        return {"epoch": self._epoch}

    def set_state(self, state: dict) -> None:
        """Restore :meth:`get_state`."""
        self._epoch = int(state.get("epoch", self._epoch))


@dataclass
class Splits:
    """Train / validation / test data of a run: tensors ``(x, y)``, iterables of batches, or None.

    ``num_classes`` is needed only when the CLI builds the model; ``grow`` reads the model's output.
    """

    train: object
    val: object = None
    test: object = None
    num_classes: int | None = None
    input_shape: tuple[int, ...] | None = None


def _source(split, *, batch_size: int, generator, comm: Communicator, device) -> TensorBatches | LoaderBatches | None:
    if split is None:
        return None
    if isinstance(split, (TensorBatches, LoaderBatches)):
        return split
    if isinstance(split, tuple) and len(split) == 2 and all(isinstance(t, torch.Tensor) for t in split):
        x, y = split
        return None if len(y) == 0 else TensorBatches(x, y, batch_size, generator=generator, comm=comm)
    if isinstance(split, Iterable):
        return LoaderBatches(split, device=device, comm=comm)
    raise TypeError(f"data: expected tensors (x, y) or an iterable of (x, y) batches, got {type(split).__name__}")


def make_sources(data, *, batch_size: int, evaluation_batch_size: int, generator: torch.Generator,
                 comm: Communicator, device=None) -> tuple:
    """(train, val, test) batch sources of ``data`` (ClassificationData or :class:`Splits`).

    The training source draws its permutations from ``generator``; validation and test keep their
    order. Empty or missing splits are None.

    Raises:
        TypeError: a split is neither tensors nor an iterable of batches.
    """
    if isinstance(data, ClassificationData):
        data = Splits((data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test))
    if not isinstance(data, Splits):
        raise TypeError(f"data: expected ClassificationData or Splits, got {type(data).__name__}")
    train = _source(data.train, batch_size=batch_size, generator=generator, comm=comm, device=device)
    if train is None:
        raise ValueError("data: a training split is required")
    val = _source(data.val, batch_size=evaluation_batch_size, generator=None, comm=comm, device=device)
    test = _source(data.test, batch_size=evaluation_batch_size, generator=None, comm=comm, device=device)
    return train, val, test


NPZ_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def load_npz(path: str, *, val_fraction: float = 0.0, seed: int = 0) -> ClassificationData:
    """A user's classification arrays from ``path`` (.npz), standardised with the training statistics.

    Required: ``x_train`` (n, ...) numeric and ``y_train`` (n,) integer labels 0..C-1. Optional:
    ``x_val``/``y_val`` (else ``val_fraction`` of the training rows are carved out, seeded) and
    ``x_test``/``y_test`` (else no test split). Inputs of shape (n, C, H, W) are images (a cnn
    can grow on them); (n, H, W) gets a channel axis; (n, d) are feature vectors.

    Raises:
        ValueError: a missing or malformed array (message names the key).
        OSError: the file cannot be read.
    """
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in NPZ_KEYS if key in archive.files}
    for key in ("x_train", "y_train"):
        if key not in arrays:
            raise ValueError(f"{path}: missing array {key!r} (need x_train, y_train; optional x_val, y_val, x_test, y_test)")
    for split in ("val", "test"):
        if (f"x_{split}" in arrays) != (f"y_{split}" in arrays):
            raise ValueError(f"{path}: x_{split} and y_{split} must be given together")
    for split in ("train", "val", "test"):
        if f"x_{split}" not in arrays:
            continue
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if not np.issubdtype(x.dtype, np.number) or x.ndim < 2:
            raise ValueError(f"{path}: x_{split} must be a numeric array (n, ...), got dtype {x.dtype} shape {x.shape}")
        if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"{path}: y_{split} must be integer labels of shape ({len(x)},), got {y.dtype} {y.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"{path}: x_{split} contains NaN or Inf")
        if len(y) and y.min() < 0:
            raise ValueError(f"{path}: y_{split} has negative labels")
        if split != "train" and x.shape[1:] != arrays["x_train"].shape[1:]:
            raise ValueError(f"{path}: x_{split} samples have shape {x.shape[1:]}, x_train's {arrays['x_train'].shape[1:]}")
    x_train, y_train = arrays["x_train"].astype(np.float64), arrays["y_train"].astype(np.int64)
    if len(y_train) < 2:
        raise ValueError(f"{path}: x_train needs at least 2 samples")
    if "x_val" in arrays:
        x_val, y_val = arrays["x_val"].astype(np.float64), arrays["y_val"].astype(np.int64)
    else:
        keep, val = _carve_validation(len(y_train), val_fraction, seed)
        x_train, y_train, x_val, y_val = x_train[keep], y_train[keep], x_train[val], y_train[val]
    shape = x_train.shape[1:]
    x_test = arrays.get("x_test", np.zeros((0, *shape))).astype(np.float64)
    y_test = arrays.get("y_test", np.zeros(0, dtype=np.int64)).astype(np.int64)
    labels = [y for y in (y_train, y_val, y_test) if len(y)]
    num_classes = int(max(int(y.max()) for y in labels)) + 1
    input_shape = (1, *shape) if len(shape) == 2 else tuple(shape)
    flat = [a.reshape(len(a), -1) for a in (x_train, x_val, x_test)]
    x_tr, x_va, x_te = _standardise(*flat)
    return _to_data("npz", x_tr, y_train, x_va, y_val, x_te, y_test, num_classes, input_shape)
