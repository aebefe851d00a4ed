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
]

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


class ReLUDerivativeOneAtZero(nn.ReLU):
    """ReLU whose derivative at 0 is taken to be 1 (forward identical to ReLU).

    Used where GroMo needs σ'(0⁺) = 1 with a ReLU (first-order improvement of new neurons).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        # relu(x) = x·1[x ≥ 0] has derivative 1 at 0 (torch's relu uses 0 there).
        return x * (x >= 0).to(x.dtype)


def activation_fn(fn_name: str | None) -> nn.Module:
    """An activation module from its name.

    Args:
        fn_name: "relu", "selu", "gelu", "silu", "tanh", "sigmoid", "softmax", "identity"/"id"/None.
    Returns:
        torch.nn.Module
    Raises:
        ValueError: unknown name.
    """
    if fn_name is None:
        return nn.Identity()
    name = fn_name.lower()
    table = {
        "relu": nn.ReLU,
        "selu": nn.SELU,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "softmax": lambda: nn.Softmax(dim=-1),
        "identity": nn.Identity,
        "id": nn.Identity,
    }
    if name not in table:
        raise ValueError(f"fn_name: unknown activation function {fn_name!r}")
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
