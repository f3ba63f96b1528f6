"""Hostile input: malformed, oversized and wrongly typed data at the config loader, the decoders and the rules.

Property-based (hypothesis) with a fixed example budget and derandomized, so CI runs the same examples
every time. Whatever comes in, the outcome is a value, a clear error (ConfigError with file:line, DecodeError
with a dead-letter reason) or a dead-letter record: never another exception, never a hang.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from detectors.records import Detection
from pipeline.codec import MAX_MESSAGE_BYTES, SCHEMAS, DecodeError, dead_letter, decode
from pipeline.config import ConfigError, load_config
from pipeline.embedded import EmbeddedRunner
from pipeline.records import Ack, CameraHealth, DeadLetter, SensorReading

settings.register_profile(
    "hostile", max_examples=150, derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
HOSTILE = settings.get_profile("hostile")
pytestmark = pytest.mark.timeout(300)

CONFIG_KEYS = ["groups", "cameras", "id", "url", "town", "village", "grid", "zones", "rules", "defaults",
               "include", "inventory", "polygon", "name", "crowding", "fire", "threshold", "schedule",
               "enabled", "source", "detectors", "sample_fps", "position"]
DECODE_ERROR_REASONS = {"too_large", "not_json", "unknown_schema", "invalid"}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["rtsp://admin:pw@127.0.0.1:1/x", "${NOT_SET_ANYWHERE}", "file:///dev/zero", "../../etc/passwd",
                     "<img src=x onerror=alert(1)>", "", "\x00", "9" * 400]),
)
keys = st.one_of(st.sampled_from(CONFIG_KEYS), st.text(max_size=12))
json_like = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                          st.dictionaries(keys, inner, max_size=6)), max_leaves=30)


# ---------------------------------------------------------------- config loader


def _load(path: Path) -> None:
    try:
        load_config([path])
    except ConfigError as exc:
        assert exc.issues, "ConfigError without an issue"
        for issue in exc.issues:
            assert issue.file and issue.message, issue


@HOSTILE
@given(doc=json_like)
def test_config_loader_on_generated_yaml(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("cfg") / "hostile.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    _load(path)


@HOSTILE
@given(doc=st.fixed_dictionaries({"groups": st.lists(st.fixed_dictionaries(
    {"id": scalars, "town": scalars, "cameras": st.lists(st.dictionaries(keys, json_like, max_size=6), max_size=3)},
    optional={"village": scalars, "rules": json_like, "zones": json_like}), max_size=3)}))
def test_config_loader_on_config_shaped_yaml(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("cfg") / "shaped.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    _load(path)


@HOSTILE
@given(raw=st.one_of(st.binary(max_size=2000), st.text(max_size=2000).map(str.encode)))
def test_config_loader_on_raw_bytes(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("cfg") / "raw.yaml"
    path.write_bytes(raw)
    _load(path)


@pytest.mark.parametrize("text", [
    # billion laughs: aliases that would expand to 10^9 strings
    "a: &a ['x','x','x','x','x','x','x','x','x','x']\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)) + "groups: *i\n",
    "groups: !!python/object/apply:os.system ['echo pwned']\n",  # safe loading: a constructor error, not a call
    "groups:\n" + "  - " * 2000 + "x\n",  # deep nesting
    "groups: [" * 5000 + "]" * 5000 + "\n",
    # merge-key doubling: each level merges the previous one twice
    "a0: &a0 {k: 1}\n" + "".join(f"a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}], k{i}: 1}}\n" for i in range(1, 40))
    + "groups: [*a39]\n",
])
def test_config_loader_on_known_attacks(tmp_path, text):
    path = tmp_path / "attack.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError):
        load_config([path])


def test_config_include_of_a_device_file_is_an_error(tmp_path):
    path = tmp_path / "inc.yaml"
    path.write_text("include: [/dev/zero]\ngroups: []\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        load_config([path])


# ---------------------------------------------------------------- message decoders

ACCEPT = [(Detection,), (SensorReading, CameraHealth), (SensorReading,), (Ack,), tuple(SCHEMAS.values())]


def _decode_outcome(value: bytes, accept: tuple) -> object:
    try:
        record = decode(value, accept)
    except DecodeError as exc:
        assert exc.reason in DECODE_ERROR_REASONS and "\n" not in exc.detail and len(exc.detail) <= 400
        letter = dead_letter(exc, topic="t", partition=0, offset=1, key=b"k\xff", value=value)
        assert isinstance(letter, DeadLetter) and letter.reason == exc.reason and len(letter.payload_head) <= 200
        DeadLetter.model_validate_json(letter.to_json())  # the dead letter itself is a valid record
        return exc
    assert isinstance(record, accept)
    return record


def _valid_detection() -> dict:
    return json.loads(Detection(camera_id="c1", seq=1, capture_time=1.7e9, frame_width=64, frame_height=48).to_json())


mutations = st.dictionaries(st.sampled_from(list(_valid_detection()) + ["zones", "fire", "boxes", "extra"]),
                            json_like, max_size=4)


@HOSTILE
@given(value=st.binary(max_size=3000), which=st.integers(0, len(ACCEPT) - 1))
def test_decoder_on_random_bytes(value, which):
    _decode_outcome(value, ACCEPT[which])


@HOSTILE
@given(doc=json_like, schema=st.sampled_from([*SCHEMAS, "guanjia.detection.v2", None]), which=st.integers(0, len(ACCEPT) - 1))
def test_decoder_on_json_with_any_schema(doc, schema, which):
    if isinstance(doc, dict) and schema is not None:
        doc = {**doc, "schema": schema}
    _decode_outcome(orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS) if _json_ok(doc) else b"{", ACCEPT[which])


@HOSTILE
@given(changes=mutations)
def test_decoder_on_wrongly_typed_detections(changes):
    doc = {**_valid_detection(), **changes}
    if not _json_ok(doc):
        return
    outcome = _decode_outcome(orjson.dumps(doc), (Detection,))
    if isinstance(outcome, Detection):
        assert outcome.frame_width > 0 and outcome.seq >= 0


def test_oversized_message_goes_to_dead_letter():
    doc = _valid_detection()
    doc["models"] = {"pad": "x" * MAX_MESSAGE_BYTES}
    value = orjson.dumps(doc)
    with pytest.raises(DecodeError) as info:
        decode(value, (Detection,))
    assert info.value.reason == "too_large"
    letter = dead_letter(info.value, topic="guanjia.detections.v1", partition=3, offset=7, key=b"c1", value=value)
    assert letter.reason == "too_large" and letter.size == len(value) and len(letter.payload_head) == 200


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_numbers_are_dead_lettered(token):
    value = b'{"camera_id":"c","seq":1,"capture_time":' + token + b',"frame_width":1,"frame_height":1}'
    with pytest.raises(DecodeError) as info:
        decode(value, (Detection,))
    assert info.value.reason == "invalid" and "capture_time" in info.value.detail


def _json_ok(doc) -> bool:
    try:
        orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return False
    return True


# ---------------------------------------------------------------- rule engine


@pytest.fixture(scope="module")
def cameras(tmp_path_factory):
    path = tmp_path_factory.mktemp("rules") / "cams.yaml"
    zone = [{"name": "gate", "polygon": [[0, 0], [1, 0], [1, 1]]}]
    path.write_text(yaml.safe_dump({
        "defaults": {"rules": {"crowding": {"threshold": 5, "clear_threshold": 2, "dwell_s": 0, "clear_s": 0},
                               "fire": {"threshold": 0.5, "k": 1, "n": 1, "clear_s": 0}}},
        "groups": [{"id": "g", "town": "T", "village": "V",
                    "cameras": [{"id": "c1", "url": "rtsp://127.0.0.1:1/a", "grid": "G1", "zones": zone},
                                {"id": "c2", "url": "rtsp://127.0.0.1:1/b", "grid": "G1", "zones": zone}]}],
    }), encoding="utf-8")
    return load_config([path]).cameras


# NaN and ±inf included: the JSON decoder accepts NaN/Infinity tokens
times = st.one_of(st.floats(min_value=-1e12, max_value=1e12),
                  st.sampled_from([0.0, 1.7e9, -1.0, 1e300, math.nan, math.inf, -math.inf]))
counts = st.floats(min_value=0, max_value=1e9, allow_nan=False)


def _valid_or_none(model, data: dict):
    """The record, or None where the decoder would have dead-lettered it (e.g. a NaN time)."""
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


detections = st.builds(
    lambda cam, seq, t, zones, fire: _valid_or_none(Detection, {
        "camera_id": cam, "seq": seq, "capture_time": t, "frame_width": 64, "frame_height": 48,
        "zones": [{"zone": z, "count": c} for z, c in zones],
        "fire": None if fire is None else {"score": fire}}),
    st.sampled_from(["c1", "c2", "unknown", ""]), st.integers(0, 2**40), times,
    st.lists(st.tuples(st.sampled_from(["gate", "other", ""]), counts), max_size=3),
    st.none() | st.floats(0, 1))
readings = st.builds(
    lambda sid, kind, t, value, alarm, grid: _valid_or_none(SensorReading, {
        "sensor_id": sid, "kind": kind, "time": t, "value": value, "alarm": alarm, "grid_id": grid}),
    st.sampled_from(["s1", "s2"]), st.sampled_from(["smoke", "temperature", "gas", "people_counter", "water_level"]),
    times, st.floats(allow_nan=False), st.booleans(), st.sampled_from(["G1", "G404"]))
healths = st.builds(
    lambda cam, t, state: _valid_or_none(CameraHealth, {"camera_id": cam, "time": t, "state": state}),
    st.sampled_from(["c1", "c2", "ghost"]), times, st.sampled_from(["connecting", "streaming", "backoff", "error", "stopped"]))
acks = st.builds(lambda eid, t: _valid_or_none(Ack, {"event_id": eid, "by": "desk", "time": t}), st.text(max_size=40), times)


@HOSTILE
@given(inputs=st.lists(st.one_of(detections, readings, healths, acks, times), max_size=25))
def test_rule_engine_on_any_sequence(cameras, inputs):
    runner = EmbeddedRunner(cameras)
    for item in inputs:
        if item is None:
            continue
        if isinstance(item, float) and not math.isfinite(item):
            item = 0.0  # the clock is the worker's own, never a message's
        events = runner.tick(item) if isinstance(item, float) else runner.feed(item)
        for event in events:
            assert event.catalog_code and event.routing.unit
            assert event.event_id
