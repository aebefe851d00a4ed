"""The growth loop as a library function: statistics → solves → selection → line search → change → train.

One growth step (the typical driver loop of a growing network), with what GroMo's own loop gets
wrong fixed:

1. **Statistics** with the model in ``eval()``: for each training batch, the sum-reduced task loss
   (cross-entropy, optionally label-smoothed: per-sample gradients, never a silent MSE) is
   back-propagated and every growable layer's statistics are updated. The first
   ``line_search_samples`` samples of the pass (freshly shuffled each step) are kept out of them for
   the line search. Data-parallel workers then sum their statistics
   (:func:`~gromo.growth.distributed.sync_statistics`).
2. **Solves** through every layer's own ``compute_optimal_updates`` with relative thresholds
   (:mod:`gromo.growth.candidates`), then ``reset_computation()`` and every cached input is dropped.
3. **Selection**: the layer with the largest first-order improvement.
4. **Line search** of the scaling factor γ on the held-out samples with ``extended_forward``, over a
   bracket that widens while the best γ is at its edge (:mod:`gromo.growth.scale_search`); then
   ``apply_change`` + ``delete_update``.
5. **Training** for ``epochs`` epochs; the optimizer is rebuilt around the new Parameters with the
   state of the old ones carried over (:mod:`gromo.growth.optim`).

The run stops by itself (:mod:`gromo.growth.stopping`), keeps the model chosen on validation, and
with a ``run_dir`` writes a checkpoint after every step that ``resume`` continues exactly
(:mod:`gromo.growth.checkpoint`). Data is in-memory tensors or any iterable of ``(x, y)`` batches
(:mod:`gromo.growth.data`). Each step yields a :class:`~gromo.growth.records.StepRecord`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from . import checkpoint as checkpoints
from .candidates import (  # noqa: F401 - _growth_covariance, _largest_eigenvalue: used by tests
    _compute_updates,
    _first_order_gain,
    _growth_covariance,
    _largest_eigenvalue,
    candidate_gains,
    growable_layers,
)
from .data import LoaderBatches, TensorBatches, make_sources
from .datasets import ClassificationData
from .distributed import Communicator
from .models import layer_width
from .optim import LeanAdam, ParameterSnapshot, rebuild_optimizer
from .passes import (
    DivergenceError,
    evaluate_source,
    held_out_share,
    statistics_source,
    train_source,
)
from .records import GrowthLog, StepRecord, chosen_index, summarise
from .scale_search import widening_search
from .stopping import StoppingRule

DEFAULT_SCALES = tuple(2.0**e for e in range(-6, 5))


@dataclass
class GrowthConfig:
    """Hyper-parameters of :func:`grow` (defaults: the protocol tuned on digits).

    Attributes:
        steps: at most this many growth steps (>= 0); the run usually stops earlier by itself.
        neurons_per_step: at most this many neurons / channels added per step (>= 1).
        epochs: training epochs after each growth step (>= 0).
        initial_epochs: training epochs before the first step (None = ``epochs``).
        lr: Adam learning rate (finite, > 0).
        weight_decay: Adam's L2 penalty (>= 0).
        label_smoothing: of the cross-entropy, in [0, 1): it keeps the loss (and so the growth
            signal) away from 0 once the training set is fitted.
        batch_size: training mini-batch size.
        statistics_batch_size: batch size while accumulating statistics on in-memory data (sums:
            any size gives the same statistics, larger is faster).
        evaluation_batch_size: batch size of the evaluation passes on in-memory data.
        line_search_samples: training samples held out of each step's statistics for the line
            search (capped at a quarter of the training set when its size is known).
        scales: initial candidate scaling factors γ (all > 0).
        max_scale_extensions: extra γ evaluations allowed past the edge of ``scales``.
        relative_statistical_threshold: keep σ >= this · σ_max.
        relative_numerical_threshold: eigenvalues of S_growth below this · λ_max are discarded.
        compute_delta: also apply the natural-gradient update δ of the existing weights (scaled by
            γ²); False is GroMo's TINY preset (new neurons only, projected on δ).
        use_projection: TINY's projection of the desired update on δ (N = −M₋₂ + P δᵀ).
        gain_tolerance: stop when the best gain < this × the training loss (0: never).
        patience: stop when the validation accuracy has not improved for this many steps (None: never).
        seed: seed of every random draw of the loop (shuffles, held-out samples).
        loss: "cross_entropy" (classification).
        fused_adam: use torch's fused Adam kernel where supported.
    """

    steps: int = 30
    neurons_per_step: int = 8
    epochs: int = 5
    initial_epochs: int | None = None
    lr: float = 3e-3
    weight_decay: float = 1e-3
    label_smoothing: float = 0.1
    batch_size: int = 64
    statistics_batch_size: int = 1024
    evaluation_batch_size: int = 2048
    line_search_samples: int = 256
    scales: tuple[float, ...] = DEFAULT_SCALES
    max_scale_extensions: int = 8
    relative_statistical_threshold: float = 1e-2
    relative_numerical_threshold: float = 1e-6
    compute_delta: bool = False
    use_projection: bool = True
    gain_tolerance: float = 2e-4
    patience: int | None = 8
    seed: int = 0
    loss: str = "cross_entropy"
    fused_adam: bool = True

    def validate(self) -> None:
        """Raise ValueError naming the first impossible setting."""
        checks = (
            ("steps", self.steps >= 0),
            ("neurons_per_step", self.neurons_per_step >= 1),
            ("epochs", self.epochs >= 0),
            ("initial_epochs", self.initial_epochs is None or self.initial_epochs >= 0),
            ("lr", math.isfinite(self.lr) and self.lr > 0),
            ("weight_decay", math.isfinite(self.weight_decay) and self.weight_decay >= 0),
            ("label_smoothing", 0 <= self.label_smoothing < 1),
            ("batch_size", self.batch_size >= 1),
            ("statistics_batch_size", self.statistics_batch_size >= 1),
            ("evaluation_batch_size", self.evaluation_batch_size >= 1),
            ("line_search_samples", self.line_search_samples >= 1),
            ("scales", len(self.scales) > 0 and all(math.isfinite(s) and s > 0 for s in self.scales)),
            ("max_scale_extensions", self.max_scale_extensions >= 0),
            ("relative_statistical_threshold", 0 <= self.relative_statistical_threshold <= 1),
            ("relative_numerical_threshold", 0 <= self.relative_numerical_threshold < 1),
            ("loss", self.loss == "cross_entropy"),
        )
        for name, ok in checks:
            if not ok:
                raise ValueError(f"{name}: impossible value {getattr(self, name)!r}")
        self.stopping.validate()

    @property
    def stopping(self) -> StoppingRule:
        """The stopping rule of these settings."""
        return StoppingRule(gain_tolerance=self.gain_tolerance, patience=self.patience)


@dataclass
class GrowthResult:
    """What :func:`grow` returns: the grown model, its optimizer, the records and the chosen model."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    log: GrowthLog
    summary: dict = field(default_factory=dict)
    chosen_model: nn.Module | None = None

    @property
    def records(self) -> list[StepRecord]:
        """Initial record followed by one record per growth step."""
        return self.log.all_records


# --------------------------------------------------------------------------------------------------
# small adapters over the container API


def layer_names(model: nn.Module) -> list[str]:
    """Qualified names of the growable layers (as in ``model.named_modules()``)."""
    name_of = {id(module): name for name, module in model.named_modules()}
    return [name_of.get(id(layer), f"layer{index}") for index, layer in enumerate(growable_layers(model))]


def number_of_parameters(model: nn.Module) -> int:
    """Trainable parameter count (extensions excluded: they are not Parameters of the model)."""
    counter = getattr(model, "number_of_parameters", None)
    if callable(counter):
        return int(counter())
    return sum(p.numel() for p in model.parameters())


def clear_cached_tensors(model: nn.Module) -> None:
    """Stop every layer from storing and drop every stored input / pre-activation / activity.

    GroMo's ``reset_computation`` leaves the *previous* layer storing (and keeping) its input:
    ``init_computation`` of layer i sets ``store_input`` on layer i−1, which no reset ever clears
    when layer i−1 is not itself growable, so every later training forward would keep a copy.
    """
    for module in model.modules():
        if hasattr(module, "_internal_store_input") or hasattr(module, "store_activity"):
            for flag in ("store_input", "store_pre_activity", "store_activity"):
                value = getattr(module, flag, None)
                if isinstance(value, bool) and value:
                    setattr(module, flag, False)
                elif isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    setattr(module, flag, 0)
        attributes = vars(module)
        for name in ("_input", "_pre_activity", "input", "activity", "_input_extended"):
            if name in attributes and isinstance(attributes[name], torch.Tensor):
                setattr(module, name, None)


# --------------------------------------------------------------------------------------------------
# in-memory entry points (tensors indexed directly; kept for callers of the first API)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, comm: Communicator | None = None, *,
             extended: bool = False, batch_size: int = 2048) -> tuple[float | None, float | None]:
    """(mean cross-entropy, accuracy) of ``model`` on (x (n, ...), y (n,)); (None, None) if empty."""
    comm = comm or Communicator()
    source = TensorBatches(x, y, batch_size, comm=comm) if len(y) else None
    return evaluate_source(model, source, comm, extended=extended)


def train_epochs(model: nn.Module, optimizer: torch.optim.Optimizer, x, y: torch.Tensor | None = None, *,
                 epochs: int, batch_size: int | None = None, generator: torch.Generator | None = None,
                 comm: Communicator | None = None, on_epoch: Callable[[], None] | None = None,
                 label_smoothing: float = 0.0) -> None:
    """Mini-batch training on tensors (x (n, ...), y (n,)) — every epoch a permutation drawn from
    ``generator`` — or, with ``y`` None, on the batch source ``x``.

    Raises:
        DivergenceError: the training loss of an epoch is not finite.
    """
    comm = comm or Communicator()
    source = x if y is None else TensorBatches(x, y, batch_size, generator=generator, comm=comm)
    train_source(model, optimizer, source, epochs=epochs, comm=comm, on_epoch=on_epoch, label_smoothing=label_smoothing)


def accumulate_statistics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor,
                          batch_size: int, comm: Communicator | None = None) -> None:
    """Growth statistics over the samples ``indices`` (in that order), summed across workers."""
    comm = comm or Communicator()
    source = TensorBatches(x[indices], y[indices], batch_size, comm=comm)
    statistics_source(model, source, held_out=0, comm=comm)


@torch.no_grad()
def line_search(model: nn.Module, layer: nn.Module, x: torch.Tensor, y: torch.Tensor, scales,
                comm: Communicator | None = None, max_extensions: int = 8,
                label_smoothing: float = 0.0) -> tuple[float, list[list[float]]]:
    """Best non-zero γ of ``layer``'s pending update on this worker's samples (x, y).

    Returns (γ, [[γ_i, loss_i], ...] sorted by γ); the bracket widens past an edge optimum.
    """
    comm = comm or Communicator()
    scale, curve, _ = _search(model, layer, x, y, scales, comm, max_extensions, label_smoothing)
    return scale, curve


def _held_source(x, y, comm: Communicator) -> LoaderBatches:
    return LoaderBatches([] if y is None else [(x, y)], comm=comm)


def _search(model, layer, x, y, scales, comm, max_extensions, label_smoothing):
    source = _held_source(x, y, comm)

    def loss_at(scale: float) -> float:
        layer.set_scaling_factor(float(scale))
        loss, _ = evaluate_source(model, source, comm, extended=True, label_smoothing=label_smoothing)
        return float("inf") if loss is None else loss

    scale, curve, extensions = widening_search(loss_at, scales, max_extensions)
    layer.set_scaling_factor(scale)
    return scale, curve, extensions


def make_adam(model: nn.Module, config: GrowthConfig) -> torch.optim.Adam:
    """Adam(lr, weight_decay) over ``model.parameters()`` (a LeanAdam), fused when asked and supported."""
    if config.fused_adam:
        try:
            return LeanAdam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
        except (RuntimeError, ValueError, TypeError):
            pass  # e.g. a device / dtype without a fused kernel: the plain implementation is exact too
    return LeanAdam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _progress(iterable, enabled: bool, **kwargs):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


def _held_out_total(config: GrowthConfig, train) -> int:
    n_train = train.num_samples
    if n_train is None:
        return config.line_search_samples
    n_held = min(config.line_search_samples, n_train // 4)
    if n_held < 1 or n_train - n_held < 1:
        raise ValueError(f"data: {n_train} training samples are too few to hold out line-search samples")
    return n_held


def _device_of(model: nn.Module):
    parameter = next(model.parameters(), None)
    return None if parameter is None else parameter.device


def grow(
    model: nn.Module,
    data,
    config: GrowthConfig | None = None,
    *,
    log: GrowthLog | None = None,
    comm: Communicator | None = None,
    progress: bool = False,
    on_step: Callable[[StepRecord], None] | None = None,
    run_dir: str | None = None,
    spec: dict | None = None,
    resume: dict | None = None,
) -> GrowthResult:
    """Train ``model``, then grow it up to ``config.steps`` times, training after each growth.

    Args:
        model: a GrowingContainer (GrowingMLP, GrowingCNN, ...) on the data's device.
        data: :class:`~gromo.growth.datasets.ClassificationData` (in memory) or
            :class:`~gromo.growth.data.Splits` of tensors / iterables of ``(x, y)`` batches
            (e.g. DataLoaders; validation and test optional).
        config: hyper-parameters.
        log: where records go (growth.json is rewritten after every finished step).
        comm: communicator of a data-parallel run (None: the default group, or single process).
        progress: tqdm bars over steps and epochs (only on the main worker).
        on_step: called with every finished record (step 0 included).
        run_dir: with ``spec`` (:func:`gromo.growth.models.make_spec`), write checkpoint.pt after
            every step and model.pt whenever the validation choice changes (main worker only).
        spec: how to rebuild ``model`` (needed with ``run_dir``).
        resume: a :func:`~gromo.growth.checkpoint.read_checkpoint` payload; ``model`` must be its
            model (:func:`~gromo.growth.checkpoint.model_from`). The run continues after its last
            step exactly as the uninterrupted run would have (in-memory data).

    Returns:
        :class:`GrowthResult`; ``summary["stop_reason"]`` says why the run ended
        (``max_steps``, ``gain``, ``patience`` or ``no_candidate``).

    Raises:
        ValueError: impossible configuration or a training set too small to hold out samples.
        DivergenceError: the training loss became non-finite (records up to the last finite step
            are in ``log``).
        CandidateError: a layer's candidate solve failed.
    """
    setup_start = time.perf_counter()
    config = config or GrowthConfig()
    config.validate()
    if run_dir is not None and spec is None:
        raise ValueError("spec: needed with run_dir (how to rebuild the model from a checkpoint)")
    comm = comm or Communicator()
    log = log or GrowthLog(None, {"growth": asdict(config)})
    show = progress and comm.is_main
    writes = run_dir is not None and comm.is_main
    generator = torch.Generator().manual_seed(config.seed)
    train, val, test = make_sources(
        data, batch_size=config.batch_size, evaluation_batch_size=config.evaluation_batch_size,
        generator=generator, comm=comm, device=_device_of(model),
    )
    n_held = _held_out_total(config, train)
    optimizer = make_adam(model, config)
    rule = config.stopping
    smoothing = config.label_smoothing
    first_step, chosen = 0, None
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        train.set_state(resume["source_state"])
        torch.set_rng_state(resume["torch_rng"])
        restored = resume["records"]
        log.initial, log.steps = restored[0], list(restored[1:])
        first_step = restored[-1].step + 1
        index = chosen_index(restored)
        chosen = copy.deepcopy(model) if index == len(restored) - 1 else (
            checkpoints.model_from(checkpoints.read_chosen(run_dir), device=_device_of(model)) if run_dir else None
        )
    time_setup, time_checkpoints = time.perf_counter() - setup_start, 0.0

    def measure(record: StepRecord) -> None:
        start = time.perf_counter()
        kwargs = {"batch_size": config.evaluation_batch_size, "label_smoothing": smoothing}
        record.train_loss, record.train_accuracy = evaluate_source(model, train, comm, **kwargs)
        record.val_loss, record.val_accuracy = evaluate_source(model, val, comm, **kwargs)
        record.test_loss, record.test_accuracy = evaluate_source(model, test, comm, **kwargs)
        record.parameters = number_of_parameters(model)
        record.widths = [layer_width(layer) for layer in growable_layers(model)]
        record.time_evaluation += time.perf_counter() - start
        if record.train_loss is None or not math.isfinite(record.train_loss):
            raise DivergenceError(f"step {record.step}: training loss is {record.train_loss} (not finite)")

    stop_reason = None if resume is None else rule.reason(log.all_records)
    steps = range(first_step, config.steps + 1) if stop_reason is None else range(0)
    step_bar = _progress(steps, show, desc="growth", unit="step", dynamic_ncols=True)
    for step in step_bar:
        step_start = time.perf_counter()
        record = StepRecord(step=step)
        epochs = config.epochs if step > 0 or config.initial_epochs is None else config.initial_epochs
        if step > 0:
            optimizer, record = _growth_step(model, train, n_held, config, optimizer, comm, record)
        epoch_bar = (
            _progress(range(epochs), show, desc=f"  train step {step}", unit="epoch", leave=False, dynamic_ncols=True)
            if show and epochs > 0 else None
        )
        start = time.perf_counter()
        train_epochs(model, optimizer, train, epochs=epochs, comm=comm, label_smoothing=smoothing,
                     on_epoch=(epoch_bar.update if epoch_bar is not None else None))
        record.time_training += time.perf_counter() - start
        if epoch_bar is not None:
            epoch_bar.close()
        measure(record)
        record.time_total = time.perf_counter() - step_start
        if comm.is_main:
            (log.set_initial if step == 0 else log.append)(record)
        else:
            (setattr(log, "initial", record) if step == 0 else log.steps.append(record))
        records = log.all_records
        if chosen_index(records) == len(records) - 1:
            chosen = copy.deepcopy(model)
            if writes:
                start = time.perf_counter()
                checkpoints.save_model(run_dir, model, spec, record)
                time_checkpoints += time.perf_counter() - start
        if writes:
            start = time.perf_counter()
            checkpoints.save_checkpoint(run_dir, model, spec, optimizer, records, train.get_state())
            time_checkpoints += time.perf_counter() - start
        if show:
            step_bar.set_postfix(params=record.parameters, test=f"{100 * (record.test_accuracy or 0):.1f}%")
        if on_step is not None:
            on_step(record)
        stop_reason = rule.reason(records)
        if stop_reason is not None:
            break
    records = log.all_records
    summary = summarise(records)
    summary.update(
        stop_reason=stop_reason or "max_steps", stop_step=records[-1].step if records else None,
        time_setup=time_setup, time_json=log.time_writing, time_checkpoints=time_checkpoints,
    )
    return GrowthResult(model=model, optimizer=optimizer, log=log, summary=summary, chosen_model=chosen)


def growth_step(
    model: nn.Module,
    data: ClassificationData,
    config: GrowthConfig,
    optimizer: torch.optim.Optimizer,
    *,
    generator: torch.Generator,
    comm: Communicator | None = None,
    record: StepRecord | None = None,
) -> tuple[torch.optim.Optimizer, StepRecord]:
    """One growth step on in-memory data, without the training that follows.

    Statistics → solves → selection → line search → apply_change → delete_update; the training
    permutations are drawn from ``generator``.

    Returns:
        (the optimizer to use from now on — rebuilt with the old state carried over when the model
        grew —, the filled record).
    """
    comm = comm or Communicator()
    train = TensorBatches(data.x_train, data.y_train, config.batch_size, generator=generator, comm=comm)
    return _growth_step(model, train, _held_out_total(config, train), config, optimizer, comm,
                        record or StepRecord(step=1))


def _growth_step(model, train, n_held: int, config: GrowthConfig, optimizer, comm: Communicator,
                 record: StepRecord) -> tuple[torch.optim.Optimizer, StepRecord]:
    names = layer_names(model)
    smoothing = config.label_smoothing
    record.train_loss_before, record.train_accuracy_before = evaluate_source(
        model, train, comm, batch_size=config.evaluation_batch_size, label_smoothing=smoothing,
    )
    start = time.perf_counter()
    x_held, y_held = statistics_source(
        model, train, held_out=held_out_share(n_held, comm), batch_size=config.statistics_batch_size,
        comm=comm, label_smoothing=smoothing,
    )
    record.time_statistics = time.perf_counter() - start

    start = time.perf_counter()
    try:
        info = _compute_updates(model, config)
        gains = candidate_gains(model, info)
    except BaseException:
        model.delete_update()
        raise
    finally:
        model.reset_computation()
        clear_cached_tensors(model)
    layers = growable_layers(model)
    record.candidate_gains = {names[i]: g for i, g in gains.items()}
    record.candidate_neurons = {names[i]: info[i]["keep"] for i in info}
    record.time_solves = time.perf_counter() - start

    best = max(gains, key=lambda i: gains[i]) if gains else None
    if best is None or not gains[best] > 0:
        model.delete_update()
        record.note = "no layer has a positive first-order gain: no growth this step"
        return optimizer, record
    model.select_update(best)
    layer = layers[best]
    record.layer, record.layer_index = names[best], best
    record.first_order_gain = gains[best]
    record.singular_values_all = info[best]["sigma_all"]
    kept = layer.eigenvalues_extension
    record.singular_values = [] if kept is None else [abs(float(s)) for s in kept]

    start = time.perf_counter()
    held = _held_source(x_held, y_held, comm)
    record.line_search_loss_before, _ = evaluate_source(model, held, comm, label_smoothing=smoothing)
    record.scale, record.line_search, record.line_search_extensions = _search(
        model, layer, x_held, y_held, config.scales, comm, config.max_scale_extensions, smoothing,
    )
    record.time_line_search = time.perf_counter() - start

    width_before = layer_width(layer)
    snapshot = ParameterSnapshot(model, optimizer)
    layer.apply_change(scaling_factor=record.scale)
    layer.delete_update()
    if hasattr(model, "currently_updated_layer_index"):
        model.currently_updated_layer_index = None
    clear_cached_tensors(model)
    record.neurons_added = layer_width(layer) - width_before
    record.line_search_loss_after, _ = evaluate_source(model, held, comm, label_smoothing=smoothing)
    return rebuild_optimizer(model, snapshot), record
