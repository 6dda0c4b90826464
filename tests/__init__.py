"""The test suite: unit/<package>/ mirrors the code, integration/ runs real processes together."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
