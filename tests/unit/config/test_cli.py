"""``guanjia config validate|show`` and the file-kind dispatch."""

from __future__ import annotations

import json

from click.testing import CliRunner
from pydantic import Field

from ingest.settings import StrictModel
from pipeline.cli.config_cmd import config
from pipeline.config import kinds

CITY = """
groups:
  - id: g
    town: Humen
    cameras:
      - {id: c1, url: "rtsp://admin:${GJ_CLI_PW:-hunter2}@10.0.0.1/s", grid: G1, zones: [{name: z, polygon: [[0, 0], [1, 0], [1, 1]]}]}
      - {id: c2, url: "rtsp://10.0.0.2/s", grid: G2, enabled: false}
"""


class Roster(StrictModel):
    """A test-only file kind."""

    roster: list[str] = Field(..., min_length=1)


def run(*args: str):
    return CliRunner().invoke(config, list(args))


def test_validate_prints_a_one_line_summary(write):
    path = write("city.yaml", CITY)
    result = run("validate", str(path))
    assert result.exit_code == 0, result.output
    assert result.output == "ok: 1 file(s): 1 groups, 2 cameras (1 enabled), 1 zones, 2 grid cells, 1 towns\n"


def test_validate_lists_every_error_and_exits_1(write):
    path = write("bad.yaml", "groups:\n  - id: g\n    colour: red\n    cameras:\n      - {id: c1, url: 'ftp://h', grid: G1}\n")
    result = run("validate", str(path))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert "bad.yaml:3:5: groups[0].colour: unknown key 'colour'" in lines
    assert any(line.startswith("bad.yaml:5:23: groups[0].cameras[0].url: unsupported URL scheme 'ftp'") for line in lines)


def test_show_expands_and_redacts(write):
    path = write("city.yaml", CITY)
    result = run("show", str(path), "--camera", "c1", "--json")
    assert result.exit_code == 0, result.output
    cam = json.loads(result.output)
    assert cam["url"] == "rtsp://***@10.0.0.1/s" and "hunter2" not in result.output
    assert cam["town"] == "Humen" and cam["settings"]["rules"]["crowding"]["threshold"] == 20
    whole = run("show", str(path))
    assert whole.exit_code == 0 and "hunter2" not in whole.output and "id: c2" in whole.output
    missing = run("show", str(path), "--camera", "nope")
    assert missing.exit_code != 0 and "no camera 'nope'" in missing.output


def test_other_file_kinds_are_validated_by_their_model(write, monkeypatch):
    monkeypatch.setitem(kinds.FILE_KINDS, "roster", f"{__name__}:Roster")
    monkeypatch.setitem(kinds.FILE_KINDS, "ghost", "pipeline.no_such_module:Ghost")
    city, roster = write("city.yaml", CITY), write("roster.yaml", "roster: [a, b]\n")
    ghost = write("ghost.yaml", "ghost: 1\n")
    result = run("validate", str(city), str(roster), str(ghost))
    assert result.exit_code == 0, result.output
    assert "roster.yaml: valid roster" in result.output
    assert "ghost.yaml: not validated: ghost file: model pipeline.no_such_module:Ghost is not available" in result.output
    bad = write("bad-roster.yaml", "roster: []\nextra: 1\n")
    result = run("validate", str(bad))
    assert result.exit_code == 1
    assert "bad-roster.yaml:1:9: roster: list should have at least 1 item after validation, not 0" in result.output
    assert "bad-roster.yaml:2:1: extra: unknown key 'extra'" in result.output
