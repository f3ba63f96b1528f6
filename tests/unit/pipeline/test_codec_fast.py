"""The detections fast path (msgspec) decodes exactly what the pydantic Detection decodes, or defers to it.

Property-based (hypothesis, derandomized): any mutation of a full detection gives the same outcome
through ``decode_detection`` as through ``decode``: equal records (same values and types) or the
same dead-letter reason and detail.
"""

from __future__ import annotations

import json

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.records import Box, Detection, FireResult, ZoneCount
from pipeline.codec import DecodeError, DetectionView, decode, decode_detection

FAST = settings(max_examples=300, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

FULL = Detection(camera_id="c1", seq=3, capture_time=1.7e9, frame_width=64, frame_height=48, grid_id="G1",
                 crowd_estimator="density", zones=[ZoneCount(zone="*", count=2.5, density_per_m2=0.3)],
                 boxes=[Box(x1=1, y1=2, x2=3, y2=4, score=0.5)],
                 fire=FireResult(score=0.2, confirmed=True, region=(1, 2, 3, 4)), models={"crowd": "m@1"}, latency_ms=3)


def _normal(node):
    """A JSON Schema without titles, descriptions and defaults, with ``...View`` refs named as the models."""
    if isinstance(node, list):
        return [_normal(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("title", "description", "default") or (key == "items" and value is False):
            continue
        if key == "$ref":
            value = value.removesuffix("View")
        if key == "const":
            key, value = "enum", [value]
        out[key] = _normal(value)
    if "enum" in out:
        out.pop("type", None)
    return out


def test_view_has_the_models_fields_types_and_limits():
    model = Detection.model_json_schema(by_alias=True)
    view = msgspec.json.schema(DetectionView)
    defs = {name.removesuffix("View"): d for name, d in view["$defs"].items()}
    top = defs.pop("Detection")
    assert _normal(top) == _normal({k: v for k, v in model.items() if k != "$defs"})
    assert _normal(defs) == _normal(model["$defs"])
    view_defaults = {f.name: f.default if f.default is not msgspec.NODEFAULT else f.default_factory()
                     for f in msgspec.structs.fields(DetectionView) if f.required is False}
    assert view_defaults == {name: f.get_default(call_default_factory=True)
                             for name, f in Detection.model_fields.items() if not f.is_required()}


def _outcome(value: bytes, fn):
    try:
        record = fn(value)
    except DecodeError as exc:
        return ("error", exc.reason, exc.detail)
    return ("record", orjson.dumps(msgspec.to_builtins(record) if isinstance(record, DetectionView)
                                   else record.model_dump(mode="json", by_alias=True), option=orjson.OPT_SORT_KEYS))


def test_full_detection_takes_the_fast_path_with_the_models_values():
    record = decode_detection(FULL.to_json())
    assert isinstance(record, DetectionView)
    assert _outcome(FULL.to_json(), decode_detection) == _outcome(FULL.to_json(), lambda v: decode(v, (Detection,)))


edge_values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.floats(min_value=-1, max_value=2),
    st.text(max_size=8), st.sampled_from(["5", "1.5", "", "boxes", "density", "guanjia.detection.v1", "\ud800"]),
    st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=5), st.just({}), st.just([]),
)
nested = st.one_of(
    edge_values,
    st.fixed_dictionaries({}, optional={"zone": edge_values, "count": edge_values, "density_per_m2": edge_values,
                                        "score": edge_values, "confirmed": edge_values, "region": edge_values,
                                        "x1": edge_values, "extra": edge_values}),
)
paths = st.sampled_from(["schema", "schema_", "camera_id", "seq", "capture_time", "frame_width", "frame_height",
                         "grid_id", "crowd_estimator", "zones", "boxes", "fire", "models", "latency_ms", "extra",
                         "zones.0", "boxes.0", "fire.score", "fire.region", "fire.confirmed", "zones.0.count",
                         "zones.0.density_per_m2", "boxes.0.score", "boxes.0.x1", "models.crowd"])


def _set(doc: dict, path: str, value) -> None:
    *head, last = path.split(".")
    for part in head:
        doc = doc[int(part)] if part.isdigit() else doc[part]
    if last.isdigit():
        doc[int(last)] = value
    else:
        doc[last] = value


@FAST
@given(changes=st.lists(st.tuples(paths, nested), max_size=3), drop=st.lists(paths, max_size=2))
def test_any_mutation_gets_the_models_verdict(changes, drop):
    doc = json.loads(FULL.to_json())
    for path, value in changes:
        try:
            _set(doc, path, value)
        except (KeyError, IndexError, TypeError):
            pass
    for path in drop:
        if "." not in path:
            doc.pop(path, None)
    try:
        value = json.dumps(doc).encode("utf-8", "surrogatepass")
    except ValueError:
        return
    assert _outcome(value, decode_detection) == _outcome(value, lambda v: decode(v, (Detection,)))


@pytest.mark.parametrize("value", [
    b'{"camera_id":"c","seq":1,"capture_time":NaN,"frame_width":1,"frame_height":1}',
    b'{"camera_id":"c","seq":1,"capture_time":1e999,"frame_width":1,"frame_height":1}',
    b'{"camera_id":"c","seq":1,"capture_time":1' + b"0" * 400 + b',"frame_width":1,"frame_height":1}',
    b'{"camera_id":"c","seq":"1","capture_time":1,"frame_width":1,"frame_height":1}',
    b'{"camera_id":"c","seq":1.0,"capture_time":1,"frame_width":1,"frame_height":1}',
    b'{"camera_id":"c","seq":1,"seq":-1,"capture_time":1,"frame_width":1,"frame_height":1}',
    b'{"camera_id":"\\ud800","seq":1,"capture_time":1,"frame_width":1,"frame_height":1}',
    b'{"camera_id":"\xff","seq":1,"capture_time":1,"frame_width":1,"frame_height":1}',
    b'{"schema_":"guanjia.detection.v1","camera_id":"c","seq":1,"capture_time":1,"frame_width":1,"frame_height":1}',
    b'{"camera_id":"c","seq":1,"capture_time":1,"frame_width":1,"frame_height":1} x',
    b'\xef\xbb\xbf{"camera_id":"c","seq":1,"capture_time":1,"frame_width":1,"frame_height":1}',
    b' {"camera_id":"c","seq":1,"capture_time":1,"frame_width":1,"frame_height":1}\n',
    None, b"", b"x" * 300_000,
])
def test_edge_inputs_get_the_models_verdict(value):
    assert _outcome(value, decode_detection) == _outcome(value, lambda v: decode(v, (Detection,)))
