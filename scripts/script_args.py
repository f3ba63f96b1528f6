"""What the research scripts (crowd_finetune.py, fire_finetune.py) share on their command line."""

from __future__ import annotations

import argparse
import logging

SHARED_HELP = "models and data (default: the project's shared_dir, GUANJIA_SHARED_DIR or ../shared)"


def command_parser(description: str | None) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """(parser, subcommands) of a research script, with timestamped INFO logging set up."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser, parser.add_subparsers(dest="command", required=True)


def parse_with_shared(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse, then fill an unset ``--shared`` from the project's settings. Only commands that take
    ``--shared`` load the settings: the GPU machine's workers never do."""
    args = parser.parse_args()
    if getattr(args, "shared", "") is None:
        from pipeline.settings import Settings

        args.shared = Settings().shared_dir
    return args
