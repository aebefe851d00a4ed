"""``LinearMergeGrowingModule``: the merge of linear growing modules (its input is the sum of
their outputs), with the full activity of its predecessors built once per batch.
"""

from __future__ import annotations

import torch
from torch import nn

import gromo_kernels as gk
from gromo.modules._attribute_property import attribute_property
from gromo.modules._linear.markers import LinearMergeGrowingModuleBase
from gromo.modules._linear.module import LinearGrowingModule
from gromo.modules.growing_module import GrowingModule, MergeGrowingModule
from gromo.utils._assertions import ensure

__all__ = ["LinearMergeGrowingModule"]


class LinearMergeGrowingModule(LinearMergeGrowingModuleBase):
    """Merge of linear growing modules (its input is the sum of their outputs).

    Args:
        post_merge_function: activation after the merge.
        previous_modules, next_modules: neighbours.
        allow_growing: stored.
        in_features: width of the merged tensor.
        device: device.
        name: name.
    """

    def __init__(
        self,
        post_merge_function: nn.Module = nn.Identity(),
        previous_modules: list[GrowingModule | MergeGrowingModule] | None = None,
        next_modules: list[GrowingModule | MergeGrowingModule] | None = None,
        allow_growing: bool = False,
        in_features: int | None = None,
        device: torch.device | None = None,
        name: str | None = None,
    ) -> None:
        self.in_features = in_features
        self._full_activity_cache: tuple[tuple[torch.Tensor, ...], torch.Tensor] | None = None
        super().__init__(
            post_merge_function=post_merge_function,
            previous_modules=previous_modules,
            next_modules=next_modules,
            allow_growing=allow_growing,
            tensor_s_shape=None if in_features is None else (in_features + 1, in_features + 1),
            device=device,
            name=name,
        )

    out_features = attribute_property("in_features", "= in_features.")
    input_volume = attribute_property("in_features", "= in_features.")
    output_volume = attribute_property("in_features", "= in_features.")

    def set_next_modules(self, next_modules: list[GrowingModule | MergeGrowingModule]) -> None:
        """Set the successors.

        Raises:
            AssertionError: a successor's in_features differs from out_features.
        Warns:
            UserWarning: the tensor S already holds samples.
        """
        next_modules = list(next_modules) if next_modules else []
        ensure(all(module.in_features == self.out_features for module in next_modules), lambda: (
            f"The output features of {self.name} ({self.out_features}) must match the input features "
            f"of the next modules. Found {[module.in_features for module in next_modules]}. "
            "(in_features of the next modules)"
        ))
        self._store_next_modules(next_modules)

    def set_previous_modules(self, previous_modules: list[GrowingModule | MergeGrowingModule]) -> None:
        """Set the predecessors and (re)create the previous S (total, total) and M (total, in).

        Raises:
            TypeError: a predecessor is neither a LinearGrowingModule nor a merge.
            ValueError: a predecessor's output volume differs from in_features.
        Warns:
            UserWarning: the previous statistics already hold samples.
        """
        self._store_previous_modules(self._checked_previous_modules(
            previous_modules, (LinearGrowingModule, MergeGrowingModule),
            "The previous modules must be LinearGrowingModule instances or MergeGrowingModule).",
        ))

    def _previous_size_mismatch(self, module: GrowingModule | MergeGrowingModule) -> str | None:
        if module.output_volume == self.in_features:
            return None
        return (
            "The input features must match the output volume of the previous modules. "
            f"(The output volume of {getattr(module, 'name', module)} is {module.output_volume}, "
            f"expected in_features={self.in_features}.)"
        )

    def update_size(self) -> None:
        """Follow the predecessors' sizes; recreate statistics whose declared shape changed.

        S is declared ``(in + use_bias)²`` (``use_bias`` may be set to False, as in GroMo).
        """
        if self.previous_modules:
            self.in_features = self.previous_modules[0].out_features
        self._resize_statistics(self.in_features + self.use_bias)
        self._full_activity_cache = None

    @torch.no_grad()
    def construct_full_activity(self) -> torch.Tensor:
        """``B = [x̃_1, …, x̃_k]`` (n, total): the predecessors' inputs, each followed by its ones column.

        Built once per batch (cached on the identity of the predecessors' inputs).

        Raises:
            AssertionError: no predecessors.
        """
        self._check_has_previous_modules()
        growing = self._growing_predecessors()
        inputs = tuple(module.input for module in growing)
        cached = self._full_activity_cache
        if cached is not None and len(cached[0]) == len(inputs) and all(
            a is b for a, b in zip(cached[0], inputs)
        ):
            return cached[1]
        reference = inputs[0] if inputs else self.input
        full = torch.ones(
            reference.shape[0], self.total_in_features, dtype=reference.dtype, device=reference.device
        )
        index = 0
        for module, x in zip(growing, inputs):
            width = module.in_features
            full[:, index: index + width] = torch.flatten(x, 1)
            index += width + module.use_bias
        self._full_activity_cache = (inputs, full)
        return full

    def compute_previous_s_update(self) -> tuple[torch.Tensor, int]:
        """(Σ BᵀB, n) over the full activity B (n, total)."""
        return self._previous_statistic("s")

    def compute_previous_m_update(self) -> tuple[torch.Tensor, int]:
        """(Σ Bᵀ dA, n) with dA the gradient of the merge input: (total, in)."""
        return self._previous_statistic("m")

    def compute_s_update(self) -> tuple[torch.Tensor, int]:
        """(Σ ããᵀ, n) of the activity, with a ones column when ``use_bias``: (in+b, in+b).

        Raises:
            AssertionError: the activity is not stored.
        """
        return self._activity_sums(
            "The input must be stored to compute the update of S. (error in {name}: the activity is "
            "not stored)",
            lambda activity: gk.linear_input_cov(activity, bias=self.use_bias),
        )

    def reset_computation(self) -> None:
        """As MergeGrowingModule.reset_computation, also forgetting the full activity."""
        super().reset_computation()
        self._full_activity_cache = None

    def delete_update(self, include_previous: bool = False) -> None:
        """As MergeGrowingModule.delete_update, also forgetting the full activity."""
        super().delete_update(include_previous=include_previous)
        self._full_activity_cache = None

