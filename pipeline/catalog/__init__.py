"""Event catalog: taxonomy lookup by code or trigger, loaded from configs/catalog.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.catalog.models import Catalog, CatalogFile, Item, Matter, RoutingTable
from pipeline.settings import REPO_ROOT

DEFAULT_CATALOG = REPO_ROOT / "configs" / "catalog.yaml"


@dataclass(frozen=True)
class CatalogIndex:
    """Fast lookups over a validated :class:`CatalogFile`."""

    file: CatalogFile
    items: dict[str, Item]
    matters: dict[str, Matter]
    by_trigger: dict[str, Item]

    @classmethod
    def build(cls, file: CatalogFile) -> CatalogIndex:
        items: dict[str, Item] = {}
        matters: dict[str, Matter] = {}
        for cat in file.catalog.categories:
            for sub in cat.subcategories:
                for matter in sub.matters:
                    matters[matter.code] = matter
                    for item in matter.items:
                        items[item.code] = item
        by_trigger = {item.trigger: item for item in items.values() if item.trigger}
        return cls(file=file, items=items, matters=matters, by_trigger=by_trigger)

    @property
    def routing(self) -> RoutingTable:
        return self.file.routing

    def for_trigger(self, trigger: str) -> Item:
        """The item used for a rule output; a clear error when the catalog lacks it."""
        try:
            return self.by_trigger[trigger]
        except KeyError:
            raise KeyError(f"catalog has no item with trigger {trigger!r}; add one to configs/catalog.yaml") from None

    def matter_of(self, item: Item) -> Matter:
        return self.matters[item.code.rsplit(".", 1)[0]]


def load_catalog(path: Path | str = DEFAULT_CATALOG) -> CatalogIndex:
    """Load and validate a catalog file (errors carry file:line via the config loader when available)."""
    path = Path(path)
    try:
        from pipeline.config import load_model_file  # the config loader gives file:line errors
    except ImportError:
        load_model_file = None
    if load_model_file is not None:
        return CatalogIndex.build(load_model_file(path, CatalogFile))
    with path.open(encoding="utf-8") as fh:
        return CatalogIndex.build(CatalogFile.model_validate(yaml.safe_load(fh)))


__all__ = ["DEFAULT_CATALOG", "Catalog", "CatalogFile", "CatalogIndex", "load_catalog"]
