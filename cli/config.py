"""``empathy config``: the configuration reference, or the values this process would run with."""

from __future__ import annotations

import argparse
from dataclasses import fields

from shared.settings import PREFIX, get_settings, markdown_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="empathy config", description=__doc__)
    parser.add_argument("--markdown", action="store_true", help="print the reference table (docs/configuration.md)")
    args = parser.parse_args(argv)
    if args.markdown:
        print("# Configuration\n\nEvery process reads these environment variables (defaults in `shared/settings.py`).\n")
        print(markdown_table(), end="")
        return 0
    settings = get_settings()
    for f in fields(settings):
        value = getattr(settings, f.name)
        if f.metadata.get("secret") and value:
            value = "<set, not shown>"
        print(f"{PREFIX}{f.name.upper()}={value}")
    return 0
