"""Candidate growths of one step: every growable layer's optimal added neurons, through the modules.

The layers solve together, through the modules (request → solve → install, as a container's
``compute_optimal_updates``: each layer ends as its own ``compute_optimal_updates`` would leave it:
delta, new neurons, extension layers), with two rules GroMo does not have:

* the numerical threshold of ``S_growth^{-1/2}`` is **relative**: ``relative_numerical_threshold ·
  λ_max(S_growth)``, so it means the same thing whatever the scale of the inputs;
* a layer keeps ``min(neurons_per_step, #{σ ≥ relative_statistical_threshold · σ_max})`` neurons
  (``sub_select_optimal_added_parameters``), so growth does not collapse to one neuron per step when
  the loss gets small (GroMo's absolute 1e-3 does).

All solves of a step run in one ``gromo_kernels.factorization_cache`` block: layer l's new-neuron
solve reuses ``S_{l-1}``, already factored by layer l−1's delta solve. A failing candidate raises
(with the layer named, no layer changed); it is never turned into a gain of 0.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

import gromo_kernels as gk
from gromo.modules._growing.together import compute_updates_together, growth_entry
from gromo.modules._growth_options import GrowthOptions


class CandidateError(RuntimeError):
    """A growable layer's candidate update could not be computed (the message names the layer)."""


def growable_layers(model: nn.Module) -> list[nn.Module]:
    """The container's growable layers / blocks (GroMo's ``_growing_layers``)."""
    layers = getattr(model, "_growing_layers", None)
    if layers is None:
        raise TypeError("model: expected a GrowingContainer (it has no _growing_layers)")
    return list(layers)


def _growth_covariance(layer: nn.Module) -> torch.Tensor:
    """S_growth (mean) of a layer, or of a block's second layer (the one whose inputs grow)."""
    owner = getattr(layer, "second_layer", layer)
    statistic = owner.tensor_s_growth
    return statistic() if callable(statistic) else statistic


def _largest_eigenvalue(matrix: torch.Tensor | None) -> float | None:
    """λ_max of a symmetric matrix (float64), None for an empty, missing or non-finite one (the
    layer's own checks then report the non-finite statistic, naming the layer it belongs to)."""
    if matrix is None or matrix.numel() == 0 or not bool(torch.isfinite(matrix).all()):
        return None
    matrix = matrix.detach().double()
    return float(torch.linalg.eigvalsh((matrix + matrix.T) / 2)[-1])


def _first_order_gain(layer: nn.Module) -> float:
    """The layer's first-order improvement (``parameter_update_decrease + σ'(0)·Σσ²``) as a float."""
    return float(layer.first_order_improvement)


def _compute_updates(model: nn.Module, config) -> dict[int, dict]:
    """Optimal added neurons of every growable layer (``config``: a GrowthConfig); per-layer info.

    Returns ``{layer index: {"sigma_all": [all |σ|], "keep": neurons kept}}``; each layer holds its
    pending update (extension layers, eigenvalues_extension) sub-selected to ``keep`` neurons.

    Raises:
        CandidateError: a layer's solve failed (the original error is chained).
    """
    layers = growable_layers(model)
    names = {}
    for index, layer in enumerate(layers):
        names[id(layer)] = getattr(layer, "name", f"layer {index}")
        if hasattr(layer, "second_layer"):  # a block's job is its second layer's; the candidate is the block
            names[id(layer.second_layer)] = names[id(layer)]

    def candidate_error(module: nn.Module, error: Exception) -> CandidateError:
        return CandidateError(f"candidate {names.get(id(module), 'layer')!r}: {type(error).__name__}: {error}")

    entries = []
    for layer in layers:
        try:
            lam_max = _largest_eigenvalue(_growth_covariance(layer))
            numerical = config.relative_numerical_threshold * lam_max if lam_max else 0.0
            options = GrowthOptions(
                numerical_threshold=numerical, statistical_threshold=0.0, maximum_added_neurons=None,
                compute_delta=config.compute_delta, use_projection=config.use_projection,
            )
            # A block's signature has no update_previous (it always extends its first layer).
            entries.append(growth_entry(layer, **options.as_kwargs(drop=("update_previous",))))
        except Exception as error:
            raise candidate_error(layer, error) from error
    reuse = gk.factorization_cache() if len(layers) > 1 else contextlib.nullcontext()
    with reuse, warnings.catch_warnings():
        # Dead ReLU units make S singular: the pseudo-inverse is the intended solve, not news.
        warnings.filterwarnings("ignore", message="Using the pseudo-inverse", category=UserWarning)
        compute_updates_together(entries, scope=[model], on_error=candidate_error)
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


def candidate_gains(model: nn.Module, info: dict[int, dict]) -> dict[int, float]:
    """First-order gain of every layer with at least one kept neuron (0.0 for the others)."""
    return {
        index: (_first_order_gain(layer) if info[index]["keep"] > 0 else 0.0)
        for index, layer in enumerate(growable_layers(model))
    }
