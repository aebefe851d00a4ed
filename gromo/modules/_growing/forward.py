"""GrowingModule's passes: what a forward stores (input, pre-activation) and the extended forward
that evaluates a pending update (optimal delta and new neurons) without applying it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from gromo.modules._growing.activations import SupportsExtendedForward
from gromo.modules._growing.markers import GrowingModuleBase
from gromo.utils._assertions import ensure

__all__ = ["ForwardMixin"]


class _Route(NamedTuple):
    """Where a stored tensor lives (GroMo's routing), what its property is called and GroMo's texts
    when it is missing (``{name}``: the module's name)."""

    public: str
    summary: str
    store_flag: str
    internal_flag: str
    own: str
    neighbour: str
    neighbour_tensor: str
    not_stored: str
    no_neighbour: str
    not_computed: str

    @property
    def doc(self) -> str:
        """The property's docstring."""
        neighbour = self.neighbour.replace("_", " ")
        return (
            f"{self.summary}, routed as GroMo by ``{self.internal_flag}``: the stored ``{self.own}`` when "
            f"set, else the {neighbour}'s ``{self.neighbour_tensor}`` (stored there by a merge).\n\n"
            "Raises:\n    ValueError: not stored.\n    AssertionError: stored internally but not computed "
            f"yet, or no {neighbour}."
        )


_INPUT = _Route(
    "input", "This layer's input", "store_input", "_internal_store_input", "_input", "previous_module",
    "activity",
    not_stored="The input is not stored. ({name}: store_input is False.)",
    no_neighbour=(
        "A previous module is needed to store the input.Otherwise _internal_store_input must be "
        "set to True. (error in {name})"
    ),
    not_computed=(
        "The input is not stored. Apparently it was not computed yet. ({name}: the input "
        "has not been computed yet.)"
    ),
)
_PRE_ACTIVITY = _Route(
    "pre_activity", "The pre-activation", "store_pre_activity", "_internal_store_pre_activity",
    "_pre_activity", "next_module", "input",
    not_stored="The pre-activity is not stored for {name}.",
    no_neighbour=(
        "A next module is needed to store the input.Otherwise _internal_store_pre_activity must "
        "be set to True. (error in {name})"
    ),
    not_computed="The pre-activity is not stored. Apparently it was not computed yet. (error in {name})",
)


def _routed(module: nn.Module, route: _Route, checked: bool) -> torch.Tensor | None:
    """The tensor ``route`` describes; when it is unavailable, None, or (``checked``) GroMo's
    error: ValueError when not stored, AssertionError when the neighbour or the tensor is missing."""
    stored = getattr(module, route.store_flag)
    internal = getattr(module, route.internal_flag)
    neighbour = getattr(module, route.neighbour)
    if checked:
        if not stored:
            raise ValueError(route.not_stored.format(name=module.name))
        if not internal:
            ensure(neighbour is not None, route.no_neighbour.format(name=module.name))
        else:
            ensure(getattr(module, route.own) is not None, route.not_computed.format(name=module.name))
    if not stored:
        return None
    if not internal:
        return None if neighbour is None else getattr(neighbour, route.neighbour_tensor)
    return getattr(module, route.own)


def _routed_property(route: _Route) -> property:
    """The read-only property ``route.public`` (GroMo's errors when the tensor is unavailable)."""

    def read(self: nn.Module) -> torch.Tensor:
        return _routed(self, route, checked=True)

    read.__name__ = route.public
    read.__doc__ = route.doc
    return property(read, doc=route.doc)


def _route_reader(route: _Route) -> Callable[[nn.Module], torch.Tensor | None]:
    """The method returning ``route.public`` when it is available, else None (where it raises)."""

    def stored(self: nn.Module) -> torch.Tensor | None:
        return _routed(self, route, checked=False)

    stored.__name__ = f"_stored_{route.public}"
    stored.__doc__ = f"``{route.public}`` when it is available, else None (where ``{route.public}`` raises)."
    return stored


class ForwardMixin:
    """GrowingModule's stored tensors, ``forward`` and ``extended_forward``."""

    # ----- stored tensors -------------------------------------------------------------------

    input = _routed_property(_INPUT)
    _stored_input = _route_reader(_INPUT)
    pre_activity = _routed_property(_PRE_ACTIVITY)
    _stored_pre_activity = _route_reader(_PRE_ACTIVITY)

    @property
    def input_extended(self) -> torch.Tensor:
        """The input with a ones column when the layer has a bias.

        Raises:
            NotImplementedError: with a bias (the layer type defines it).
        """
        if getattr(self, "use_bias", False):
            raise NotImplementedError
        return self.input

    # ----- forward ----------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``post_layer_function(layer(x))``; stores x (detached) and the pre-activation when asked.

        A forward that raises changes nothing (the pending batch and its statistics are kept).
        """
        pre_activity = self.layer(x)
        output = self.post_layer_function(pre_activity)
        for statistic in (
            self._tensor_s, self.tensor_m, self.tensor_m_prev, self.cross_covariance,
            self.covariance_loss_gradient,
        ):
            statistic.updated = False
        if isinstance(self.previous_module, GrowingModuleBase):
            self.tensor_s_growth.updated = False
        self._statistics.clear()
        if self._internal_store_input:
            self._input = x.detach()
        if self._internal_store_pre_activity:
            self._pre_activity = pre_activity
            if pre_activity.requires_grad:
                pre_activity.retain_grad()
        return output

    def extended_forward(
        self,
        x: torch.Tensor,
        x_ext: torch.Tensor | None = None,
        use_optimal_delta: bool = True,
        use_extended_input: bool = True,
        use_extended_output: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Forward with the update: ``layer(x) − s_δ δ(x) + s_in Z(x_ext)``, extension ``s_out V(x)``.

        Does not store input or pre-activation.

        Returns:
            (output, output extension or None).
        Raises:
            ValueError: an input extension exists but ``x_ext`` is None.
        Warns:
            UserWarning: ``x_ext`` given while there is no input extension.
        """
        pre_activity = self.layer(x)
        if self.optimal_delta_layer is not None and use_optimal_delta:
            pre_activity = pre_activity - self.optimal_delta_scaling * self.optimal_delta_layer(x)
        if use_extended_input:
            if self.extended_input_layer is not None:
                if x_ext is None:
                    raise ValueError(
                        f"x_ext must be provided got None for {self.name}.As the input is extended, "
                        "an extension is needed."
                    )
                pre_activity = pre_activity + self.input_extension_scaling * self.extended_input_layer(x_ext)
            elif x_ext is not None:
                warnings.warn(
                    f"x_ext must be None got {x_ext} for {self.name}. As the input is not extended, "
                    "no extension is needed.",
                    UserWarning,
                    stacklevel=2,
                )
        if self.extended_output_layer is not None and use_extended_output:
            extension = self.output_extension_scaling * self.extended_output_layer(x)
            return self._apply_extended_post_layer_function(pre_activity, extension)
        return self.post_layer_function(pre_activity), None

    def _apply_extended_post_layer_function(
        self, x: torch.Tensor, x_ext: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.extended_post_layer_function is not None:
            return (
                self.post_layer_function(x),
                self.extended_post_layer_function(x_ext) if x_ext is not None else None,
            )
        function = self.post_layer_function
        if isinstance(function, SupportsExtendedForward):
            return function.extended_forward(x, x_ext)
        if isinstance(function, nn.Sequential):
            for member in function:
                if isinstance(member, SupportsExtendedForward):
                    x, x_ext = member.extended_forward(x, x_ext)
                else:
                    x = member(x) if x is not None else None
                    x_ext = member(x_ext) if x_ext is not None else None
            return x, x_ext
        return (
            function(x) if x is not None else None,
            function(x_ext) if x_ext is not None else None,
        )

