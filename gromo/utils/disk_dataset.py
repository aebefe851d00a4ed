"""GroMo's ``gromo.utils.disk_dataset``: datasets read from tensors saved on disk.

A saved file is a ``torch.save``d dict ``{key: tensor (n, …)}``; the chosen keys are concatenated
along dim 1 into the inputs (and the targets). ``DiskDataset`` iterates over the loaded rows;
``MemMapDataset`` writes the concatenations as ``__input.npy`` / ``__target.npy`` next to the source
files (overwriting them) and memory-maps them read-only; ``SimpleMemMapDataset`` memory-maps one
``.npy`` file per key.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

__all__ = ["DiskDataset", "MemMapDataset", "SimpleMemMapDataset", "convert_dict_to_npy"]


def _concatenated(filename: str, keys: list[str]) -> torch.Tensor:
    data = torch.load(filename)
    return torch.cat([data[key] for key in keys], dim=1)


def _check_lengths(inputs: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray) -> None:
    if len(inputs) != len(targets):
        raise ValueError(f"Input and target tensors must have same length, got {len(inputs)} and {len(targets)}")


class DiskDataset(IterableDataset):
    """Rows of ``cat(inputs[keys], 1)`` and ``cat(targets[keys], 1)`` loaded from two saved dicts.

    Args:
        input_filename, target_filename: ``torch.save``d dicts of tensors (n, …).
        input_keys, target_keys: keys concatenated along dim 1.
    """

    def __init__(self, input_filename: str, target_filename: str, input_keys: list[str],
                 target_keys: list[str]) -> None:
        super().__init__()
        self.input_filename = input_filename
        self.target_filename = target_filename
        self.input_keys = input_keys
        self.target_keys = target_keys

    def load_data(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (x_i, y_i) row by row.

        Raises:
            ValueError: inputs and targets of different lengths.
        """
        inputs = _concatenated(self.input_filename, self.input_keys)
        targets = _concatenated(self.target_filename, self.target_keys)
        _check_lengths(inputs, targets)
        yield from zip(inputs, targets)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.load_data()


class MemMapDataset(Dataset):
    """Indexable rows of the concatenated inputs/targets, memory-mapped from ``.npy`` copies.

    Args:
        input_filename, target_filename: ``torch.save``d dicts of tensors (n, …); the copies
            ``__input.npy`` / ``__target.npy`` are written next to them (overwritten).
        input_keys, target_keys: keys concatenated along dim 1.
    Raises:
        ValueError: inputs and targets of different lengths.
    """

    def __init__(self, input_filename: str, target_filename: str, input_keys: list[str],
                 target_keys: list[str]) -> None:
        super().__init__()
        input_path = os.path.join(os.path.dirname(input_filename), "__input.npy")
        target_path = os.path.join(os.path.dirname(target_filename), "__target.npy")
        np.save(input_path, _concatenated(input_filename, input_keys).numpy())
        np.save(target_path, _concatenated(target_filename, target_keys).numpy())
        self.inputs = np.load(input_path, mmap_mode="r")
        self.targets = np.load(target_path, mmap_mode="r")
        _check_lengths(self.inputs, self.targets)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        with warnings.catch_warnings():  # the rows are read-only views of the map: never written
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(self.inputs[index]), torch.from_numpy(self.targets[index])


class SimpleMemMapDataset(Dataset):
    """Rows memory-mapped from one ``.npy`` file per key, concatenated (along the row's dim 0).

    Args:
        input_filenames, target_filenames: ``.npy`` files of arrays (n, …).
    Raises:
        ValueError: an array whose length differs from the first input's.
    """

    def __init__(self, input_filenames: list[str], target_filenames: list[str]) -> None:
        super().__init__()
        self.inputs = [np.load(name, mmap_mode="r") for name in input_filenames]
        self.targets = [np.load(name, mmap_mode="r") for name in target_filenames]
        length = len(self.inputs[0])
        if any(len(array) != length for array in self.inputs):
            raise ValueError(
                f"Input and target tensors must have same length, got input lengths {[len(a) for a in self.inputs]}"
            )
        if any(len(array) != length for array in self.targets):
            raise ValueError(
                f"Input and target tensors must have same length, got target lengths {[len(a) for a in self.targets]}"
            )

    def __len__(self) -> int:
        return len(self.inputs[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.concatenate([np.asarray(array[index]) for array in self.inputs], axis=0)
        y = np.concatenate([np.asarray(array[index]) for array in self.targets], axis=0)
        return torch.from_numpy(x), torch.from_numpy(y)


def convert_dict_to_npy(pt_path: str, prefix: str) -> None:
    """Write every tensor of a saved dict as ``temp/{prefix}_{key}.npy`` (``temp/`` relative to the
    working directory, must exist)."""
    for key, tensor in torch.load(pt_path).items():
        np.save(os.path.join("temp", f"{prefix}_{key}.npy"), tensor.numpy())
