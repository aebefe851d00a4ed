"""When a growth run stops by itself, and which of its models it keeps.

Two rules, both on by default, checked after every finished step (``--steps`` stays the maximum):

* **gain**: the best candidate's first-order gain is below ``gain_tolerance × (training loss
  before the step)``: growth can no longer buy a meaningful share of the loss that is left;
* **patience**: the validation accuracy has not improved for ``patience`` steps (needs a
  validation split; ties do not count as improvement).

The model kept is the one chosen on validation: the highest validation accuracy, ties broken by
the lowest validation loss, then by the earliest step (the smallest model). Without validation data
it is the last model. Everything here is a function of the records, so a resumed run decides
exactly as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

from .records import StepRecord, chosen_index

STOP_REASONS = ("max_steps", "gain", "patience", "no_candidate")


@dataclass(frozen=True)
class StoppingRule:
    """``gain_tolerance`` (>= 0; 0 disables the gain rule) and ``patience`` (>= 1 steps; None disables)."""

    gain_tolerance: float = 2e-4
    patience: int | None = 8

    def validate(self) -> None:
        """Raise ValueError naming an impossible setting."""
        if not self.gain_tolerance >= 0 or self.gain_tolerance != self.gain_tolerance:
            raise ValueError(f"gain_tolerance: impossible value {self.gain_tolerance!r}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience: impossible value {self.patience!r}")

    def reason(self, records: list[StepRecord]) -> str | None:
        """Why the run should stop after the last of ``records`` (one of STOP_REASONS), or None."""
        if len(records) < 2:
            return None
        last = records[-1]
        if last.layer is None and last.note:
            return "no_candidate"
        if (
            self.gain_tolerance > 0 and last.first_order_gain is not None and last.train_loss_before is not None
            and last.first_order_gain < self.gain_tolerance * last.train_loss_before
        ):
            return "gain"
        if self.patience is not None:
            best = chosen_index(records)
            if records[best].val_accuracy is not None and last.step - records[best].step >= self.patience:
                return "patience"
        return None
