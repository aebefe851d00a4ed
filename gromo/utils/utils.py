"""Device helpers and small tensor helpers used by the module layer (GroMo's ``gromo.utils.utils``).

Device resolution follows GroMo: a module's device is, in order of precedence, the constructor
argument, the ``device`` key of the project's GroMo configuration (``[tool.gromo]`` in the nearest
``pyproject.toml``, or a ``gromo.config`` TOML file, section ``env`` = ``"production"`` by default),
then the global device (``cuda`` when available, else ``cpu``). The global device is resolved on
first use, never at import time.

Differences from GroMo (deliberate):
* the configuration file is parsed once per (file, modification time, size) instead of at every module
  construction (GroMo re-reads it for each module: pure overhead, same result).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "global_device",
    "set_device",
    "reset_device",
    "get_correct_device",
    "load_config",
    "torch_zeros",
    "torch_ones",
    "activation_fn",
    "compute_tensor_stats",
    "ReLUDerivativeOneAtZero",
    "set_from_conf",
    "known_activations_zero_plus_gradient",  # noqa: F822 (module __getattr__, read lazily)
    "line_search",
    "mini_batch_gradient_descent",
    "batch_gradient_descent",
    "calculate_true_positives",
    "f1",
    "f1_micro",
    "f1_macro",
    "compute_BIC",
    "alphabetic_index",
]

# GroMo's other helpers of this module live in files of their own (one job each).
from gromo.utils._optimisation import batch_gradient_descent, line_search, mini_batch_gradient_descent  # noqa: E402
from gromo.utils._scores import (  # noqa: E402
    alphabetic_index,
    calculate_true_positives,
    compute_BIC,
    f1,
    f1_macro,
    f1_micro,
)


def __getattr__(name: str) -> Any:
    # σ'(0⁺) by activation class: the module layer's own table (one home; extending it registers an
    # activation). Resolved lazily: the module layer imports this file.
    if name == "known_activations_zero_plus_gradient":
        from gromo.modules.growing_module import _DERIVATIVE_AT_ZERO

        return _DERIVATIVE_AT_ZERO
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def set_from_conf(self: Any, name: str, default: Any = None, setter: bool = True) -> Any:
    """``self._config_data.get(name, default)``, also set as attribute ``name`` when ``setter``.

    Args:
        self: an object with a ``_config_data`` dict.
        name: configuration key (and attribute name).
        default: value when the key is absent.
        setter: ``setattr(self, name, value)``.
    Returns:
        the value.
    Raises:
        AssertionError: ``self._config_data`` is missing or not a dict.
    """
    config = getattr(self, "_config_data", None)
    if not isinstance(config, dict):
        raise AssertionError(f"_config_data should be a dict, got {type(config)}")
    value = config.get(name, default)
    if setter:
        setattr(self, name, value)
    return value

_global_device: torch.device | None = None


def global_device() -> torch.device:
    """The default device of every module: ``set_device``'s value, else cuda if available, else cpu.

    Returns:
        torch.device
    """
    if _global_device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return _global_device


def set_device(device: str | torch.device) -> None:
    """Set the global default device.

    Args:
        device: a device or a device string ("cpu", "cuda", "cuda:1", ...).
    """
    global _global_device
    _global_device = torch.device(device)


def reset_device() -> None:
    """Forget ``set_device``: the global device is again cuda when available, else cpu."""
    global _global_device
    _global_device = None


# ----------------------------------------------------------------------------------------------
# Configuration file
# ----------------------------------------------------------------------------------------------

_CONFIG_CACHE: dict[tuple[str, int, int], dict[str, Any]] = {}


def _toml_loads(text: str) -> dict[str, Any]:
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            return {}
    try:
        return tomllib.loads(text)
    except Exception:  # a malformed file is ignored, as if absent
        return {}


def _find_config_file(start: Path) -> tuple[Path, str] | None:
    """Walk up from ``start`` to the project root (first directory with .git or pyproject.toml)."""
    for directory in (start, *start.parents):
        config = directory / "gromo.config"
        if config.is_file():
            return config, "gromo.config"
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file():
            return pyproject, "pyproject"
        if (directory / ".git").exists():
            return None
    return None


def load_config() -> dict[str, Any]:
    """The GroMo configuration of the current project, section ``env`` (default "production").

    Returns:
        dict (empty when no configuration is found).
    """
    found = _find_config_file(Path(os.getcwd()))
    if found is None:
        return {}
    path, flavour = found
    try:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
    except OSError:
        return {}
    if key not in _CONFIG_CACHE:
        data = _toml_loads(path.read_text(encoding="utf-8", errors="replace"))
        if flavour == "pyproject":
            data = data.get("tool", {}).get("gromo", {})
        if not isinstance(data, dict):
            data = {}
        env = data.get("env", "production")
        section = data.get(env, data) if isinstance(data.get(env, None), dict) else data
        _CONFIG_CACHE[key] = dict(section)
    return _CONFIG_CACHE[key]


def get_correct_device(self: Any, device: str | torch.device | None) -> torch.device:
    """Resolve a module's device: argument > configuration ``device`` key > global device.

    Args:
        self: the module being built (its ``_config_data`` dict is used when present).
        device: the constructor argument.
    Returns:
        torch.device
    """
    if device is not None:
        return torch.device(device)
    config = getattr(self, "_config_data", None)
    if config is None:
        config = load_config()
    if isinstance(config, dict) and config.get("device") is not None:
        return torch.device(config["device"])
    return global_device()


# ----------------------------------------------------------------------------------------------
# Small tensor helpers
# ----------------------------------------------------------------------------------------------


def torch_zeros(*size: int, **kwargs: Any) -> torch.Tensor:
    """``torch.zeros`` on the global device (unless ``device=`` is given)."""
    kwargs.setdefault("device", global_device())
    return torch.zeros(*size, **kwargs)


def torch_ones(*size: int, **kwargs: Any) -> torch.Tensor:
    """``torch.ones`` on the global device (unless ``device=`` is given)."""
    kwargs.setdefault("device", global_device())
    return torch.ones(*size, **kwargs)


class _ReLUOneAtZero(torch.autograd.Function):
    """clamp(x, min=0) forward, grad·1[x ≥ 0] backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(x)
        return torch.clamp(x, min=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        (x,) = ctx.saved_tensors
        return grad * (x >= 0).to(grad.dtype)


class ReLUDerivativeOneAtZero(nn.Module):
    """ReLU whose derivative at 0 is taken to be 1: forward ``clamp(x, min=0)`` (−inf → 0, never
    −0.0), backward ``grad·1[x ≥ 0]`` (torch's relu uses 0 at 0).

    Used where GroMo needs σ'(0⁺) = 1 with a ReLU (first-order improvement of new neurons).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return _ReLUOneAtZero.apply(x)


def activation_fn(fn_name: str | None) -> nn.Module:
    """An activation module from its name.

    Args:
        fn_name: "relu", "relu_derivative_one_at_zero", "selu", "gelu", "silu", "tanh", "sigmoid",
            "softmax" (over dim 1), "identity"/"id"/None; stripped and case-insensitive.
    Returns:
        torch.nn.Module
    Raises:
        ValueError: unknown name.
    """
    if fn_name is None:
        return nn.Identity()
    name = fn_name.strip().lower()
    table = {
        "relu": nn.ReLU,
        "relu_derivative_one_at_zero": ReLUDerivativeOneAtZero,
        "selu": nn.SELU,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "softmax": lambda: nn.Softmax(dim=1),
        "identity": nn.Identity,
        "id": nn.Identity,
    }
    if name not in table:
        raise ValueError(f"Unknown activation function: {name} (fn_name={fn_name!r})")
    return table[name]()


def compute_tensor_stats(tensor: torch.Tensor) -> dict[str, float]:
    """min, max, mean and (unbiased) std of all elements.

    Args:
        tensor: any shape.
    Returns:
        {"min", "max", "mean", "std"} as floats: NaN for an empty tensor, std 0 for one element.
    """
    t = tensor.detach()
    if t.numel() == 0:
        nan = math.nan
        return {"min": nan, "max": nan, "mean": nan, "std": nan}
    t = t.to(torch.float64) if not t.is_floating_point() else t
    return {
        "min": float(t.min()),
        "max": float(t.max()),
        "mean": float(t.mean()),
        "std": float(t.std()) if t.numel() > 1 else 0.0,
    }
