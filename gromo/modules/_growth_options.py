"""GroMo's growth options as one frozen value, and the GroMo signature that carries them.

The public methods keep GroMo's keyword signatures (``compute_optimal_updates``,
``_auxiliary_compute_alpha_omega``, ``_compute_optimal_added_parameters`` and the block's
``compute_optimal_updates``): :func:`takes_growth_options` builds each one from the fields of
:class:`GrowthOptions` and binds a call to one value, so every option is named here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

__all__ = ["GrowthOptions", "takes_growth_options"]

_Result = TypeVar("_Result")


@dataclass(frozen=True)
class GrowthOptions:
    """The options of one growth solve, with GroMo's defaults.

    Attributes:
        numerical_threshold: eigenvalues of S (and E) at or below it count as zero.
        statistical_threshold: singular values below it (relative, GroMo's rule) are dropped.
        maximum_added_neurons: keep at most this many new neurons (None: no cap).
        update_previous: also set the previous layer's extension.
        dtype: precision of the solves' inputs.
        compute_delta: compute and store the optimal delta of this layer.
        use_covariance: whiten by S_growth (TINY); False uses the identity (GradMax).
        alpha_zero: the new neurons' input weights start at zero.
        omega_zero: the new neurons' output weights start at zero.
        use_projection: project the goal by the optimal delta (TINY's −M₋₂ − P form).
        ignore_singular_values: do not fold √σ into α and ω.
        use_fisher: precondition the output side with the gradient covariance E.
    """

    numerical_threshold: float = 1e-6
    statistical_threshold: float = 1e-3
    maximum_added_neurons: int | None = None
    update_previous: bool = True
    dtype: torch.dtype = torch.float32
    compute_delta: bool = True
    use_covariance: bool = True
    alpha_zero: bool = False
    omega_zero: bool = False
    use_projection: bool = True
    ignore_singular_values: bool = False
    use_fisher: bool = False

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> GrowthOptions:
        """The options named in ``arguments`` (a public method's ``locals()``), defaults for the rest.

        A GroMo signature lists the options once; ``GrowthOptions.from_arguments(locals())`` as its
        first line turns them into one value without naming each option a second time.
        """
        return cls(**{f.name: arguments[f.name] for f in dataclasses.fields(cls) if f.name in arguments})

    def replace(self, **changes: Any) -> GrowthOptions:
        """A copy with ``changes`` applied (the value itself is frozen)."""
        return dataclasses.replace(self, **changes)

    def as_kwargs(self, *, drop: tuple[str, ...] = ()) -> dict[str, Any]:
        """The options as GroMo keyword arguments, less the names in ``drop``.

        For the few calls that must cross a public GroMo signature (a container calling a module).
        """
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in drop}


def takes_growth_options(
    *, without: tuple[str, ...] = ()
) -> Callable[[Callable[[Any, GrowthOptions], _Result]], Callable[..., _Result]]:
    """Decorator: ``method(self, options)`` exposed as GroMo's ``method(self, numerical_threshold=1e-6, …)``.

    The fields of :class:`GrowthOptions` less ``without``, in field order, with their defaults and
    types, are the method's parameters (positional or keyword, as GroMo's): ``inspect.signature``,
    ``help`` and ``typing.get_type_hints`` show GroMo's signature, and a call is bound to one
    :class:`GrowthOptions` (the options in ``without`` keep their defaults). The method's
    ``bind_options(*args, **kwargs)`` binds a call's arguments (less ``self``) without calling it.

    Raises (from the decorated method):
        TypeError: an unknown, repeated or surplus argument, with a plain ``def``'s text.
    """
    unknown = set(without) - {f.name for f in dataclasses.fields(GrowthOptions)}
    if unknown:
        raise ValueError(f"without: {sorted(unknown)} are not growth options")
    types = typing.get_type_hints(GrowthOptions)
    options = [
        inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=f.default, annotation=types[f.name])
        for f in dataclasses.fields(GrowthOptions) if f.name not in without
    ]

    names = [p.name for p in options]
    position = {name: i for i, name in enumerate(names)}

    def decorate(method: Callable[[Any, GrowthOptions], _Result]) -> Callable[..., _Result]:
        returns = inspect.signature(method).return_annotation
        signature = inspect.Signature(
            [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *options],
            return_annotation=returns,
        )
        qualname = method.__qualname__

        def bind_options(*args: Any, **kwargs: Any) -> GrowthOptions:
            # The checks (and texts) of a plain def, in CPython's order: keywords, then positionals.
            for key in kwargs:
                if key not in position:
                    raise TypeError(f"{qualname}() got an unexpected keyword argument '{key}'")
                if position[key] < len(args):
                    raise TypeError(f"{qualname}() got multiple values for argument '{key}'")
            if len(args) > len(names):
                raise TypeError(
                    f"{qualname}() takes from 1 to {len(names) + 1} positional arguments but "
                    f"{len(args) + 1} were given"
                )
            return GrowthOptions(**dict(zip(names, args)), **kwargs)

        @functools.wraps(method)
        def with_gromo_signature(self: Any, *args: Any, **kwargs: Any) -> _Result:
            return method(self, bind_options(*args, **kwargs))

        with_gromo_signature.bind_options = bind_options  # type: ignore[attr-defined]
        with_gromo_signature.__signature__ = signature  # type: ignore[attr-defined]
        with_gromo_signature.__annotations__ = {
            **{p.name: p.annotation for p in options}, "return": method.__annotations__.get("return"),
        }
        return with_gromo_signature

    return decorate
