"""GrowingModule's passes: what a forward stores (input, pre-activation) and the extended forward
that evaluates a pending update (optimal delta and new neurons) without applying it.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from gromo.modules._growing.activations import SupportsExtendedForward
from gromo.modules._growing.markers import GrowingModuleBase
from gromo.utils._assertions import ensure

__all__ = ["ForwardMixin"]


class ForwardMixin:
    """GrowingModule's stored tensors, ``forward`` and ``extended_forward``."""

    # ----- stored tensors -------------------------------------------------------------------

    @property
    def input(self) -> torch.Tensor:
        """This layer's input, routed as GroMo by ``_internal_store_input``: the stored ``_input`` when
        set, else the previous module's ``activity`` (a merge stores it for its successors).

        Raises:
            ValueError: not stored.
            AssertionError: stored internally but not computed yet, or no previous module.
        """
        if not self.store_input:
            raise ValueError(f"The input is not stored. ({self.name}: store_input is False.)")
        if not self._internal_store_input:
            ensure(self.previous_module is not None, (
                "A previous module is needed to store the input.Otherwise _internal_store_input must be "
                f"set to True. (error in {self.name})"
            ))
        else:
            ensure(self._input is not None,
                   f"The input is not stored. Apparently it was not computed yet. ({self.name}: the input "
                   "has not been computed yet.)")
        return self._stored_input()

    def _stored_input(self) -> torch.Tensor | None:
        """``input`` when it is available, else None (where ``input`` raises)."""
        if not self.store_input:
            return None
        if not self._internal_store_input:
            return None if self.previous_module is None else self.previous_module.activity
        return self._input

    @property
    def input_extended(self) -> torch.Tensor:
        """The input with a ones column when the layer has a bias.

        Raises:
            NotImplementedError: with a bias (the layer type defines it).
        """
        if getattr(self, "use_bias", False):
            raise NotImplementedError
        return self.input

    @property
    def pre_activity(self) -> torch.Tensor:
        """The pre-activation, routed as GroMo by ``_internal_store_pre_activity``: the stored
        ``_pre_activity`` when set, else the next module's ``input`` (a merge stores it).

        Raises:
            ValueError: not stored.
            AssertionError: stored internally but not computed yet, or no next module.
        """
        if not self.store_pre_activity:
            raise ValueError(f"The pre-activity is not stored for {self.name}.")
        if not self._internal_store_pre_activity:
            ensure(self.next_module is not None, (
                "A next module is needed to store the input.Otherwise _internal_store_pre_activity must "
                f"be set to True. (error in {self.name})"
            ))
        else:
            ensure(self._pre_activity is not None, (
                "The pre-activity is not stored. Apparently it was not computed yet. "
                f"(error in {self.name})"
            ))
        return self._stored_pre_activity()

    def _stored_pre_activity(self) -> torch.Tensor | None:
        """``pre_activity`` when it is available, else None (where ``pre_activity`` raises)."""
        if not self.store_pre_activity:
            return None
        if not self._internal_store_pre_activity:
            return None if self.next_module is None else self.next_module.input
        return self._pre_activity

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

