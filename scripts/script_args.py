"""What the research scripts (crowd_finetune.py, fire_finetune.py) share on their command line."""

from __future__ import annotations

import argparse

SHARED_HELP = "models and data (default: the project's shared_dir, GUANJIA_SHARED_DIR or ../shared)"


def parse_with_shared(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse, then fill an unset ``--shared`` from the project's settings. Only commands that take
    ``--shared`` load the settings: the GPU machine's workers never do."""
    args = parser.parse_args()
    if getattr(args, "shared", "") is None:
        from pipeline.settings import Settings

        args.shared = Settings().shared_dir
    return args
