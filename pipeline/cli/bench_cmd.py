"""``guanjia bench``: benchmark commands. Each prints figures and ratios; ``--json`` prints one object."""

from __future__ import annotations

import click

from pipeline.cli import LazyGroup

BENCHES: dict[str, str] = {
    "config": "pipeline.cli.bench_config:bench_config",
    "ingest": "ingest.bench:bench_ingest",
    "detect": "detectors.bench:bench_detect",
    "events": "pipeline.bench_events:bench_events",
    "page": "pipeline.web.bench:bench_page",
    "density": "detectors.density_bench:bench_density",
    "scale": "pipeline.bench_scale:bench_scale",
    "all": "pipeline.cli.bench_all:bench_all",
}


@click.group(cls=LazyGroup, lazy=BENCHES)
def bench() -> None:
    """Measure speed and memory side by side with a baseline; figures go in docs/benchmarks.md.

    \b
    Example:
      guanjia bench config --cameras 450000 --json
    """
