"""Per-step growth records and the growth.json writer (atomic: the file is valid after every step).

growth.json layout::

    {"format": "gromo-growth/1", "config": {...},
     "status": "running" | "finished" | "interrupted" | "terminated" | "diverged" | "failed",
     "message": <why a run ended early, or null>,
     "initial": {<record of the model before any growth, step 0>},
     "steps": [<record of growth step 1>, <record of growth step 2>, ...],
     "summary": {...}}

Every record carries ``test_accuracy``. A crash or Ctrl-C between two steps leaves the file as it was
after the last finished step, because each write goes to a temporary file in the same directory that
then replaces growth.json with ``os.replace`` (atomic on POSIX and Windows).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .files import replace_atomically

FORMAT = "gromo-growth/1"


@dataclass
class StepRecord:
    """What one growth step did and what it cost. Losses are mean cross-entropies.

    ``*_before`` are measured on the model before the step's growth, ``*_after`` after the growth
    and the training that follows it; ``line_search_loss_before`` / ``line_search_loss_after`` are
    the held-out line-search losses at scale 0 (no growth) and at the chosen scale (right after the
    change, before training).
    """

    step: int
    layer: str | None = None
    layer_index: int | None = None
    neurons_added: int = 0
    first_order_gain: float | None = None
    candidate_gains: dict[str, float] = field(default_factory=dict)
    candidate_neurons: dict[str, int] = field(default_factory=dict)
    singular_values: list[float] = field(default_factory=list)
    singular_values_all: list[float] = field(default_factory=list)
    scale: float | None = None
    line_search: list[list[float]] = field(default_factory=list)
    line_search_extensions: int = 0
    line_search_loss_before: float | None = None
    line_search_loss_after: float | None = None
    train_loss_before: float | None = None
    train_accuracy_before: float | None = None
    train_loss: float | None = None
    train_accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    test_loss: float | None = None
    test_accuracy: float | None = None
    parameters: int = 0
    widths: list[int] = field(default_factory=list)
    time_statistics: float = 0.0
    time_solves: float = 0.0
    time_line_search: float = 0.0
    time_training: float = 0.0
    time_evaluation: float = 0.0
    time_total: float = 0.0
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-safe dict (non-finite floats become null)."""
        return _json_safe(asdict(self))


def _json_safe(value: Any) -> Any:
    """Replace NaN/±inf by None recursively (strict JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json_atomic(path: str, payload: dict[str, Any], *, durable: bool = True) -> None:
    """Write ``payload`` as JSON to ``path`` so that readers only ever see a complete file.

    The rename is atomic, so a crash or Ctrl-C of the writing process never leaves a partial
    file; ``durable`` also fsyncs the data first (survives a power loss, costs ~10-20 ms). The file
    gets the umask's mode, like the plots.

    Raises:
        OSError: the directory is not writable.
    """
    text = json.dumps(_json_safe(payload), indent=1, allow_nan=False).encode()
    replace_atomically(path, lambda stream: stream.write(text), durable=durable)


class GrowthLog:
    """Collects the records of a run and rewrites growth.json after each one (``path`` may be None)."""

    def __init__(self, path: str | None, config: dict[str, Any] | None = None):
        self.path = path
        self.config = dict(config or {})
        self.initial: StepRecord | None = None
        self.steps: list[StepRecord] = []
        self.status = "running"
        self.message: str | None = None
        self.summary: dict[str, Any] = {}
        self.time_writing = 0.0

    def payload(self) -> dict[str, Any]:
        """The whole log as the growth.json dict."""
        return {
            "format": FORMAT,
            "status": self.status,
            "message": self.message,
            "config": self.config,
            "initial": None if self.initial is None else self.initial.to_json(),
            "steps": [record.to_json() for record in self.steps],
            "summary": self.summary,
        }

    def flush(self, durable: bool = False) -> None:
        """Rewrite growth.json (atomically; fsynced when ``durable``) if a path was given."""
        if self.path is not None:
            start = time.perf_counter()
            write_json_atomic(self.path, self.payload(), durable=durable)
            self.time_writing += time.perf_counter() - start

    def set_initial(self, record: StepRecord) -> None:
        """Store the step-0 record and flush."""
        self.initial = record
        self.flush()

    def append(self, record: StepRecord) -> None:
        """Store a finished growth step and flush."""
        self.steps.append(record)
        self.flush()

    def finish(self, status: str, summary: dict[str, Any] | None = None, message: str | None = None) -> None:
        """Mark the run finished / interrupted / terminated / diverged / failed, store the summary and flush."""
        self.status = status
        self.message = message
        if summary is not None:
            self.summary = summary
        self.flush(durable=True)

    @property
    def all_records(self) -> list[StepRecord]:
        """Initial record (if any) followed by the growth steps."""
        return ([self.initial] if self.initial is not None else []) + list(self.steps)


def summarise(records: list[StepRecord]) -> dict[str, Any]:
    """Best test accuracy, validation-selected test accuracy and time totals over ``records``.

    The validation choice is :func:`chosen_index` (highest ``val_accuracy``, then lowest
    ``val_loss``, then earliest); without validation data it is None.
    """
    if not records:
        return {}
    best = max(records, key=lambda r: (r.test_accuracy or 0.0, -r.step))
    summary: dict[str, Any] = {
        "best_test_accuracy": best.test_accuracy,
        "best_test_step": best.step,
        "best_test_parameters": best.parameters,
        "final_test_accuracy": records[-1].test_accuracy,
        "final_parameters": records[-1].parameters,
        "final_widths": records[-1].widths,
    }
    if any(r.val_accuracy is not None for r in records):
        chosen = records[chosen_index(records)]
        summary.update(
            val_selected_step=chosen.step,
            val_selected_val_accuracy=chosen.val_accuracy,
            val_selected_test_accuracy=chosen.test_accuracy,
            val_selected_parameters=chosen.parameters,
        )
    for part in ("statistics", "solves", "line_search", "training", "evaluation", "total"):
        summary[f"time_{part}"] = sum(getattr(r, f"time_{part}") for r in records)
    return summary


def _improves(record: StepRecord, incumbent: StepRecord) -> bool:
    return record.val_accuracy > incumbent.val_accuracy or (
        record.val_accuracy == incumbent.val_accuracy
        and record.val_loss is not None and incumbent.val_loss is not None
        and record.val_loss < incumbent.val_loss
    )


def chosen_index(records: list[StepRecord]) -> int | None:
    """Index in ``records`` of the model chosen on validation (last record without validation).

    Highest validation accuracy; ties (frequent on a small validation set) go to the lowest
    validation loss, then to the earliest step (the smallest model).
    """
    if not records:
        return None
    best = None
    for index, record in enumerate(records):
        if record.val_accuracy is None:
            continue
        if best is None or _improves(record, records[best]):
            best = index
    return len(records) - 1 if best is None else best
