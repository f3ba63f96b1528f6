"""Plugin tables: crowd estimators and fire scorers chosen by name, imported only when used.

Every plugin class is built with the classmethod
``from_registry(registry: ModelRegistry, settings: CrowdSettings | FireSettings, runtime: Runtime)``
and implements :class:`detectors.base.CrowdEstimator` or :class:`detectors.base.FireScorer`.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detectors.base import CrowdEstimator, FireScorer
    from detectors.registry import ModelRegistry
    from detectors.runtime import Runtime
    from detectors.settings import CrowdSettings, FireSettings

CROWD_ESTIMATORS: dict[str, str] = {
    "boxes": "detectors.crowd:BoxCrowdEstimator",
    "density": "detectors.density:DensityEstimator",
}

FIRE_SCORERS: dict[str, str] = {
    "classifier": "detectors.fire:OnFireScorer",
    "tuned": "detectors.fire_tuned:TunedFireScorer",
}


class PluginError(RuntimeError):
    """A plugin name is unknown or its module cannot be imported."""


def load_plugin(table: dict[str, str], name: str, kind: str) -> type:
    """Import and return the class registered under ``name`` in ``table``."""
    if name not in table:
        raise PluginError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(table))}")
    module_name, attr = table[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise PluginError(f"{kind} {name!r} is not installed (module {module_name} is missing)") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise PluginError(f"{kind} {name!r}: {module_name} has no {attr}") from None


def available(table: dict[str, str]) -> list[str]:
    """Names in ``table`` whose module can be found (without importing it)."""
    return [name for name, target in table.items() if importlib.util.find_spec(target.split(":")[0]) is not None]


def build_crowd_estimator(name: str, registry: ModelRegistry, settings: CrowdSettings, runtime: Runtime) -> CrowdEstimator:
    """Build the crowd estimator called ``name`` (``boxes`` or ``density``)."""
    return _build(load_plugin(CROWD_ESTIMATORS, name, "crowd estimator"), registry, settings, runtime)


def build_fire_scorer(name: str, registry: ModelRegistry, settings: FireSettings, runtime: Runtime) -> FireScorer:
    """Build the fire scorer called ``name`` (``classifier`` or a registered plugin)."""
    return _build(load_plugin(FIRE_SCORERS, name, "fire scorer"), registry, settings, runtime)


def _build(cls: type, registry: Any, settings: Any, runtime: Any) -> Any:
    return cls.from_registry(registry, settings, runtime)
