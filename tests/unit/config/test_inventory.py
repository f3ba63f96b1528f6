"""Inventory CSV import, and its errors as file.csv:ROW: column: message."""

from __future__ import annotations

from pipeline.config import load_config

from .conftest import issues_of, only

GROUP = """
groups:
  - id: humen
    town: Humen
    village: Zhen'an
    fire: {threshold: 0.8}
    inventory: cams/inventory.csv
"""


def test_rows_become_cameras_with_group_defaults_and_zones(write, monkeypatch, tmp_path):
    monkeypatch.setenv("GJ_PW", "pw")
    path = write("city.yaml", GROUP)
    write(
        "cams/inventory.csv",
        "id,url,grid,village,town,lat,lon,enabled,zone_name,zone_polygon,zone_area_m2,zone_crowd_threshold\n"
        "hm-1,rtsp://admin:${GJ_PW}@10.0.0.1/s,G1,,,22.8,113.6,,gate,0.1 0.1;0.9 0.1;0.5 0.9,50,0.5\n"
        "hm-2,clips/a.mp4,G2,Baisha,Changan,,,false,a|b,0 0;0.5 0;0.5 1|0.5 0;1 0;1 1,|,3|4\n"
        "hm-3,rtsp://10.0.0.3/s,G2,,,,,,,,,\n",
    )
    city = load_config([path])
    one, two, three = (city.camera(f"hm-{i}") for i in (1, 2, 3))
    assert one.url == "rtsp://admin:pw@10.0.0.1/s" and (one.lat, one.lon) == (22.8, 113.6)
    assert (one.town, one.village, one.group_id) == ("Humen", "Zhen'an", "humen")
    assert one.zones[0].name == "gate" and one.zones[0].polygon == [(0.1, 0.1), (0.9, 0.1), (0.5, 0.9)]
    assert (one.zones[0].area_m2, one.zones[0].crowd_threshold) == (50, 0.5)
    assert two.url == str(tmp_path / "cams" / "clips" / "a.mp4") and two.enabled is False
    assert (two.town, two.village) == ("Changan", "Baisha")
    assert [(z.name, z.crowd_threshold, z.area_m2) for z in two.zones] == [("a", 3, None), ("b", 4, None)]
    assert three.zones == [] and three.lat is None
    assert one.settings is three.settings and one.settings.fire.threshold == 0.8
    assert city.source_files == ["city.yaml", "cams/inventory.csv"]
    assert city.summary()["zones"] == 3 and city.summary()["grid_cells"] == 2


def test_csv_errors_name_file_row_and_column(write):
    path = write("city.yaml", GROUP)
    write(
        "cams/inventory.csv",
        "id,url,grid,lat,zone_name,zone_polygon\n"
        "hm-1,rtsp://10.0.0.1/s,G1,north,,\n"
        "hm-2,ftp://admin:pw@10.0.0.2/s,G1,,,\n"
        "hm-3,rtsp://10.0.0.3/s,,91,,\n"
        "hm-4,rtsp://10.0.0.4/s,G1,,z,0 0;1 1\n"
        "hm-5,rtsp://10.0.0.5/s,G1,,z,0 0;1\n"
        "hm-6,rtsp://10.0.0.6/s,G1,,z,0 0;1 1;1 0;0 1\n"
        "hm-1,rtsp://10.0.0.7/s,G1,,,\n"
        "hm-8,rtsp://10.0.0.8/s\n",
    )
    issues = issues_of(path)
    lines = {str(i) for i in issues}
    csv = "cams/inventory.csv"
    assert f"{csv}:2: lat: input should be a valid number, unable to parse string as a number" in lines
    assert any(line.startswith(f"{csv}:3: url: unsupported URL scheme 'ftp'") and "pw" not in line for line in lines)
    assert f"{csv}:4: grid: string should have at least 1 character" in lines
    assert f"{csv}:4: lat: input should be less than or equal to 90" in lines
    assert any(line.startswith(f"{csv}:5: zone_polygon: polygon needs at least 3 points") for line in lines)
    assert any(line.startswith(f"{csv}:6: zone_polygon: point 1 '1' is not 'x y'") for line in lines)
    assert any(line.startswith(f"{csv}:7: zone_polygon: polygon is self-intersecting") for line in lines)
    assert f"{csv}:8: id: duplicate camera id 'hm-1' (first defined at {csv}:2)" in lines
    assert f"{csv}:9: (row): expected 6 columns, found 2" in lines
    assert len(issues) == 9, sorted(lines)


def test_bad_header(write):
    path = write("city.yaml", GROUP)
    write("cams/inventory.csv", "id,ulr,grid,lat,lon,zone_polygon\n")
    issues = issues_of(path)
    assert "did you mean 'url'" in only(issues, "ulr").message
    assert only(issues, "url").message.startswith("missing required column")
    assert only(issues, "zone_name").message == "zone columns need a zone_name column"
    assert {(i.file, i.line, i.col) for i in issues} == {("cams/inventory.csv", 1, None)}


def test_duplicates_between_yaml_and_inventory(write):
    path = write(
        "city.yaml",
        GROUP + "  - id: inline\n    cameras:\n      - {id: hm-1, url: 'rtsp://h/x', grid: G9}\n",
    )
    write("cams/inventory.csv", "id,url,grid\nhm-1,rtsp://10.0.0.1/s,G1\n")
    issue = only(issues_of(path), "groups[1].cameras[0].id")
    assert (issue.file, issue.line) == ("city.yaml", 9)
    assert "first defined at cams/inventory.csv:2" in issue.message


def test_unreadable_inventory_points_at_the_yaml_line(write):
    path = write("city.yaml", GROUP)
    issue = only(issues_of(path), "groups[0].inventory")
    assert (issue.file, issue.line, issue.col) == ("city.yaml", 6, 16)
    assert "cannot read inventory 'cams/inventory.csv'" in issue.message


def test_a_gbk_export_is_reported_as_not_utf8(write, tmp_path):
    path = write("city.yaml", GROUP)
    (tmp_path / "cams").mkdir()
    (tmp_path / "cams" / "inventory.csv").write_bytes("id,url,grid,village\nhm-1,rtsp://h/1,G1,镇安\n".encode("gbk"))
    issue = only(issues_of(path), "groups[0].inventory")
    assert issue.line == 6 and "not UTF-8 text" in issue.message and "save it as UTF-8" in issue.message
    assert "line 2, column 20: not UTF-8 text (byte 0xd5 at offset 39)" in issue.message  # where in the CSV


def test_a_bad_byte_deep_in_a_large_inventory_is_placed_by_its_line(write, tmp_path):
    path = write("city.yaml", GROUP)
    (tmp_path / "cams").mkdir()
    rows = "".join(f"hm-{i},rtsp://h/{i},G1,V\n" for i in range(20_000))  # past any read chunk
    (tmp_path / "cams" / "inventory.csv").write_bytes(b"id,url,grid,village\n" + rows.encode() + b"hm-x,rtsp://h/x,G1,\xff\n")
    issue = only(issues_of(path), "groups[0].inventory")
    assert "line 20002, column 20: not UTF-8 text (byte 0xff at offset 557819)" in issue.message


def test_the_same_inventory_in_two_groups_is_reported_at_the_second_group(write):
    write("cams.csv", "id,url,grid\nk1,rtsp://10.0.0.1/s,G1\nk2,rtsp://10.0.0.2/s,G1\n")
    write("parts/town.yaml", "groups:\n  - id: gc\n    inventory: ../cams.csv\n")
    path = write(
        "city.yaml",
        """
        include: [parts/town.yaml]
        groups:
          - id: ga
            inventory: cams.csv
          - id: gb
            inventory: ./cams.csv
        """,
    )
    issues = issues_of(path)  # the include is loaded first, so its group gc has the CSV
    ga, gb = only(issues, "groups[0].inventory"), only(issues, "groups[1].inventory")
    assert (ga.file, ga.line, ga.col, gb.line) == ("city.yaml", 4, 5, 6)
    assert ga.message.startswith("inventory cams.csv is already loaded by group gc (at parts/town.yaml:3)")
    assert gb.message.startswith("inventory ./cams.csv is already loaded by group gc (at parts/town.yaml:3)")
    assert len(issues) == 2, [str(i) for i in issues]  # no "duplicate camera id" pointing at the row itself
