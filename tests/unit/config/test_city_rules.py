"""City-wide rules from the files' ``defaults.rules``, and both rule-engine hosts using them."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.catalog import load_catalog
from pipeline.config import load_config
from pipeline.embedded import EmbeddedRunner
from pipeline.records import SensorKind, SensorReading
from pipeline.rules.settings import RuleSettings
from tests.unit.pipeline.helpers import T0, det

from .conftest import issues_of, only

CAMERA = '{id: c1, url: "rtsp://h/a", grid: G1}'


def reading(t: float, kind: SensorKind, value: float, sensor: str = "s1") -> SensorReading:
    return SensorReading(sensor_id=sensor, kind=kind, time=T0 + t, value=value, alarm=False, grid_id="G9", town="T1")


def city_file(write, name: str = "city.yaml", rules: str = "{}", include: str = "[]") -> Path:
    return write(name, f"""
        defaults:
          rules: {rules}
        include: {include}
        groups:
          - id: g-{name.split('.')[0]}
            cameras: [{CAMERA.replace('c1', 'c-' + name.split('.')[0])}]
        """)


def test_no_defaults_give_the_built_in_rules(write):
    assert load_config([city_file(write)]).rules == RuleSettings()


def test_configured_sensor_threshold_is_honoured_by_the_embedded_runner(write):
    path = city_file(write, rules="{sensors: {thresholds: {gas: 10}}, update_ratio: 2}")
    city = load_config([path])
    runner = EmbeddedRunner(city.cameras, load_catalog(), defaults=city.rules)
    opened = runner.feed(reading(0, SensorKind.gas, 20))  # the built-in threshold is 25
    assert [(e.rule, e.catalog_code, e.value) for e in opened] == [("sensor_alarm", "02.01.01.01", 20)]
    assert runner.feed(reading(1, SensorKind.gas, 35)) == []  # < 2 × 20: update_ratio from defaults too
    assert [e.action.value for e in runner.feed(reading(2, SensorKind.gas, 45))] == ["updated"]
    # thresholds merge key by key over the built-in ones: temperature keeps its 70
    assert city.rules.sensors.thresholds == {"temperature": 70.0, "gas": 10.0, "water_level": 0.3}
    assert runner.feed(reading(3, SensorKind.temperature, 65, sensor="t1")) == []
    assert [e.catalog_code for e in runner.feed(reading(4, SensorKind.temperature, 75, sensor="t1"))] == ["01.01.02.01"]
    built_in = EmbeddedRunner(city.cameras, load_catalog())  # what both hosts did before: no alarm at 20
    assert built_in.feed(reading(0, SensorKind.gas, 20)) == []


def test_fusion_window_from_defaults_is_honoured(write):
    city = load_config([city_file(write, rules="{fusion_window_s: 10, fire: {k: 1, n: 1, clear_s: 0}}")])
    smoke = SensorReading(sensor_id="sm", kind=SensorKind.smoke, time=T0 + 20, value=1, alarm=True, grid_id="G1")
    fused = {}
    for name, defaults in (("configured", city.rules), ("built-in", None)):
        runner = EmbeddedRunner(city.cameras, load_catalog(), defaults=defaults)
        runner.feed(det(0, fire=0.9, cam="c-city"))
        runner.feed(det(1, fire=0.0, cam="c-city"))  # video fire over at +1
        fused[name] = [e.fused for e in runner.feed(smoke)]  # smoke at +20
    assert fused == {"configured": [False], "built-in": [True]}  # 19 s > 10 s; < the built-in 120 s


def test_included_file_inherits_and_may_repeat_the_city_keys(write):
    city_file(write, "town.yaml", rules="{sensors: {thresholds: {gas: 10}}, crowding: {threshold: 40}}")
    root = city_file(write, rules="{sensors: {thresholds: {gas: 10, temperature: 60}}}", include="[town.yaml]")
    city = load_config([root])
    assert city.rules.sensors.thresholds == {"temperature": 60.0, "gas": 10.0, "water_level": 0.3}
    assert city.rules.crowding.threshold == 20  # camera rules of an included file stay its cameras'
    assert city.camera("c-town").settings.rules.crowding.threshold == 40


def test_files_given_together_combine_city_keys_they_do_not_share(write):
    a = city_file(write, "a.yaml", rules="{sensors: {thresholds: {gas: 10}}, crowding: {threshold: 30}}")
    b = city_file(write, "b.yaml", rules="{fusion_window_s: 60, crowding: {threshold: 50}}")
    city = load_config([a, b])
    assert city.rules.sensors.thresholds["gas"] == 10 and city.rules.fusion_window_s == 60
    assert city.rules.crowding.threshold == 30  # cameras the config does not list: the first file's


def test_files_that_disagree_on_a_city_key_are_an_error_naming_both(write):
    city_file(write, "town.yaml", rules="{sensors: {thresholds: {gas: 12}}}")
    root = city_file(write, rules="{sensors: {thresholds: {gas: 10}}}", include="[town.yaml]")
    other = city_file(write, "other.yaml", rules="{update_ratio: 1.5}")
    more = city_file(write, "more.yaml", rules="{update_ratio: 2}")
    issues = issues_of(root, other, more)
    gas = only(issues, "defaults.rules.sensors.thresholds.gas")
    assert gas.file == "town.yaml" and gas.line == 2
    assert "12 differs from 10 at city.yaml:2 (defaults.rules.sensors.thresholds.gas)" in gas.message
    assert "every file's defaults must agree" in gas.message
    ratio = only(issues, "defaults.rules.update_ratio")
    assert ratio.file == "more.yaml" and "2 differs from 1.5 at other.yaml:2" in ratio.message


def test_faust_host_gets_the_configured_rules(write, monkeypatch):
    """`guanjia worker events` hands the config's defaults.rules to the engine it gives the Faust app."""
    import pipeline.faust_app
    from pipeline.cli.worker_cmd import events_worker

    path = city_file(write, rules="{sensors: {thresholds: {gas: 10}}, fusion_window_s: 30}")
    built = {}

    class Built(Exception):
        pass

    def fake_create_app(settings, engine, **kw):
        built["engine"] = engine
        raise Built

    monkeypatch.setattr(pipeline.faust_app, "create_app", fake_create_app)
    result = CliRunner().invoke(events_worker, ["--config", str(path), "--loop", "aio"])
    assert isinstance(result.exception, Built), result.output
    engine = built["engine"]
    assert engine.defaults == load_config([path]).rules and engine.defaults.sensors.thresholds["gas"] == 10
    _, drafts = engine.on_grid_input({}, reading(0, SensorKind.gas, 20))
    assert [d.rule for d in drafts] == ["sensor_alarm"]


@pytest.mark.parametrize("rules", ["{sensors: {thresholds: {gas: high}}}", "{fusion_window_s: -5}"])
def test_invalid_city_keys_are_reported_where_written(write, rules):
    issues = issues_of(city_file(write, rules=rules))
    assert issues and all(i.file == "city.yaml" for i in issues)
