"""PNG plots of a growth run (matplotlib, Agg backend; imported lazily).

    accuracy_vs_parameters.png   accuracy (train / val / test) and loss vs parameter count
    widths.png                   width of every growable layer after each step
    first_order_gain.png         first-order gain of every candidate layer per step (chosen marked)
    singular_values.png          singular values behind each step's added neurons (kept vs cut)
"""

from __future__ import annotations

import os

from ._choices import MATPLOTLIB_MISSING
from .datasets import MissingDependencyError
from .records import StepRecord, chosen_index

PLOT_FILES = ("accuracy_vs_parameters.png", "widths.png", "first_order_gain.png", "singular_values.png")


def _pyplot():
    try:
        import matplotlib
    except ImportError as error:
        raise MissingDependencyError(MATPLOTLIB_MISSING) from error
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _series(records: list[StepRecord], key: str):
    points = [(r.parameters, getattr(r, key)) for r in records if getattr(r, key) is not None]
    return [p for p, _ in points], [v for _, v in points]


def _save(plt, fig, path: str) -> str:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _finish_step_plot(plt, fig, ax, path: str, ylabel: str, title: str, grid_which: str = "both",
                      legend_loc: str = "best", margins: tuple[float, float] = (0.13, 0.97)) -> str:
    """Label a plot over growth steps (x), title it, fix its (left, right) ``margins`` and save it."""
    ax.set_xlabel("growth step")
    ax.set_ylabel(ylabel)
    ax.grid(True, which=grid_which, alpha=0.3)
    ax.legend(loc=legend_loc, fontsize=8)
    ax.set_title(title)
    left, right = margins
    fig.subplots_adjust(left=left, right=right, bottom=0.13, top=0.9)
    return _save(plt, fig, path)


def plot_accuracy_loss(records: list[StepRecord], path: str, title: str = "", baseline: dict | None = None) -> str:
    """Accuracy and mean loss vs number of parameters, one point per step; the model chosen on
    validation is circled and a ``baseline`` (fixed network, see :mod:`gromo.growth.baseline`) is a star."""
    plt = _pyplot()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label, style in (
        ("train_accuracy", "train", "o-"), ("val_accuracy", "validation", "s-"), ("test_accuracy", "test", "^-"),
    ):
        xs, ys = _series(records, key)
        if xs:
            ax_acc.plot(xs, [100 * y for y in ys], style, markersize=3.5, label=label)
    best = max((r for r in records if r.test_accuracy is not None), key=lambda r: r.test_accuracy, default=None)
    if best is not None:
        ax_acc.annotate(
            f"best test {100 * best.test_accuracy:.1f}% (step {best.step})",
            (best.parameters, 100 * best.test_accuracy), textcoords="offset points", xytext=(-150, -45),
            arrowprops={"arrowstyle": "->", "lw": 0.8}, fontsize=8,
        )
    if any(r.val_accuracy is not None for r in records):
        chosen = records[chosen_index(records)]
        if chosen.test_accuracy is not None:
            ax_acc.plot([chosen.parameters], [100 * chosen.test_accuracy], "o", markersize=11, markerfacecolor="none",
                        markeredgecolor="black", label=f"chosen on validation: test {100 * chosen.test_accuracy:.1f}%")
    if baseline and baseline.get("val_selected_test_accuracy") is not None:
        ax_acc.plot([baseline["parameters"]], [100 * baseline["val_selected_test_accuracy"]], "*", markersize=13,
                    color="crimson", label=f"fixed-width baseline: test {100 * baseline['val_selected_test_accuracy']:.1f}%")
    ax_acc.set_xscale("log")
    ax_acc.set_xlabel("parameters")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.grid(True, which="both", alpha=0.3)
    ax_acc.legend(loc="lower right")
    for key, label, style in (("train_loss", "train", "o-"), ("val_loss", "validation", "s-"), ("test_loss", "test", "^-")):
        xs, ys = _series(records, key)
        if xs:
            ax_loss.plot(xs, ys, style, markersize=3.5, label=label)
    ax_loss.set_xscale("log")
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("parameters")
    ax_loss.set_ylabel("mean loss (cross-entropy)")
    ax_loss.grid(True, which="both", alpha=0.3)
    ax_loss.legend(loc="lower left")
    fig.suptitle(title or "accuracy and loss vs parameters")
    # Fixed margins: tight_layout re-measures every tick label and doubles the rendering time.
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.88, wspace=0.25)
    return _save(plt, fig, path)


def plot_widths(records: list[StepRecord], layer_names: list[str], path: str, title: str = "") -> str:
    """Width (hidden neurons / channels) of each growable layer after each step."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    steps = [r.step for r in records]
    for index, name in enumerate(layer_names):
        widths = [r.widths[index] if index < len(r.widths) else None for r in records]
        ax.step(steps, widths, where="post", marker="o", markersize=3, label=name)
    twin = ax.twinx()
    twin.plot(steps, [r.parameters for r in records], "k:", lw=1, label="parameters")
    twin.set_ylabel("parameters (dotted)")
    return _finish_step_plot(plt, fig, ax, path, "width (neurons / channels)", title or "layer widths per step",
                             grid_which="major", legend_loc="upper left", margins=(0.1, 0.86))


def plot_first_order_gain(records: list[StepRecord], path: str, title: str = "") -> str:
    """First-order gain of each candidate layer per step (log scale); the chosen layer is starred."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    grown = [r for r in records if r.candidate_gains]
    names = sorted({name for r in grown for name in r.candidate_gains})
    for name in names:
        points = [(r.step, r.candidate_gains[name]) for r in grown if name in r.candidate_gains]
        points = [(s, g) for s, g in points if g is not None and g > 0]
        if points:
            ax.plot([s for s, _ in points], [g for _, g in points], "o-", markersize=3, label=name)
    chosen = [(r.step, r.first_order_gain) for r in grown if r.first_order_gain and r.first_order_gain > 0]
    if chosen:
        ax.plot([s for s, _ in chosen], [g for _, g in chosen], "k*", markersize=9, label="chosen", zorder=5)
    if names:
        ax.set_yscale("log")
    return _finish_step_plot(plt, fig, ax, path, "first-order gain (loss decrease per unit scale²)",
                             title or "first-order gain per candidate layer")


def plot_singular_values(records: list[StepRecord], path: str, title: str = "") -> str:
    """For each step the singular values of S^{-1/2}N: kept (filled, added as neurons) and cut (hollow)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    kept_x, kept_y, cut_x, cut_y = [], [], [], []
    for r in records:
        kept = len(r.singular_values)
        for rank, sigma in enumerate(r.singular_values_all or r.singular_values):
            if sigma is None or sigma <= 0:
                continue
            (kept_x if rank < kept else cut_x).append(r.step)
            (kept_y if rank < kept else cut_y).append(sigma)
    if cut_x:
        ax.scatter(cut_x, cut_y, s=14, facecolors="none", edgecolors="tab:gray", label="not added")
    if kept_x:
        ax.scatter(kept_x, kept_y, s=16, color="tab:blue", label="added neurons")
    if kept_x or cut_x:
        ax.set_yscale("log")
    return _finish_step_plot(plt, fig, ax, path, r"singular value $\sigma$ of $S^{-1/2}N$",
                             title or "singular values behind each added group")


def plot_all(records: list[StepRecord], layer_names: list[str], directory: str, title: str = "",
             baseline: dict | None = None) -> list[str]:
    """Write the four PNGs into ``directory`` (``baseline``: drawn on the accuracy plot); returns their paths.

    Raises:
        MissingDependencyError: matplotlib is not installed.
    """
    os.makedirs(directory, exist_ok=True)
    prefix = f"{title}: " if title else ""
    return [
        plot_accuracy_loss(records, os.path.join(directory, PLOT_FILES[0]), prefix + "accuracy and loss vs parameters",
                           baseline),
        plot_widths(records, layer_names, os.path.join(directory, PLOT_FILES[1]), prefix + "layer widths per step"),
        plot_first_order_gain(records, os.path.join(directory, PLOT_FILES[2]), prefix + "first-order gain per candidate layer"),
        plot_singular_values(records, os.path.join(directory, PLOT_FILES[3]), prefix + "singular values behind each added group"),
    ]
