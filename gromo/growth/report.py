"""What the growth command prints: the growth table, the summary lines and the eval table."""

from __future__ import annotations

STOP_WORDS = {
    "max_steps": "--steps reached",
    "gain": "the best first-order gain fell below --gain-tolerance × the training loss",
    "patience": "validation accuracy did not improve for --patience steps",
    "no_candidate": "no layer had a positive first-order gain",
}


def _fmt(value, spec: str, empty: str = "-") -> str:
    return empty if value is None else format(value, spec)


def growth_table(records) -> str:
    """The growth table printed at the end of the command (one row per step, step 0 = start)."""
    header = (
        f"{'step':>4}  {'layer':<16} {'+n':>3} {'widths':<14} {'params':>7}  {'gain':>8}  {'scale':>7}  "
        f"{'train loss':>10} {'train':>6} {'val':>6} {'test':>6}  {'time s':>6}"
    )
    lines = [header, "-" * len(header)]
    for r in records:
        widths = ",".join(str(w) for w in r.widths)
        lines.append(
            f"{r.step:>4}  {(r.layer or '-'):<16.16} {(str(r.neurons_added) if r.step else '-'):>3} {widths:<14.14} "
            f"{r.parameters:>7}  {_fmt(r.first_order_gain, '8.2e'):>8}  {_fmt(r.scale, '7.4g'):>7}  "
            f"{_fmt(r.train_loss, '10.4f'):>10} {_fmt(r.train_accuracy and 100 * r.train_accuracy, '5.1f'):>5}% "
            f"{_fmt(r.val_accuracy and 100 * r.val_accuracy, '5.1f'):>5}% {_fmt(r.test_accuracy and 100 * r.test_accuracy, '5.1f'):>5}%  "
            f"{r.time_total:>6.2f}"
        )
    return "\n".join(lines)


def summary_lines(summary: dict, wall: float, import_time: float) -> list[str]:
    """Human-readable summary: best / validation-selected test accuracy and the wall-time split."""
    lines = []
    if summary.get("best_test_accuracy") is not None:
        lines.append(
            f"best test accuracy {100 * summary['best_test_accuracy']:.2f}% at step {summary['best_test_step']} "
            f"({summary['best_test_parameters']} parameters); final {100 * summary['final_test_accuracy']:.2f}% "
            f"({summary['final_parameters']} parameters, widths {summary['final_widths']})"
        )
    if summary.get("val_selected_step") is not None:
        lines.append(
            f"chosen on validation: step {summary['val_selected_step']} "
            f"(val {100 * summary['val_selected_val_accuracy']:.2f}%) -> test {100 * summary['val_selected_test_accuracy']:.2f}% "
            f"({summary['val_selected_parameters']} parameters)"
        )
    if summary.get("stop_reason") is not None:
        lines.append(f"stopped after step {summary['stop_step']}: {STOP_WORDS.get(summary['stop_reason'], summary['stop_reason'])}")
    baseline = summary.get("baseline")
    if baseline:
        lines.append(
            f"baseline (fixed widths {baseline['widths']}, {baseline['parameters']} parameters, {baseline['epochs']} epochs "
            f"from scratch): test {100 * baseline['val_selected_test_accuracy']:.2f}% chosen on validation "
            f"(epoch {baseline['val_selected_epoch']}), final {100 * baseline['final_test_accuracy']:.2f}%"
            if baseline.get("val_selected_test_accuracy") is not None and baseline.get("final_test_accuracy") is not None
            else f"baseline: {baseline['parameters']} parameters, {baseline['epochs']} epochs (no test split)"
        )
    parts = [(name, summary.get(f"time_{name}", 0.0)) for name in ("training", "statistics", "solves", "line_search", "evaluation")]
    loop = summary.get("time_total", 0.0)
    split = ", ".join(f"{name.replace('_', ' ')} {t:.2f} s ({100 * t / loop:.0f}%)" for name, t in parts if loop > 0)
    lines.append(f"wall time {wall:.2f} s: imports + data + model {import_time:.2f} s, growth loop {loop:.2f} s ({split})")
    extras = [(label, summary.get(key)) for label, key in (
        ("set-up", "time_setup"), ("growth.json writes", "time_json"), ("checkpoints", "time_checkpoints"),
        ("plots", "time_plots"), ("baseline", "time_baseline"),
    )]
    extras = ", ".join(f"{label} {value:.2f} s" for label, value in extras if value is not None)
    if extras:
        lines.append(f"  also: {extras}")
    return lines


def eval_table(rows: list[tuple[str, float | None, float | None]]) -> str:
    """``split  loss  accuracy`` lines of the eval command (None: split absent)."""
    lines = [f"{'split':<6} {'loss':>8} {'accuracy':>9}"]
    for name, loss, accuracy in rows:
        lines.append(f"{name:<6} {_fmt(loss, '8.4f'):>8} {_fmt(accuracy and 100 * accuracy, '8.2f'):>8}%")
    return "\n".join(lines)
