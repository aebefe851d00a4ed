"""Running the ``grow`` and ``eval`` commands, and ending cleanly under every fault.

How a ``grow`` run ends (growth.json ``status``, exit code, what stderr says):

    finished     0    (the table and summary on stdout)
    interrupted  130  Ctrl-C: "interrupted; growth.json holds the N finished step(s)"
    terminated   128+signal   SIGTERM / SIGHUP: recorded, then one line
    diverged     3    the training loss became non-finite; the last finite step is kept
    failed       1    any other exception: its message is recorded, then one line
    -            2    bad input, an unwritable output directory or a full disk: one line

Distributed runs join the process group with ``--timeout``, which also bounds every collective, so
a lost or stalled peer ends the run with one line instead of torch's 30-minute default.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict

from ._choices import MATPLOTLIB_MISSING
from .cli import (
    UsageError,
    _check_args,
    _check_backend,
    _check_writable,
    _resolve_device,
)

# Options that a resumed run takes from the command line; every other setting comes from the run.
_RESUME_KEEPS = ("resume", "no_progress", "quiet", "no_plots", "threads", "device", "backend", "baseline", "timeout")


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived (raised in the main thread by the signal handler)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum, frame):
    raise Terminated(signum)


def _install_handlers() -> dict:
    """SIGTERM / SIGHUP → :class:`Terminated`; returns the previous handlers (main thread only)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None:
            previous[number] = signal.signal(number, _raise_terminated)
    return previous


def _restore_handlers(previous: dict) -> None:
    for number, handler in previous.items():
        signal.signal(number, handler)


def run_grow(args, start_time: float) -> int:
    """Run the grow command for parsed ``args``; returns the exit code."""
    if args.resume is not None:
        _take_resumed_settings(args)
    _check_args(args)
    import torch

    threads = args.threads if args.threads is not None else 1
    previous_threads = torch.get_num_threads()
    from gromo_kernels import use_backend

    torch.set_num_threads(threads)
    handlers = _install_handlers()
    try:
        with use_backend(args.backend):
            return _run_grow(args, start_time, torch)
    finally:
        # main() may be called in-process (tests, notebooks): leave threads and handlers as found.
        _restore_handlers(handlers)
        torch.set_num_threads(previous_threads)


def _read_growth_json(run_dir: str) -> dict:
    path = os.path.join(run_dir, "growth.json")
    try:
        with open(path) as stream:
            return json.load(stream)
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {path} ({getattr(error, 'strerror', None) or error})") from None


def _take_resumed_settings(args) -> None:
    """Replace ``args`` by the settings of the run being resumed (display options excepted)."""
    saved = _read_growth_json(args.resume).get("config", {}).get("command", {})
    for key, value in saved.items():
        if key not in _RESUME_KEEPS and hasattr(args, key):
            setattr(args, key, value)
    args.output_dir = args.resume


def load_data(name: str, val_fraction: float, seed: int):
    """The named dataset or a user's .npz file (UsageError for what the user can fix)."""
    from .data import load_npz
    from .datasets import MissingDependencyError, load_dataset

    try:
        if name.endswith(".npz"):
            return load_npz(name, val_fraction=val_fraction, seed=seed)
        return load_dataset(name, val_fraction=val_fraction, seed=seed)
    except MissingDependencyError as error:
        raise UsageError(str(error)) from None
    except (ValueError, OSError) as error:
        raise UsageError(f"dataset {name!r}: {error}") from None


def model_spec(args, data) -> dict:
    """The spec of the network ``args`` asks for, sized for ``data``."""
    from .models import make_spec

    width = 1 if args.initial_width is None else args.initial_width
    if args.model == "mlp":
        return make_spec("mlp", in_features=data.num_features, out_features=data.num_classes, hidden_size=width,
                         hidden_layers=args.hidden_layers, activation="relu")
    if len(data.input_shape) != 3:
        raise UsageError(f"model {args.model!r} needs image data; dataset {data.name!r} has inputs of shape {data.input_shape}")
    if args.model in ("resnet", "vgg"):
        smallest = min(data.input_shape[1:])
        # ResNet: two stages without down-sampling (small inputs); VGG: one 2×2 pool per stage, at most 3.
        stages = 2 if args.model == "resnet" else min(3, int(math.log2(smallest))) if smallest >= 2 else 0
        if stages < 1:
            raise UsageError(f"model {args.model!r} needs images of at least 2×2, got {data.input_shape}")
        return make_spec(args.model, input_shape=list(data.input_shape), num_classes=data.num_classes,
                         channels=args.channels, hidden_channels=width, stages=stages, growth=args.growth)
    return make_spec("cnn", in_channels=data.input_shape[0], num_classes=data.num_classes,
                     input_size=list(data.input_shape[1:]), channels=args.channels, hidden_channels=width,
                     blocks=args.blocks)


def growth_config(args):
    """The GrowthConfig of the command's arguments."""
    from .loop import GrowthConfig

    return GrowthConfig(
        steps=args.steps, neurons_per_step=args.neurons_per_step, epochs=args.epochs,
        initial_epochs=args.initial_epochs, lr=args.lr, weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing, batch_size=args.batch_size,
        line_search_samples=args.line_search_samples, relative_statistical_threshold=args.relative_threshold,
        compute_delta=args.delta, gain_tolerance=args.gain_tolerance, patience=args.patience or None,
        seed=args.seed,
    )


def _say(message: str) -> None:
    print(f"gromo grow: {message}", file=sys.stderr)


def _finish(log, status: str, summary=None, message=None) -> None:
    """Record how the run ended; a write failure here (full disk) must not hide the first error."""
    try:
        log.finish(status, summary, message)
    except OSError:
        pass


def _run_grow(args, start_time: float, torch) -> int:
    from .checkpoint import model_from, read_checkpoint
    from .distributed import DistributedTimeout, init_distributed
    from .models import BUILDERS
    from .passes import DivergenceError
    from .records import GrowthLog, summarise

    device = _resolve_device(args.device)
    _check_backend(args.backend, device)
    if not args.no_plots:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise UsageError(MATPLOTLIB_MISSING)
    comm = init_distributed(device, timeout=args.timeout)
    if comm.active and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", comm.rank)) % torch.cuda.device_count())
    data = load_data(args.dataset, args.val_fraction, args.seed).to(device)
    config = growth_config(args)
    if len(data.y_train) < 8:
        raise UsageError(f"dataset {args.dataset!r} leaves only {len(data.y_train)} training samples")
    output_dir = args.output_dir or os.path.join("runs", f"{args.model}-{os.path.basename(args.dataset)}-seed{args.seed}")
    json_path = os.path.join(output_dir, "growth.json")
    if comm.is_main:
        _check_writable(output_dir)
    resume = None
    if args.resume is not None:
        try:
            resume = read_checkpoint(args.resume)
        except (OSError, ValueError) as error:
            raise UsageError(f"cannot resume {args.resume!r}: {error}") from None
        spec = dict(resume["architecture"], widths=None)
        model = model_from(resume, device=device).train()
    else:
        spec = model_spec(args, data)
        torch.manual_seed(args.seed)
        model = BUILDERS[spec["builder"]](**spec["kwargs"], device=device)
    settings = {key: value for key, value in vars(args).items() if key != "command"}
    settings.update(world_size=comm.world_size, device=str(device), torch=torch.__version__)
    log = GrowthLog(json_path if comm.is_main else None, {"command": settings, "growth": asdict(config)})
    log.config["growth"]["scales"] = list(config.scales)
    import_time = time.perf_counter() - start_time
    show_progress = not (args.no_progress or args.quiet) and comm.is_main
    finished = False
    try:
        result = _grow_with_extras(args, model, data, config, log, comm, show_progress, output_dir, spec, resume, device)
        finished = True
    except KeyboardInterrupt:
        if comm.is_main:
            _finish(log, "interrupted", message="Ctrl-C")
            _say(f"interrupted; {json_path} holds the {len(log.steps)} finished step(s)")
        return 130
    except Terminated as signal_error:
        if comm.is_main:
            _finish(log, "terminated", message=f"{signal_error} received")
            _say(f"terminated by {signal_error}; {json_path} holds the {len(log.steps)} finished step(s)")
        return 128 + signal_error.signum
    except DivergenceError as error:
        if comm.is_main:
            _finish(log, "diverged", summarise(log.all_records), str(error))
            _say(f"diverged: {error}; {json_path} keeps the last finite step ({len(log.steps)} step(s))")
        return 3
    except DistributedTimeout as error:
        _finish(log, "failed", message=str(error))
        _say(f"error: {error}")
        return 1
    except OSError as error:
        _finish(log, "failed", message=str(error))
        where = f" {error.filename!r}" if getattr(error, "filename", None) else ""
        _say(f"error: cannot write{where} ({error.strerror or error})")
        return 2
    except Exception as error:  # noqa: BLE001 - recorded, then reported on one line
        message = f"{type(error).__name__}: {error}"
        _finish(log, "failed", message=message)
        _say(f"error: failed: {message}")
        return 1
    finally:
        if comm.active:
            if finished:
                # Every worker done before any tears down: a peer closing its sockets while another
                # still communicates aborts gloo ("terminate called without an active exception").
                try:
                    comm.barrier()
                except DistributedTimeout as error:
                    _say(f"error: {error}")
            comm._dist.destroy_process_group()
    return _report(args, result, log, output_dir, json_path, start_time, import_time, comm)


def _grow_with_extras(args, model, data, config, log, comm, show_progress, output_dir, spec, resume, device):
    from .baseline import total_epochs, train_baseline
    from .loop import grow, layer_names
    from .models import spec_of
    from .records import chosen_index

    result = grow(model, data, config, log=log, comm=comm, progress=show_progress,
                  run_dir=output_dir if comm.is_main else None, spec=spec, resume=resume)
    records = result.records
    if args.baseline:
        chosen = result.chosen_model if result.chosen_model is not None else result.model
        result.summary["baseline"] = train_baseline(
            spec_of(spec, chosen), data, config, total_epochs(records, config), device=device, comm=comm,
            progress=show_progress,
        )
        result.summary["time_baseline"] = result.summary["baseline"]["time"]
    result.summary["chosen_step"] = records[chosen_index(records)].step if records else None
    result.names = layer_names(model)
    return result


def _report(args, result, log, output_dir, json_path, start_time, import_time, comm) -> int:
    from .report import growth_table, summary_lines

    wall = time.perf_counter() - start_time
    summary = dict(result.summary, wall_time=wall, import_time=import_time)
    if not comm.is_main:
        return 0
    plots = []
    try:
        if not args.no_plots:
            plot_start = time.perf_counter()
            from .plots import plot_all

            title = f"{args.model} on {os.path.basename(args.dataset)}, seed {args.seed}"
            plots = plot_all(result.records, result.names, output_dir, title, baseline=summary.get("baseline"))
            summary["time_plots"] = time.perf_counter() - plot_start
            wall = time.perf_counter() - start_time
            summary["wall_time"] = wall
        log.finish("finished", summary)
    except OSError as error:
        _say(f"error: cannot write ({error.strerror or error})")
        return 2
    if not args.quiet:
        print(growth_table(result.records))
        for line in summary_lines(summary, wall, import_time):
            print(line)
        print(f"wrote {json_path}" + (f" and {len(plots)} plots in {output_dir}" if plots else ""))
    return 0


def run_eval(args) -> int:
    """``gromo eval RUN_DIR``: loss and accuracy of the run's chosen model on its (or another) dataset."""
    from .checkpoint import load_run
    from .data import make_sources
    from .distributed import Communicator
    from .passes import evaluate_source
    from .report import eval_table

    if args.which not in ("chosen", "last"):
        raise UsageError(f"--which must be chosen or last, got {args.which!r}")
    saved = _read_growth_json(args.run_dir)
    command = saved.get("config", {}).get("command", {})
    growth = saved.get("config", {}).get("growth", {})
    device = _resolve_device(args.device)
    try:
        model = load_run(args.run_dir, which=args.which, device=device)
    except (OSError, ValueError, RuntimeError) as error:
        raise UsageError(f"cannot load the model of {args.run_dir!r}: {error}") from None
    name = args.dataset or command.get("dataset", "digits")
    data = load_data(name, command.get("val_fraction", 0.1), command.get("seed", 0)).to(device)
    import torch

    comm = Communicator()
    train, val, test = make_sources(data, batch_size=2048, evaluation_batch_size=2048, generator=None, comm=comm)
    smoothing = float(growth.get("label_smoothing", 0.0))
    rows = [(label, *evaluate_source(model, source, comm, label_smoothing=smoothing))
            for label, source in (("train", train), ("val", val), ("test", test))]
    with torch.no_grad():
        parameters = sum(p.numel() for p in model.parameters())
    print(f"{args.which} model of {args.run_dir} ({parameters} parameters) on {name}:")
    print(eval_table(rows))
    return 0
