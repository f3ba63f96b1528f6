"""Catalog files (configs/catalog.yaml): cross-item errors carry the item's file, line and key path."""

from __future__ import annotations

from typing import get_args

import pytest
import yaml
from pydantic import ValidationError

from pipeline.catalog import DEFAULT_CATALOG, load_catalog
from pipeline.catalog.models import CatalogFile, Trigger
from pipeline.config import ConfigError, ConfigIssue, load_model_file
from pipeline.config.kinds import validate_files

from .conftest import only

TRIGGERS: list[str] = list(get_args(Trigger))
ITEMS = "catalog.categories[0].subcategories[0].matters[0].items"
HEAD = """\
catalog:
  version: "t"
  categories:
    - code: "01"
      name_zh: 类
      name_en: Category
      subcategories:
        - code: "01.01"
          name_zh: 子类
          name_en: Subcategory
          matters:
            - code: "01.01.01"
              name_zh: 事项
              name_en: Matter
              department: 部门
              items:
"""
FIRST_ITEM_LINE = HEAD.count("\n") + 1  # items[i] is on line FIRST_ITEM_LINE + i
ITEM = ('                - {{code: "{code}", name_zh: 项, name_en: Item, severity: low, unit_type: grid, '
        "deadline_minutes: 10, requirement: 核实, legal_basis: 法, trigger: {trigger}}}\n")
TAIL = """\
routing:
  levels: {grid: {unit: "{grid}"}, village: {unit: "{village}"}, town: {unit: "{town}"}, city: {unit: 市}}
"""


def catalog(items: list[tuple[str, str | None]]) -> str:
    """A catalog with one category, subcategory and matter; ``items`` as (code, trigger), one per line."""
    lines = [ITEM.format(code=code, trigger=trigger if trigger else "null") for code, trigger in items]
    return HEAD + "".join(lines) + TAIL


def good_items() -> list[tuple[str, str | None]]:
    """One item per trigger, codes 01.01.01.01 … 01.01.01.08."""
    return [(f"01.01.01.{n:02d}", trigger) for n, trigger in enumerate(TRIGGERS, 1)]


def catalog_issues(path) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        load_model_file(path, CatalogFile)
    return info.value.issues


def col_of(text: str, line: int, needle: str) -> int:
    """1-based column of ``needle`` on ``line`` (where its value starts)."""
    return text.splitlines()[line - 1].index(needle) + 1


def test_the_test_catalog_is_valid(write):
    path = write("cat.yaml", catalog(good_items()))
    assert set(load_catalog(path).by_trigger) == set(TRIGGERS)


def test_missing_trigger_is_reported_at_the_catalog_key(write):
    items = [(code, trigger) for code, trigger in good_items() if trigger != "crowding"]
    path = write("cat.yaml", catalog(items))
    issue = only(catalog_issues(path), "catalog")
    assert (issue.file, issue.line, issue.col) == ("cat.yaml", 2, 3)
    assert issue.message == "no catalog item has trigger 'crowding'; every trigger the rules raise needs one"


def test_every_missing_trigger_is_named(write):
    path = write("cat.yaml", catalog(good_items()[:6]))
    messages = {i.message for i in catalog_issues(path)}
    assert messages == {f"no catalog item has trigger {t!r}; every trigger the rules raise needs one" for t in TRIGGERS[6:]}


def test_duplicate_trigger_points_at_the_second_item(write):
    items = [*good_items(), ("01.01.01.09", TRIGGERS[2])]
    text = catalog(items)
    path = write("cat.yaml", text)
    issue = only(catalog_issues(path), f"{ITEMS}[8].trigger")
    line = FIRST_ITEM_LINE + 8
    assert (issue.file, issue.line, issue.col) == ("cat.yaml", line, col_of(text, line, TRIGGERS[2]))
    assert issue.message == (f"trigger {TRIGGERS[2]!r} is already on item 01.01.01.03 (at {ITEMS}[2].trigger); "
                             "each trigger belongs to one item")


def test_item_code_outside_its_matter(write):
    items = good_items()
    items[3] = ("01.02.01.04", items[3][1])
    text = catalog(items)
    path = write("cat.yaml", text)
    issue = only(catalog_issues(path), f"{ITEMS}[3].code")
    line = FIRST_ITEM_LINE + 3
    assert (issue.file, issue.line, issue.col) == ("cat.yaml", line, col_of(text, line, '"01.02.01.04"'))
    assert issue.message == "code 01.02.01.04 does not extend its parent's code 01.01.01"


def test_matter_code_outside_its_subcategory(write):
    text = catalog(good_items()).replace('code: "01.01.01"\n', 'code: "01.02.01"\n')
    path = write("cat.yaml", text)
    issues = catalog_issues(path)
    issue = only(issues, "catalog.categories[0].subcategories[0].matters[0].code")
    assert (issue.file, issue.line, issue.col) == ("cat.yaml", 12, 21)
    assert issue.message == "code 01.02.01 does not extend its parent's code 01.01"
    assert only(issues, f"{ITEMS}[0].code").message == "code 01.01.01.01 does not extend its parent's code 01.02.01"


def test_duplicate_code_points_at_the_second_item(write):
    items = good_items()
    items[5] = ("01.01.01.02", items[5][1])
    text = catalog(items)
    path = write("cat.yaml", text)
    issue = only(catalog_issues(path), f"{ITEMS}[5].code")
    line = FIRST_ITEM_LINE + 5
    assert (issue.file, issue.line, issue.col) == ("cat.yaml", line, col_of(text, line, '"01.01.01.02"'))
    assert issue.message == f"duplicate code 01.01.01.02 (first at {ITEMS}[1].code)"


def test_every_problem_is_reported_at_once(write):
    items = good_items()
    items[1] = ("01.01.01.01", items[1][1])  # duplicate code
    items[4] = ("02.01.01.05", items[4][1])  # does not nest
    items[6] = (items[6][0], TRIGGERS[0])  # duplicate trigger, and TRIGGERS[6] is missing
    path = write("cat.yaml", catalog(items))
    issues = catalog_issues(path)
    assert [(i.line, i.key_path) for i in issues] == [
        (2, "catalog"),
        (FIRST_ITEM_LINE + 1, f"{ITEMS}[1].code"),
        (FIRST_ITEM_LINE + 4, f"{ITEMS}[4].code"),
        (FIRST_ITEM_LINE + 6, f"{ITEMS}[6].trigger"),
    ]
    assert str(issues[0]) == (f"cat.yaml:2:3: catalog: no catalog item has trigger {TRIGGERS[6]!r}; "
                              "every trigger the rules raise needs one")


def test_config_validate_reports_catalog_positions(write):
    items = [(code, trigger) for code, trigger in good_items() if trigger != "crowding"]
    items[0] = ("01.01.01.01", "fire.sensor")
    path = write("cat.yaml", catalog(items))
    result = validate_files([path])
    assert not result.others and {(i.file, i.line, i.key_path) for i in result.issues} == {
        ("cat.yaml", 2, "catalog"),
        ("cat.yaml", FIRST_ITEM_LINE + 1, f"{ITEMS}[1].trigger"),
    }


def test_without_the_config_loader_the_location_is_still_the_item(write):
    items = good_items()
    items[2] = ("01.01.01.02", items[2][1])
    data = yaml.safe_load(catalog(items))
    with pytest.raises(ValidationError) as info:
        CatalogFile.model_validate(data)
    [error] = info.value.errors()
    assert error["loc"] == ("catalog", "categories", 0, "subcategories", 0, "matters", 0, "items", 2, "code")


def test_shipped_catalog_validates_and_binds_every_trigger():
    index = load_catalog(DEFAULT_CATALOG)
    assert set(index.by_trigger) == set(TRIGGERS)
    result = validate_files([DEFAULT_CATALOG])
    assert not result.issues and result.others == {str(DEFAULT_CATALOG): "catalog"}
