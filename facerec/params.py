"""Read one stage's section of params.yaml and check values before any work starts."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml


def load_params(path: Path = Path("params.yaml")) -> dict[str, Any]:
    """Return the whole params file as a dict."""
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def require_choice(key: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Raise a ValueError naming the key when `value` is not one of `allowed`."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"params.yaml: {key} = {value!r} is not allowed; use one of {allowed}")
    return value


def require_range(key: str, value: Any, low: float, high: float, *, integer: bool = False) -> Any:
    """Raise a ValueError naming the key when `value` is not a number in [low, high]."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"params.yaml: {key} = {value!r} must be {kind} between {low} and {high}")
    return value
