"""Plugin tables resolve names lazily with clear errors."""

import pytest

from detectors.crowd import BoxCrowdEstimator
from detectors.fire import OnFireScorer
from detectors.plugins import CROWD_ESTIMATORS, FIRE_SCORERS, PluginError, load_plugin


def test_builtin_plugins_resolve():
    assert load_plugin(CROWD_ESTIMATORS, "boxes", "crowd estimator") is BoxCrowdEstimator
    assert load_plugin(FIRE_SCORERS, "classifier", "fire scorer") is OnFireScorer


def test_unknown_name_lists_choices():
    with pytest.raises(PluginError, match="unknown crowd estimator 'heads'.*boxes"):
        load_plugin(CROWD_ESTIMATORS, "heads", "crowd estimator")


def test_missing_module_is_one_line_error():
    with pytest.raises(PluginError, match="not installed.*detectors.no_such_module"):
        load_plugin({"x": "detectors.no_such_module:Thing"}, "x", "fire scorer")
