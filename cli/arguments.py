"""Argument types shared by the commands that take a video: checked before any work starts.

The job request's own options (--subject, --modalities, --fusion, --listener) come from
:func:`jobs.request.add_arguments`, checked by the request's one parser.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def default_out(video: Path) -> Path:
    """``<video stem>_valence.csv`` in the current folder: a result never overwrites its input's folder."""
    return Path(f"{video.stem}_valence.csv")


def existing_file(text: str) -> Path:
    """A path that must name a file now: a typo is reported before models load or an upload starts."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {path}")
    return path
