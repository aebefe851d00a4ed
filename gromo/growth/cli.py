"""The ``grow`` command: grow a tiny network on a dataset, print the growth table, write JSON + PNGs.

    python -m gromo grow                       # mlp 64→[1]→10 on digits, 30 steps of ≤ 8 neurons
    python -m gromo grow --model cnn           # growing CNN (Conv2dGrowingBlocks) on digits
    python -m gromo grow --dataset synthetic --steps 5 --output-dir /tmp/run

Bad input (unknown model / dataset, impossible sizes, an unavailable device or backend, a missing
optional dependency) prints ONE line ``gromo grow: error: ...`` on stderr and exits with code 2,
without a traceback. Ctrl-C leaves growth.json valid up to the last finished step (exit code 130).
Under ``torchrun --nproc_per_node N python -m gromo grow`` the workers share every batch and sum
their statistics; only rank 0 writes files and prints.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

MODELS = ("mlp", "cnn")
DATASETS = ("digits", "synthetic")
BACKENDS = ("auto", "torch", "triton")


class UsageError(Exception):
    """Bad command-line input: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (no usage block) and exits with code 2."""

    def error(self, message):  # noqa: D401 - argparse API
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
    grow.add_argument("--dataset", default="digits", help=f"one of {', '.join(DATASETS)} (default: %(default)s)")
    grow.add_argument("--steps", type=int, default=30, help="growth steps (default: %(default)s)")
    grow.add_argument("--neurons-per-step", type=int, default=8, help="at most this many neurons/channels per step (default: %(default)s)")
    grow.add_argument("--initial-width", type=int, default=None, help="hidden width at start (default: 1)")
    grow.add_argument("--hidden-layers", type=int, default=1, help="mlp: number of hidden layers (default: %(default)s)")
    grow.add_argument("--channels", type=int, default=16, help="cnn: channels of the stem and of the residual stream (default: %(default)s)")
    grow.add_argument("--blocks", type=int, default=2, help="cnn: number of growing residual blocks (default: %(default)s)")
    grow.add_argument("--epochs", type=int, default=5, help="training epochs after each growth step (default: %(default)s)")
    grow.add_argument("--initial-epochs", type=int, default=None, help="training epochs before the first step (default: --epochs)")
    grow.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default: %(default)s)")
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
    grow.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    grow.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    grow.add_argument("--quiet", action="store_true", help="no progress bars and no table")
    return parser


def _check_args(args) -> None:
    """Reject impossible settings before any heavy work (raises UsageError with one clear line)."""
    if args.model not in MODELS:
        raise UsageError(f"unknown model {args.model!r}; choose one of {', '.join(MODELS)}")
    if args.dataset not in DATASETS:
        raise UsageError(f"unknown dataset {args.dataset!r}; choose one of {', '.join(DATASETS)}")
    if args.backend not in BACKENDS:
        raise UsageError(f"unknown backend {args.backend!r}; choose one of {', '.join(BACKENDS)}")
    minimum = {
        "steps": 0, "neurons_per_step": 1, "hidden_layers": 1, "channels": 1, "blocks": 1, "epochs": 0,
        "batch_size": 1, "line_search_samples": 1,
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
    if not args.lr > 0:
        raise UsageError(f"--lr must be > 0, got {args.lr}")
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
    os.environ["GROMO_KERNELS_BACKEND"] = backend


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


def build_model(args, data, device):
    """The growing container named by ``args.model`` for ``data`` (seeded by ``args.seed``)."""
    import torch

    torch.manual_seed(args.seed)
    if args.model == "mlp":
        from gromo.containers.growing_mlp import GrowingMLP

        width = 1 if args.initial_width is None else args.initial_width
        return GrowingMLP(
            in_features=data.num_features, out_features=data.num_classes, hidden_size=width,
            number_hidden_layers=args.hidden_layers, activation=torch.nn.ReLU(), device=device,
        )
    if len(data.input_shape) != 3:
        raise UsageError(f"model 'cnn' needs image data; dataset {data.name!r} has inputs of shape {data.input_shape}")
    from gromo.containers.growing_cnn import GrowingCNN

    width = 1 if args.initial_width is None else args.initial_width
    return GrowingCNN(
        in_channels=data.input_shape[0], num_classes=data.num_classes, input_size=tuple(data.input_shape[1:]),
        channels=args.channels, hidden_channels=width, number_of_blocks=args.blocks, device=device,
    )


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
    parts = [(name, summary.get(f"time_{name}", 0.0)) for name in ("training", "statistics", "solves", "line_search", "evaluation")]
    loop = summary.get("time_total", 0.0)
    split = ", ".join(f"{name.replace('_', ' ')} {t:.2f} s ({100 * t / loop:.0f}%)" for name, t in parts if loop > 0)
    lines.append(f"wall time {wall:.2f} s: imports + data + model {import_time:.2f} s, growth loop {loop:.2f} s ({split})")
    extras = [(label, summary.get(key)) for label, key in (
        ("set-up", "time_setup"), ("growth.json writes", "time_json"), ("plots", "time_plots"),
    )]
    extras = ", ".join(f"{label} {value:.2f} s" for label, value in extras if value is not None)
    if extras:
        lines.append(f"  also: {extras}")
    return lines


def run_grow(args, start_time: float) -> int:
    """Run the grow command for parsed ``args``; returns the exit code."""
    _check_args(args)
    import torch

    threads = args.threads if args.threads is not None else 1
    previous_threads = torch.get_num_threads()
    previous_backend = os.environ.get("GROMO_KERNELS_BACKEND")
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_grow(args, start_time, torch)
    finally:
        # main() may be called in-process (tests, notebooks): leave threads and environment as found.
        torch.set_num_threads(previous_threads)
        if previous_backend is None:
            os.environ.pop("GROMO_KERNELS_BACKEND", None)
        else:
            os.environ["GROMO_KERNELS_BACKEND"] = previous_backend


def _run_grow(args, start_time: float, torch) -> int:
    from gromo.growth.datasets import MissingDependencyError, load_dataset
    from gromo.growth.distributed import init_distributed
    from gromo.growth.loop import GrowthConfig, grow, layer_names
    from gromo.growth.records import GrowthLog

    device = _resolve_device(args.device)
    _check_backend(args.backend, device)
    if not args.no_plots:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise UsageError("plots need matplotlib (pip install matplotlib, or the [demo] extra); use --no-plots to skip them")
    comm = init_distributed(device)
    if comm.active and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", comm.rank)) % torch.cuda.device_count())
    try:
        data = load_dataset(args.dataset, val_fraction=args.val_fraction, seed=args.seed)
    except MissingDependencyError as error:
        raise UsageError(str(error)) from None
    data = data.to(device)
    config = GrowthConfig(
        steps=args.steps, neurons_per_step=args.neurons_per_step, epochs=args.epochs,
        initial_epochs=args.initial_epochs, lr=args.lr, batch_size=args.batch_size,
        line_search_samples=args.line_search_samples, relative_statistical_threshold=args.relative_threshold,
        compute_delta=args.delta, seed=args.seed,
    )
    if len(data.y_train) < 8:
        raise UsageError(f"dataset {args.dataset!r} leaves only {len(data.y_train)} training samples")
    model = build_model(args, data, device)
    output_dir = args.output_dir or os.path.join("runs", f"{args.model}-{args.dataset}-seed{args.seed}")
    json_path = os.path.join(output_dir, "growth.json")
    if comm.is_main:
        _check_writable(output_dir)
    settings = {key: value for key, value in vars(args).items() if key != "command"}
    settings.update(world_size=comm.world_size, device=str(device), torch=torch.__version__)
    log = GrowthLog(json_path if comm.is_main else None, {"command": settings, "growth": vars(config).copy()})
    log.config["growth"]["scales"] = list(config.scales)
    import_time = time.perf_counter() - start_time
    show_progress = not (args.no_progress or args.quiet) and comm.is_main
    finished = False
    try:
        result = grow(model, data, config, log=log, comm=comm, progress=show_progress)
        finished = True
    except KeyboardInterrupt:
        if comm.is_main:
            log.finish("interrupted", None)
            print(f"gromo grow: interrupted; {json_path} holds the {len(log.steps)} finished step(s)", file=sys.stderr)
        return 130
    finally:
        if comm.active:
            if finished:
                # Every worker done before any tears down: a peer closing its sockets while another
                # still communicates aborts gloo ("terminate called without an active exception").
                comm._dist.barrier()
            comm._dist.destroy_process_group()
    wall = time.perf_counter() - start_time
    summary = dict(result.summary, wall_time=wall, import_time=import_time)
    if not comm.is_main:
        return 0
    plots = []
    if not args.no_plots:
        plot_start = time.perf_counter()
        from gromo.growth.plots import plot_all

        title = f"{args.model} on {args.dataset}, seed {args.seed}"
        plots = plot_all(result.records, layer_names(model), output_dir, title)
        summary["time_plots"] = time.perf_counter() - plot_start
        wall = time.perf_counter() - start_time
        summary["wall_time"] = wall
    log.finish("finished", summary)
    if not args.quiet:
        print(growth_table(result.records))
        for line in summary_lines(summary, wall, import_time):
            print(line)
        print(f"wrote {json_path}" + (f" and {len(plots)} plots in {output_dir}" if plots else ""))
    return 0


def main(argv=None, start_time: float | None = None) -> int:
    """Parse ``argv`` (default sys.argv[1:]) and run; bad input → one line on stderr, exit code 2."""
    start_time = time.perf_counter() if start_time is None else start_time
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError("missing command; try 'python -m gromo grow' (or --help)")
        return run_grow(args, start_time)
    except KeyboardInterrupt:
        print("gromo: interrupted before the first growth step", file=sys.stderr)
        return 130
    except UsageError as error:
        prefix = "gromo grow" if "grow" in (argv if argv is not None else sys.argv[1:]) else "gromo"
        print(f"{prefix}: error: {error}", file=sys.stderr)
        return 2
