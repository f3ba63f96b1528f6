"""Message decoding → dead-letter reasons; catalog validation; JSON Schema files in sync."""

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from detectors.records import Detection
from pipeline.catalog.models import CatalogFile
from pipeline.codec import DecodeError, dead_letter, decode
from pipeline.records import Ack, GovernanceEvent, SensorReading
from pipeline.routing import Place, route
from pipeline.schemas import RECORDS, SCHEMA_DIR, render, schema_for

from .helpers import CATALOG, T0, camera, det, runner

GOOD = det(0, 3).to_json()


@pytest.mark.parametrize("payload,accept,reason", [
    (b"x" * 300_000, (Detection,), "too_large"),
    (b"{oops", (Detection,), "not_json"),
    (b"\xff\xfe", (GovernanceEvent, Ack), "not_json"),
    (json.dumps({"schema": "guanjia.other.v9"}).encode(), (GovernanceEvent, Ack), "unknown_schema"),
    (GOOD.replace(b'"seq":0', b'"seq":-1'), (Detection,), "invalid"),
    (json.dumps({**json.loads(GOOD), "extra": 1}).encode(), (Detection,), "invalid"),
    (None, (Detection,), "invalid"),
])
def test_bad_messages_get_a_reason(payload, accept, reason):
    with pytest.raises(DecodeError) as info:
        decode(payload, accept)
    assert info.value.reason == reason
    dl = dead_letter(info.value, topic="t", partition=1, offset=7, key=b"k", value=payload)
    assert dl.reason == reason and "\n" not in dl.detail and len(dl.payload_head) <= 200


def test_good_messages_decode_by_schema():
    assert decode(GOOD, (Detection,)).camera_id == "cam1"
    reading = SensorReading(sensor_id="s", kind="gas", time=T0, value=1, grid_id="G")
    assert decode(reading.to_json(), (SensorReading, Detection)) == reading


def test_shipped_catalog_has_every_trigger_and_four_levels():
    assert set(CATALOG.by_trigger) >= {"crowding", "fire.video", "fire.sensor", "fire.fused", "camera.offline", "sensor.gas"}
    for code, item in CATALOG.items.items():
        assert len(code.split(".")) == 4 and item.name_zh and item.name_en and item.legal_basis


def _catalog_dict() -> dict:
    return yaml.safe_load(Path("configs/catalog.yaml").read_text(encoding="utf-8"))


def test_catalog_rejects_code_outside_its_parent():
    data = _catalog_dict()
    data["catalog"]["categories"][0]["subcategories"][0]["matters"][0]["items"][0]["code"] = "02.01.01.09"
    with pytest.raises(ValidationError, match="does not extend"):
        CatalogFile.model_validate(data)


def test_catalog_rejects_duplicate_trigger_and_unknown_key():
    data = _catalog_dict()
    items = data["catalog"]["categories"][0]["subcategories"][0]["matters"][0]["items"]
    items[1]["trigger"] = items[0]["trigger"]
    with pytest.raises(ValidationError, match="trigger"):
        CatalogFile.model_validate(data)
    data = _catalog_dict()
    data["routing"]["levels"]["grid"]["untis"] = "x"
    with pytest.raises(ValidationError, match="untis"):
        CatalogFile.model_validate(data)


def test_catalog_validates_through_the_config_command():
    from click.testing import CliRunner

    from pipeline.cli.config_cmd import config

    result = CliRunner().invoke(config, ["validate", "configs/catalog.yaml"])
    assert result.exit_code == 0, result.output


def test_routing_starts_at_item_level_and_skips_unknown_places():
    item = CATALOG.for_trigger("sensor.people_counter")  # handled by the village first
    assert route(CATALOG, item, Place("G1", "V1", "T1"), T0).unit == "V1 村(社区)居委会"
    r = route(CATALOG, item, Place("G1", None, "T1"), T0)
    assert r.level.value == "town" and r.unit == "T1 镇街综治中心" and r.deadline_at == T0 + 20 * 60


@pytest.mark.parametrize("stem", sorted(RECORDS))
def test_schema_files_are_in_sync(stem):
    path = SCHEMA_DIR / f"{stem}.json"
    assert path.exists() and path.read_text(encoding="utf-8") == render(stem), "run: python -m pipeline.schemas"


def test_engine_outputs_validate_against_schemas():
    r = runner(camera(threshold=1, dwell=0, k=1, n=1))
    events = r.feed(det(0, 5, fire=0.9)) + r.tick(T0 + 10**5)
    assert len(events) >= 3
    for ev in events:
        jsonschema.validate(json.loads(ev.to_json()), schema_for("governance-event"))
    jsonschema.validate(json.loads(GOOD), schema_for("detection"))


def test_a_dead_letter_keeps_only_the_head_of_a_huge_key_so_it_can_always_be_sent():
    with pytest.raises(DecodeError) as info:
        decode(b"x", (Detection,))
    letter = dead_letter(info.value, topic="t", partition=0, offset=1, key=b"\xff" * 350_000, value=b"x")
    assert letter.key == "\ufffd" * 200 + "…" and len(letter.to_json()) < 2_000
    short = dead_letter(info.value, topic="t", partition=0, offset=1, key=b"cam-1", value=b"x")
    assert short.key == "cam-1"


def test_records_stamped_too_far_ahead_of_the_clock_are_refused_and_the_rest_pass():
    from pipeline.codec import not_ahead

    checked = not_ahead(lambda value: decode(value, (SensorReading,)), lambda r: r.time, 300, clock=lambda: T0)
    on_time = SensorReading(sensor_id="s", kind="gas", time=T0 + 299, value=1, grid_id="G")
    assert checked(on_time.to_json()) == on_time
    with pytest.raises(DecodeError) as info:
        checked(on_time.model_copy(update={"time": T0 + 3600}).to_json())
    assert info.value.reason == "invalid" and info.value.detail == "event time 3600 s ahead of this worker's clock (limit 300 s)"
    exempt = not_ahead(lambda value: decode(value, (SensorReading,)), lambda r: r.time, 300, clock=lambda: T0,
                       exempt=lambda r: r.sensor_id == "s")
    assert exempt(on_time.model_copy(update={"time": T0 + 3600}).to_json()).time == T0 + 3600
