"""Checkpoints of a growth run: what a run directory holds to reload, evaluate or resume it.

    RUN_DIR/checkpoint.pt   after every finished step: the model (spec + state dict), the optimizer
                            state, the training source's random state, the records so far
    RUN_DIR/model.pt        the model chosen on validation (spec + state dict + its record)

Both are written atomically (temporary file in the same directory, then ``os.replace``) and hold only
tensors and plain containers (``torch.load(..., weights_only=True)`` reads them): the architecture is
the JSON-able spec of :mod:`gromo.growth.models`, not pickled code. :func:`load_run` returns the
chosen model; :func:`read_checkpoint` what ``--resume`` needs.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from .files import replace_atomically
from .models import rebuild, spec_of
from .records import StepRecord

FORMAT = "gromo-checkpoint/1"
CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"


def _payload(model: nn.Module, spec: dict, **extra: Any) -> dict:
    return {"format": FORMAT, "architecture": spec_of(spec, model), "state_dict": model.state_dict(), **extra}


def save_checkpoint(run_dir: str, model: nn.Module, spec: dict, optimizer: torch.optim.Optimizer,
                    records: list[StepRecord], source_state: dict) -> None:
    """Write RUN_DIR/checkpoint.pt for the last finished step of ``records``."""
    payload = _payload(
        model, spec, optimizer=optimizer.state_dict(), records=[r.to_json() for r in records],
        source_state=source_state, torch_rng=torch.get_rng_state(),
    )
    replace_atomically(os.path.join(run_dir, CHECKPOINT_FILE), lambda stream: torch.save(payload, stream))


def save_model(run_dir: str, model: nn.Module, spec: dict, record: StepRecord) -> None:
    """Write RUN_DIR/model.pt: the chosen model and the record it was chosen with."""
    payload = _payload(model, spec, record=record.to_json())
    replace_atomically(os.path.join(run_dir, MODEL_FILE), lambda stream: torch.save(payload, stream))


def _read(path: str) -> dict:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file (not a run directory of 'gromo grow'?)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} file")
    return payload


def model_from(payload: dict, device=None) -> nn.Module:
    """Rebuild the model stored in a checkpoint payload and load its weights (eval mode)."""
    model = rebuild(payload["architecture"], device=device)
    model.load_state_dict(payload["state_dict"])
    return model.eval()


def load_run(path: str, *, which: str = "chosen", device=None) -> nn.Module:
    """The model of a run directory: ``which="chosen"`` (on validation, default) or ``"last"``.

    Args:
        path: a run directory written by ``python -m gromo grow`` (or by ``grow`` with a run_dir).
        which: "chosen" reads model.pt, "last" the model of checkpoint.pt.
        device: where the model goes (default cpu).

    Raises:
        FileNotFoundError: the file is missing. ValueError: not a checkpoint, or a bad ``which``.
    """
    if which not in ("chosen", "last"):
        raise ValueError(f"which: expected 'chosen' or 'last', got {which!r}")
    name = MODEL_FILE if which == "chosen" else CHECKPOINT_FILE
    return model_from(_read(os.path.join(path, name)), device=device)


def read_checkpoint(path: str) -> dict:
    """The payload of RUN_DIR/checkpoint.pt (records as :class:`StepRecord`)."""
    payload = _read(os.path.join(path, CHECKPOINT_FILE))
    payload["records"] = [StepRecord(**record) for record in payload["records"]]
    return payload


def read_chosen(path: str) -> dict:
    """The payload of RUN_DIR/model.pt (its record as :class:`StepRecord`)."""
    payload = _read(os.path.join(path, MODEL_FILE))
    payload["record"] = StepRecord(**payload["record"])
    return payload
