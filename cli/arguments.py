"""Argument types shared by the commands that take a video: checked before any work starts."""

from __future__ import annotations

import argparse
from pathlib import Path

from shared.settings import MODALITIES


def modalities(raw: str | None) -> list[str]:
    """A comma list of modality names, in the registry's order; empty or None = all of them."""
    if not raw:
        return list(MODALITIES)
    names = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = sorted(set(names) - set(MODALITIES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown modalities {unknown}; choose among {', '.join(MODALITIES)}")
    return [name for name in MODALITIES if name in names]


def listener(text: str) -> str:
    """A listener region spec (see shared.crops), checked before any work starts."""
    from shared.crops import check_listener_spec

    try:
        return check_listener_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def default_out(video: Path) -> Path:
    """``<video stem>_valence.csv`` in the current folder: a result never overwrites its input's folder."""
    return Path(f"{video.stem}_valence.csv")


def existing_file(text: str) -> Path:
    """A path that must name a file now: a typo is reported before models load or an upload starts."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {path}")
    return path
