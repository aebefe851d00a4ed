"""GroMo's ``gromo.config.loader``: find and read the project's GroMo configuration.

The configuration lives in the project root (from the working directory upwards, the first
directory holding a ``.git`` entry or a ``pyproject.toml``; else the file-system root):

* ``<root>/pyproject.toml``, tables ``[tool.gromo]`` and ``[tool.gromo.<env>]``, used when
  ``[tool.gromo]`` exists;
* otherwise ``<root>/gromo.config`` (TOML), tables ``[gromo]`` and ``[gromo.<env>]``.

``env`` (in the ``gromo`` table) names the section to use, ``"production"`` by default. The file is
re-read at every call (a container reads it at construction). TOML parse errors propagate.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["load_config"]


def _load_toml(path: str | Path) -> dict[str, Any]:
    """The TOML document at ``path`` as a dict (parse errors propagate)."""
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def _find_project_root(srcs: tuple[str, ...] | list[str] = ()) -> tuple[Path, str]:
    """The project root above the common parent of ``srcs`` (the working directory when empty).

    Returns:
        (root directory, why it is the root: ".git directory", "pyproject.toml" or
        "file system root").
    """
    if srcs:
        paths = [Path(src).resolve() for src in srcs]
        start = Path(os.path.commonpath([str(p) for p in paths]))
        if start.is_file():
            start = start.parent
    else:
        start = Path.cwd().resolve()
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory, ".git directory"
        if (directory / "pyproject.toml").is_file():
            return directory, "pyproject.toml"
    return Path(start.anchor), "file system root"


def _find_pyproject_toml(root: Path) -> str | None:
    """``<root>/pyproject.toml`` when it is a file, else None."""
    candidate = root / "pyproject.toml"
    return str(candidate) if candidate.is_file() else None


def _find_project_config(root: Path) -> dict[str, Any]:
    """The TOML of ``<root>/gromo.config`` ({} when absent)."""
    candidate = root / "gromo.config"
    return _load_toml(candidate) if candidate.is_file() else {}


def load_config() -> tuple[dict[str, Any], str]:
    """The configuration section of the current project and where it came from.

    Returns:
        (section of the ``env`` environment — {} when absent, "pyproject.toml" or "gromo.config").
    Raises:
        tomllib.TOMLDecodeError: a malformed configuration file.
    """
    root, _ = _find_project_root(())
    raw: dict[str, Any] | None = None
    method = "gromo.config"
    pyproject = _find_pyproject_toml(root)
    if pyproject is not None:
        tool = _load_toml(pyproject).get("tool", {})
        if tool.get("gromo") is not None:
            raw, method = tool, "pyproject.toml"
    if raw is None:
        raw = _find_project_config(root)
    gromo_table = raw.get("gromo", {}) or {}
    env = gromo_table.get("env", "production")
    return gromo_table.get(env, {}), method
