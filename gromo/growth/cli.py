"""The ``gromo`` command line: ``grow`` a network on a dataset, ``eval`` a grown run.

    python -m gromo grow                       # mlp 64→[1]→10 on digits; stops by itself
    python -m gromo grow --model cnn           # growing CNN (Conv2dGrowingBlocks) on digits
    python -m gromo grow --model resnet --growth full   # GroMo's ResNet / VGG containers
    python -m gromo grow --dataset my.npz      # your own arrays (x_train, y_train, ...)
    python -m gromo grow --resume RUN_DIR      # continue a run where it stopped
    python -m gromo grow --baseline            # also train a fixed network of the kept widths
    python -m gromo eval RUN_DIR               # metrics of the model chosen on validation

Bad input (unknown model / dataset, an out-of-range argument, an unavailable device or backend, a
missing optional dependency, an unwritable output directory or a full disk) prints ONE line
``gromo grow: error: ...`` on stderr and exits with code 2, without a traceback. Faults during a run
are recorded in growth.json before the process ends (:mod:`gromo.growth.cli_run`). Under
``torchrun --nproc_per_node N python -m gromo grow`` the workers share every batch and sum their
statistics; only rank 0 writes files and prints.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

from ._choices import DATASETS, unknown_dataset

MODELS = ("mlp", "cnn", "resnet", "vgg")
GROWTHS = ("restricted", "full")
BACKENDS = ("auto", "torch", "triton")


class UsageError(Exception):
    """Bad command-line input: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (no usage block) and exits with code 2."""

    def error(self, message):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The ``gromo`` argument parser (sub-command ``grow``)."""
    parser = _Parser(prog="gromo", description="Growing neural networks (GroMo-compatible).")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    grow = commands.add_parser(
        "grow", help="grow a tiny network on a dataset",
        description="Grow a tiny network where its expressivity is the bottleneck (TINY updates).",
    )
    grow.add_argument("--model", default="mlp", help=f"one of {', '.join(MODELS)} (default: %(default)s)")
    grow.add_argument("--dataset", default="digits", help=f"one of {', '.join(DATASETS)}, or PATH.npz with x_train, y_train (optional x_val, y_val, x_test, y_test) (default: %(default)s)")
    grow.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run in RUN_DIR with its own settings")
    grow.add_argument("--steps", type=int, default=30, help="at most this many growth steps (default: %(default)s)")
    grow.add_argument("--gain-tolerance", type=float, default=2e-4, help="stop when the best first-order gain < this × the training loss; 0: never (default: %(default)s)")
    grow.add_argument("--patience", type=int, default=8, help="stop when validation accuracy has not improved for this many steps; 0: never (default: %(default)s)")
    grow.add_argument("--neurons-per-step", type=int, default=8, help="at most this many neurons/channels per step (default: %(default)s)")
    grow.add_argument("--initial-width", type=int, default=None, help="hidden width at start (default: 1)")
    grow.add_argument("--hidden-layers", type=int, default=1, help="mlp: number of hidden layers (default: %(default)s)")
    grow.add_argument("--channels", type=int, default=16, help="cnn, resnet: channels of the stem and of the residual stream; vgg: of its first stage (default: %(default)s)")
    grow.add_argument("--growth", default="restricted", help=f"resnet, vgg: conv growth, one of {', '.join(GROWTHS)} (default: %(default)s)")
    grow.add_argument("--blocks", type=int, default=2, help="cnn: number of growing residual blocks (default: %(default)s)")
    grow.add_argument("--epochs", type=int, default=5, help="training epochs after each growth step (default: %(default)s)")
    grow.add_argument("--initial-epochs", type=int, default=None, help="training epochs before the first step (default: --epochs)")
    grow.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default: %(default)s)")
    grow.add_argument("--weight-decay", type=float, default=1e-3, help="Adam L2 penalty (default: %(default)s)")
    grow.add_argument("--label-smoothing", type=float, default=0.1, help="of the cross-entropy, in [0, 1) (default: %(default)s)")
    grow.add_argument("--batch-size", type=int, default=64, help="training batch size (default: %(default)s)")
    grow.add_argument("--line-search-samples", type=int, default=256, help="training samples held out for the line search (default: %(default)s)")
    grow.add_argument("--relative-threshold", type=float, default=1e-2, help="keep singular values >= this × the largest (default: %(default)s)")
    grow.add_argument("--delta", action="store_true", help="also apply the natural-gradient update of existing weights")
    grow.add_argument("--val-fraction", type=float, default=0.1, help="fraction of the training set used for validation (default: %(default)s)")
    grow.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffles and held-out samples (default: %(default)s)")
    grow.add_argument("--output-dir", default=None, help="where growth.json and the PNGs go (default: runs/<model>-<dataset>-seed<seed>)")
    grow.add_argument("--backend", default="auto", help=f"gromo_kernels backend: {', '.join(BACKENDS)} (default: %(default)s)")
    grow.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    grow.add_argument(
        "--threads", type=int, default=None,
        help="torch CPU threads (default: 1: these small models lose more time to thread "
        "synchronisation than they gain, and a busy machine makes extra threads spin)",
    )
    grow.add_argument("--baseline", action="store_true", help="also train a fixed network of the kept widths for the same epochs")
    grow.add_argument("--timeout", type=float, default=300.0, help="distributed: seconds before a silent peer ends the run (default: %(default)s)")
    grow.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    grow.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    grow.add_argument("--quiet", action="store_true", help="no progress bars and no table")
    evaluate = commands.add_parser(
        "eval", help="metrics of a grown run's chosen model", description="Evaluate the model a run chose on validation.",
    )
    evaluate.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by 'gromo grow'")
    evaluate.add_argument("--dataset", default=None, help="evaluate on this dataset instead of the run's own")
    evaluate.add_argument("--which", default="chosen", help="chosen (on validation, default) or last")
    evaluate.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    return parser


def _check_dataset(name: str) -> None:
    if name in DATASETS:
        return
    if name.endswith(".npz"):
        if not os.path.isfile(name):
            raise UsageError(f"dataset file {name!r} does not exist")
        return
    raise UsageError(unknown_dataset(name))


def _check_args(args) -> None:
    """Reject impossible settings before any heavy work (raises UsageError with one clear line)."""
    if args.model not in MODELS:
        raise UsageError(f"unknown model {args.model!r}; choose one of {', '.join(MODELS)}")
    _check_dataset(args.dataset)
    if args.growth not in GROWTHS:
        raise UsageError(f"unknown growth {args.growth!r}; choose one of {', '.join(GROWTHS)}")
    if args.backend not in BACKENDS:
        raise UsageError(f"unknown backend {args.backend!r}; choose one of {', '.join(BACKENDS)}")
    minimum = {
        "steps": 0, "neurons_per_step": 1, "hidden_layers": 1, "channels": 1, "blocks": 1, "epochs": 0,
        "batch_size": 1, "line_search_samples": 1, "patience": 0,
    }
    for name, low in minimum.items():
        if getattr(args, name) < low:
            raise UsageError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
    if args.initial_width is not None and args.initial_width < 0:
        raise UsageError(f"--initial-width must be >= 0, got {args.initial_width}")
    if args.initial_epochs is not None and args.initial_epochs < 0:
        raise UsageError(f"--initial-epochs must be >= 0, got {args.initial_epochs}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr must be > 0 and finite, got {args.lr}")
    if not 0 <= args.seed < 2**32:
        raise UsageError(f"--seed must be in [0, 2**32 - 1] (numpy's seed range), got {args.seed}")
    for name in ("weight_decay", "gain_tolerance"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value >= 0):
            raise UsageError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
    if not 0 <= args.label_smoothing < 1:
        raise UsageError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError(f"--timeout must be a finite number of seconds > 0, got {args.timeout}")
    if not 0 <= args.relative_threshold <= 1:
        raise UsageError(f"--relative-threshold must be in [0, 1], got {args.relative_threshold}")
    if not 0 <= args.val_fraction < 0.9:
        raise UsageError(f"--val-fraction must be in [0, 0.9), got {args.val_fraction}")


def _resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as error:
        raise UsageError(f"unknown device {name!r} ({error})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} requested but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"device {name!r} is not supported (cpu, cuda, cuda:N or auto)")
    return device


def _check_backend(backend: str, device) -> None:
    import importlib.util

    if backend == "auto":
        return
    if backend == "triton":
        if importlib.util.find_spec("triton") is None:
            raise UsageError("backend 'triton' needs the triton package (pip install triton), or use --backend torch")
        if device.type != "cuda" and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
            raise UsageError("backend 'triton' needs --device cuda (or TRITON_INTERPRET=1 to run the interpreter on CPU)")


def _check_writable(directory: str) -> None:
    """Create ``directory`` and make sure files can be written there (else a UsageError)."""
    try:
        os.makedirs(directory, exist_ok=True)
        probe = os.path.join(directory, ".gromo-write-test")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as error:
        raise UsageError(f"cannot write to output directory {directory!r} ({error.strerror or error})") from None


def main(argv=None, start_time: float | None = None) -> int:
    """Parse ``argv`` (default sys.argv[1:]) and run; bad input → one line on stderr, exit code 2."""
    start_time = time.perf_counter() if start_time is None else start_time
    parser = build_parser()
    words = argv if argv is not None else sys.argv[1:]
    prefix = next((f"gromo {word}" for word in words if word in ("grow", "eval")), "gromo")
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError("missing command; try 'python -m gromo grow' (or --help)")
        from gromo.growth import cli_run

        if args.command == "eval":
            return cli_run.run_eval(args)
        return cli_run.run_grow(args, start_time)
    except KeyboardInterrupt:
        print("gromo: interrupted before the first growth step", file=sys.stderr)
        return 130
    except UsageError as error:
        print(f"{prefix}: error: {error}", file=sys.stderr)
        return 2
