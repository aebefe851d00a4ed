"""The growth loop as a library function: statistics → solves → selection → line search → change → train.

One growth step (gromo_math.md §11, "typical driver loop"), with what GroMo's own loop gets wrong
fixed:

1. **Statistics** with the model in ``eval()``: for each batch, the sum-reduced task loss (cross-entropy
   for classification: per-sample gradients, never a silent MSE) is back-propagated and every
   growable layer's statistics are updated. ``line_search_samples`` training samples drawn afresh
   each step are kept out of them. Data-parallel workers then sum their statistics
   (:func:`~gromo.growth.distributed.sync_statistics`).
2. **Solves**: every growable layer computes its optimal added neurons (TINY by default:
   ``compute_delta=False``, projected N); the linear layers of a container in ONE batched
   ``gromo_kernels.optimal_added_neurons`` call. Thresholds are **relative**: the numerical threshold of
   ``S^{-1/2}`` is scaled by ``λ_max(S)``, and a layer keeps the singular values
   ``σ ≥ relative_statistical_threshold · σ_max`` (at most ``neurons_per_step``), so growth does
   not collapse to one neuron per step when the loss gets small (GroMo's absolute 1e-3 does).
   Then ``reset_computation()`` and every cached input / pre-activation is dropped.
3. **Selection**: the layer with the largest first-order improvement (``select_best_update``).
4. **Line search** of the scaling factor γ over ``scales`` (2^-6 … 2^4) on the held-out samples
   with ``extended_forward``; the best *non-zero* γ is applied (a zero scale would add dead
   neurons), then ``apply_change`` + ``delete_update``.
5. **Training** for ``epochs`` epochs; the optimizer is rebuilt around the new Parameters with the
   state of the old ones carried over (:mod:`gromo.growth.optim`). Adam is
   :class:`~gromo.growth.optim.LeanAdam` (torch's Adam without the 1.3 s ``torch._dynamo`` import).

Each step yields a :class:`~gromo.growth.records.StepRecord`.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .datasets import ClassificationData
from .distributed import Communicator, all_reduce_gradients, shard, sync_statistics
from .optim import LeanAdam, ParameterSnapshot, rebuild_optimizer
from .records import GrowthLog, StepRecord, summarise

DEFAULT_SCALES = tuple(2.0**e for e in range(-6, 5))


@dataclass
class GrowthConfig:
    """Hyper-parameters of :func:`grow` (defaults = the reference protocol on digits).

    Attributes:
        steps: growth steps (>= 0).
        neurons_per_step: at most this many neurons / channels added per step (>= 1).
        epochs: training epochs after each growth step (>= 0).
        initial_epochs: training epochs before the first step (None = ``epochs``).
        lr: Adam learning rate.
        batch_size: training mini-batch size.
        statistics_batch_size: batch size while accumulating statistics (sums: any size gives the
            same statistics, larger is faster).
        line_search_samples: training samples held out of each step's statistics for the line
            search (capped at a quarter of the training set).
        scales: candidate scaling factors γ (all > 0).
        relative_statistical_threshold: keep σ >= this · σ_max.
        relative_numerical_threshold: eigenvalues of S_growth below this · λ_max are discarded.
        compute_delta: also apply the natural-gradient update δ of the existing weights (scaled by
            γ²); False is GroMo's TINY preset (new neurons only, projected on δ).
        use_projection: TINY's projection of the desired update on δ (N = −M₋₂ + P δᵀ).
        seed: seed of every random draw of the loop (shuffles, held-out samples).
        loss: "cross_entropy" (classification; the only task the data loader produces).
        fused_adam: use torch's fused Adam kernel (one kernel for all parameters: ~20 % faster
            training steps for small models); plain Adam where fused is not supported.
    """

    steps: int = 30
    neurons_per_step: int = 8
    epochs: int = 5
    initial_epochs: int | None = None
    lr: float = 3e-3
    batch_size: int = 64
    statistics_batch_size: int = 1024
    line_search_samples: int = 256
    scales: tuple[float, ...] = DEFAULT_SCALES
    relative_statistical_threshold: float = 1e-2
    relative_numerical_threshold: float = 1e-6
    compute_delta: bool = False
    use_projection: bool = True
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
            ("lr", self.lr > 0),
            ("batch_size", self.batch_size >= 1),
            ("statistics_batch_size", self.statistics_batch_size >= 1),
            ("line_search_samples", self.line_search_samples >= 1),
            ("scales", len(self.scales) > 0 and all(s > 0 for s in self.scales)),
            ("relative_statistical_threshold", 0 <= self.relative_statistical_threshold <= 1),
            ("relative_numerical_threshold", 0 <= self.relative_numerical_threshold < 1),
            ("loss", self.loss == "cross_entropy"),
        )
        for name, ok in checks:
            if not ok:
                raise ValueError(f"{name}: impossible value {getattr(self, name)!r}")


@dataclass
class GrowthResult:
    """What :func:`grow` returns: the grown model, its optimizer and the records."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    log: GrowthLog
    summary: dict = field(default_factory=dict)

    @property
    def records(self) -> list[StepRecord]:
        """Initial record followed by one record per growth step."""
        return self.log.all_records


# --------------------------------------------------------------------------------------------------
# small adapters over the container API


def growable_layers(model: nn.Module) -> list[nn.Module]:
    """The container's growable layers / blocks (GroMo's ``_growing_layers``)."""
    layers = getattr(model, "_growing_layers", None)
    if layers is None:
        raise TypeError("model: expected a GrowingContainer (it has no _growing_layers)")
    return list(layers)


def layer_width(layer: nn.Module) -> int:
    """Number of hidden neurons / channels a growth of ``layer`` adds to."""
    if hasattr(layer, "hidden_neurons"):
        return int(layer.hidden_neurons)
    return int(layer.in_neurons)


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


def _growth_covariance(layer: nn.Module) -> torch.Tensor | None:
    """S_growth (mean) of a layer or block, or None when it cannot be read."""
    owner = getattr(layer, "second_layer", layer)
    try:
        statistic = owner.tensor_s_growth
        return statistic() if callable(statistic) else statistic
    except (ValueError, AttributeError, AssertionError, NotImplementedError, RuntimeError):
        return None


def _largest_eigenvalue(matrix: torch.Tensor | None) -> float | None:
    if matrix is None or matrix.numel() == 0:
        return None
    matrix = matrix.detach().double()
    return float(torch.linalg.eigvalsh((matrix + matrix.T) / 2)[-1])


# --------------------------------------------------------------------------------------------------
# data helpers


def _batches(indices: torch.Tensor, batch_size: int):
    for start in range(0, len(indices), batch_size):
        yield indices[start : start + batch_size]


def _loss_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, targets, reduction="sum")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    comm: Communicator | None = None,
    *,
    extended: bool = False,
    batch_size: int = 2048,
) -> tuple[float | None, float | None]:
    """(mean cross-entropy, accuracy) of ``model`` on (x, y), in eval mode; (None, None) if empty.

    Each worker evaluates its shard; sums are reduced. ``extended`` uses ``extended_forward``.
    """
    comm = comm or Communicator()
    if len(y) == 0:
        return None, None
    was_training = model.training
    model.eval()
    forward = model.extended_forward if extended else model
    loss_sum, correct = 0.0, 0.0
    local = shard(torch.arange(len(y), device=y.device), comm)
    for index in _batches(local, batch_size):
        logits = forward(x[index])
        loss_sum += float(_loss_sum(logits, y[index]))
        correct += float((logits.argmax(dim=1) == y[index]).sum())
    loss_sum, correct = comm.sum_floats(loss_sum, correct)
    model.train(was_training)
    return loss_sum / len(y), correct / len(y)


def train_epochs(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    comm: Communicator | None = None,
    on_epoch: Callable[[], None] | None = None,
) -> None:
    """Mini-batch training with the mean task loss; data-parallel workers share every batch.

    Every worker draws the same permutation; a global batch is split across workers, each
    back-propagates ``(sum of its losses) / (global batch size)`` and the gradients are summed, so
    the update equals the single-process one on the whole batch.
    """
    comm = comm or Communicator()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator).to(y.device)
        for batch in _batches(order, batch_size):
            local = shard(batch, comm)
            optimizer.zero_grad(set_to_none=True)
            loss = _loss_sum(model(x[local]), y[local]) / len(batch)
            loss.backward()
            all_reduce_gradients(model, comm)
            optimizer.step()
        if on_epoch is not None:
            on_epoch()


def accumulate_statistics(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor, batch_size: int,
    comm: Communicator | None = None,
) -> None:
    """init_computation, then for each batch: forward, sum-reduced loss backward, update_computation.

    The model is in ``eval()`` throughout; statistics are synchronised across workers at the end.
    Parameter gradients produced on the way are cleared.
    """
    comm = comm or Communicator()
    model.eval()
    model.init_computation()
    for index in _batches(shard(indices, comm), batch_size):
        model.zero_grad(set_to_none=True)
        loss = _loss_sum(model(x[index]), y[index])
        loss.backward()
        model.update_computation()
    model.zero_grad(set_to_none=True)
    sync_statistics(model, comm)


def _is_plain_linear(layer: nn.Module) -> bool:
    """A LinearGrowingModule after a LinearGrowingModule: its new neurons can be solved in a batch."""
    from gromo.modules.linear_growing_module import LinearGrowingModule

    return isinstance(layer, LinearGrowingModule) and isinstance(layer.previous_module, LinearGrowingModule)


def _prepare_delta(layer: nn.Module, config: GrowthConfig) -> None:
    """GroMo's delta part of ``compute_optimal_updates`` (§5.1): δ applied (compute_delta) or only
    computed for the projection (TINY), decrease 0 in the latter case."""
    if config.compute_delta:
        layer.compute_optimal_delta(update=True)
        return
    layer.optimal_delta_layer = None
    layer.parameter_update_decrease = torch.tensor(0.0, dtype=layer.weight.dtype, device=layer.weight.device)
    if config.use_projection:
        layer.compute_optimal_delta(update=False)
    else:
        layer.delta_raw = None


def _install_linear_neurons(layer: nn.Module, alpha: torch.Tensor, omega: torch.Tensor, sigma: torch.Tensor) -> None:
    """Package solved neurons as GroMo does for a linear layer (§5.5): ω → input extension of
    ``layer`` (zero bias), α → output extension of the previous layer."""
    previous = layer.previous_module
    dtype = layer.weight.dtype
    alpha, omega, sigma = alpha.to(dtype), omega.to(dtype), sigma.to(dtype)
    if previous.use_bias:
        alpha_weight, alpha_bias = alpha[:, :-1], alpha[:, -1]
    else:
        alpha_weight, alpha_bias = alpha, None
    layer.eigenvalues_extension = sigma
    layer._first_order_uses_squared_singular_values = True
    layer.extended_input_layer = layer.layer_of_tensor(
        omega, bias=torch.zeros(layer.out_features, device=omega.device, dtype=dtype) if layer.use_bias else None
    )
    previous.extended_output_layer = previous.layer_of_tensor(alpha_weight, alpha_bias)


def _compute_updates(model: nn.Module, config: GrowthConfig) -> dict[int, dict]:
    """Optimal added neurons of every growable layer with relative thresholds; returns per-layer info.

    Linear layers (GrowingMLP) are solved together: one ``gromo_kernels.optimal_added_neurons``
    call on the list of their (S_growth, N) pairs, layers of equal shape in one batched
    decomposition, with the numerical threshold relative to each ``λ_max(S_growth)`` (``rtol``).
    Other layers (conv blocks) go through their own ``compute_optimal_updates`` with the same
    relative rule (``λ_max`` computed here). Every layer then keeps
    ``min(neurons_per_step, #{σ ≥ relative_statistical_threshold · σ_max})`` neurons.
    """
    import gromo_kernels as gk

    layers = growable_layers(model)
    batched = [i for i, layer in enumerate(layers) if _is_plain_linear(layer)]
    # One block for the step: layer l's new-neuron solve reuses S_{l-1}, factored by layer l-1's delta
    # (nothing to reuse with a single growable layer: no block, no bookkeeping).
    reuse = gk.factorization_cache() if len(layers) > 1 else contextlib.nullcontext()
    with reuse, warnings.catch_warnings():
        # Dead ReLU units make S singular: the pseudo-inverse is the intended solve, not news.
        warnings.filterwarnings("ignore", message="Using the pseudo-inverse", category=UserWarning)
        if batched:
            matrices_s, matrices_n = [], []
            for index in batched:
                layer = layers[index]
                _prepare_delta(layer, config)
                matrix_n = layer.tensor_n if config.use_projection else -layer.tensor_m_prev()
                matrices_n.append(matrix_n)
                matrices_s.append(layer.tensor_s_growth().to(matrix_n.dtype))
            solved = gk.optimal_added_neurons(
                matrices_s, matrices_n, numerical_threshold=0.0, rtol=config.relative_numerical_threshold,
                statistical_threshold=0.0, max_neurons=None,
            )
            for index, result in zip(batched, solved):
                _install_linear_neurons(layers[index], result.alpha, result.omega, result.sigma)
        for index, layer in enumerate(layers):
            if index in batched:
                continue
            lam_max = _largest_eigenvalue(_growth_covariance(layer))
            numerical = config.relative_numerical_threshold * lam_max if lam_max else 1e-6
            layer.compute_optimal_updates(
                numerical_threshold=numerical,
                statistical_threshold=0.0,
                maximum_added_neurons=None,
                compute_delta=config.compute_delta,
                use_projection=config.use_projection,
            )
    info: dict[int, dict] = {}
    for index, layer in enumerate(layers):
        sigma = layer.eigenvalues_extension
        entry = {"sigma_all": [], "keep": 0}
        if sigma is not None and sigma.numel() > 0:
            sigma_all = sigma.detach().double().abs().cpu()
            entry["sigma_all"] = sigma_all.tolist()
            largest = float(sigma_all.max())
            keep = int((sigma_all >= config.relative_statistical_threshold * largest).sum()) if largest > 0 else 0
            keep = min(keep, config.neurons_per_step)
            if keep > 0:
                layer.sub_select_optimal_added_parameters(keep_neurons=keep)
            entry["keep"] = keep
        info[index] = entry
    return info


def _first_order_gain(layer: nn.Module) -> float:
    try:
        return float(layer.first_order_improvement)
    except (AssertionError, TypeError, ValueError):
        return 0.0


@torch.no_grad()
def line_search(
    model: nn.Module, layer: nn.Module, x: torch.Tensor, y: torch.Tensor, scales, comm: Communicator | None = None,
) -> tuple[float, list[list[float]]]:
    """Best non-zero scaling factor γ of ``layer``'s pending update on (x, y) with ``extended_forward``.

    Returns (γ, [[γ_i, loss_i], ...]). γ is never 0: when no candidate beats the current model the
    smallest loss among the candidates still wins (a zero scale would add dead neurons).
    """
    curve: list[list[float]] = []
    for scale in scales:
        layer.set_scaling_factor(float(scale))
        loss, _ = evaluate(model, x, y, comm, extended=True)
        curve.append([float(scale), float(loss)])
    best_scale = min(curve, key=lambda point: (point[1], point[0]))[0]
    layer.set_scaling_factor(best_scale)
    return best_scale, curve


def make_adam(model: nn.Module, config: GrowthConfig) -> torch.optim.Adam:
    """Adam(lr=config.lr) over ``model.parameters()`` (a :class:`~gromo.growth.optim.LeanAdam`),
    fused when asked and supported."""
    if config.fused_adam:
        try:
            return LeanAdam(model.parameters(), lr=config.lr, fused=True)
        except (RuntimeError, ValueError, TypeError):
            pass  # e.g. a device / dtype without a fused kernel: the plain implementation is exact too
    return LeanAdam(model.parameters(), lr=config.lr)


def _progress(iterable, enabled: bool, **kwargs):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


def grow(
    model: nn.Module,
    data: ClassificationData,
    config: GrowthConfig | None = None,
    *,
    log: GrowthLog | None = None,
    comm: Communicator | None = None,
    progress: bool = False,
    on_step: Callable[[StepRecord], None] | None = None,
) -> GrowthResult:
    """Train ``model``, then grow it ``config.steps`` times, training after each growth.

    Args:
        model: a GrowingContainer (GrowingMLP, GrowingCNN, ...) on the data's device.
        data: standardised classification data (validation split optional).
        config: hyper-parameters (defaults: the reference protocol).
        log: where records go (growth.json is rewritten after every finished step); a new
            in-memory log when None.
        comm: communicator of a data-parallel run (None: the default group, or single process).
        progress: tqdm bars over steps and epochs (only on the main worker).
        on_step: called with every finished record (step 0 included).

    Returns:
        :class:`GrowthResult` with the grown model, its optimizer, the log and a summary.

    Raises:
        ValueError: impossible configuration or a training set too small to hold out samples.
    """
    setup_start = time.perf_counter()
    config = config or GrowthConfig()
    config.validate()
    comm = comm or Communicator()
    log = log or GrowthLog(None, {"growth": asdict(config)})
    show = progress and comm.is_main
    n_train = len(data.y_train)
    n_held_out = min(config.line_search_samples, n_train // 4)
    if n_held_out < 1 or n_train - n_held_out < 1:
        raise ValueError(f"data: {n_train} training samples are too few to hold out line-search samples")
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = make_adam(model, config)
    x_train, y_train = data.x_train, data.y_train
    time_setup = time.perf_counter() - setup_start

    def measure(record: StepRecord) -> None:
        start = time.perf_counter()
        record.train_loss, record.train_accuracy = evaluate(model, x_train, y_train, comm)
        record.val_loss, record.val_accuracy = evaluate(model, data.x_val, data.y_val, comm)
        record.test_loss, record.test_accuracy = evaluate(model, data.x_test, data.y_test, comm)
        record.parameters = number_of_parameters(model)
        record.widths = [layer_width(layer) for layer in growable_layers(model)]
        record.time_evaluation += time.perf_counter() - start

    def train(record: StepRecord, epochs: int, bar) -> None:
        start = time.perf_counter()
        train_epochs(
            model, optimizer, x_train, y_train, epochs=epochs, batch_size=config.batch_size,
            generator=generator, comm=comm, on_epoch=(bar.update if bar is not None else None),
        )
        record.time_training += time.perf_counter() - start

    step_bar = _progress(range(config.steps + 1), show, desc="growth", unit="step", dynamic_ncols=True)
    for step in step_bar:
        step_start = time.perf_counter()
        record = StepRecord(step=step)
        epochs = config.epochs if step > 0 else (config.epochs if config.initial_epochs is None else config.initial_epochs)
        if step > 0:
            optimizer, record = growth_step(model, data, config, optimizer, generator=generator, comm=comm, record=record)
        epoch_bar = (
            _progress(range(epochs), show, desc=f"  train step {step}", unit="epoch", leave=False, dynamic_ncols=True)
            if show and epochs > 0 else None
        )
        train(record, epochs, epoch_bar)
        if epoch_bar is not None:
            epoch_bar.close()
        measure(record)
        record.time_total = time.perf_counter() - step_start
        if comm.is_main:
            (log.set_initial if step == 0 else log.append)(record)
        else:
            (setattr(log, "initial", record) if step == 0 else log.steps.append(record))
        if show:
            step_bar.set_postfix(params=record.parameters, test=f"{100 * (record.test_accuracy or 0):.1f}%")
        if on_step is not None:
            on_step(record)
    summary = summarise(log.all_records)
    summary.update(time_setup=time_setup, time_json=log.time_writing)
    return GrowthResult(model=model, optimizer=optimizer, log=log, summary=summary)


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
    """One growth step without the training that follows: statistics → solves → selection → line
    search → apply_change → delete_update.

    Args:
        model: a GrowingContainer.
        data: the training data (``line_search_samples`` of its training rows are held out).
        config: hyper-parameters.
        optimizer: the optimizer of the model's current parameters.
        generator: source of the held-out draw.
        comm: communicator of a data-parallel run.
        record: the record to fill (a new one for step 1 when None).

    Returns:
        (the optimizer to use from now on — rebuilt with the old state carried over when the model
        grew —, the filled record).
    """
    comm = comm or Communicator()
    record = record or StepRecord(step=1)
    names = layer_names(model)
    n_held_out = min(config.line_search_samples, len(data.y_train) // 4)
    x_train, y_train = data.x_train, data.y_train
    record.train_loss_before, record.train_accuracy_before = evaluate(model, x_train, y_train, comm)
    order = torch.randperm(len(y_train), generator=generator).to(y_train.device)
    held_out, statistics_set = order[:n_held_out], order[n_held_out:]

    start = time.perf_counter()
    accumulate_statistics(model, x_train, y_train, statistics_set, config.statistics_batch_size, comm)
    record.time_statistics = time.perf_counter() - start

    start = time.perf_counter()
    try:
        info = _compute_updates(model, config)
    finally:
        model.reset_computation()
        clear_cached_tensors(model)
    layers = growable_layers(model)
    gains = {index: (_first_order_gain(layer) if info[index]["keep"] > 0 else 0.0) for index, layer in enumerate(layers)}
    record.candidate_gains = {names[i]: g for i, g in gains.items()}
    record.candidate_neurons = {names[i]: info[i]["keep"] for i in info}
    record.time_solves = time.perf_counter() - start

    best = max(gains, key=lambda i: gains[i]) if gains else None
    if best is None or gains[best] <= 0:
        for layer in layers:
            layer.delete_update()
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
    x_held, y_held = x_train[held_out], y_train[held_out]
    record.line_search_loss_before, _ = evaluate(model, x_held, y_held, comm)
    record.scale, record.line_search = line_search(model, layer, x_held, y_held, config.scales, comm)
    record.time_line_search = time.perf_counter() - start

    width_before = layer_width(layer)
    snapshot = ParameterSnapshot(model, optimizer)
    layer.apply_change(scaling_factor=record.scale)
    layer.delete_update()
    if hasattr(model, "currently_updated_layer_index"):
        model.currently_updated_layer_index = None
    clear_cached_tensors(model)
    record.neurons_added = layer_width(layer) - width_before
    record.line_search_loss_after, _ = evaluate(model, x_held, y_held, comm)
    return rebuild_optimizer(model, snapshot), record
