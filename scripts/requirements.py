"""Print the project's requirements for some extras, one per line (``python3 scripts/requirements.py core vision``).

Why: the Dockerfile installs the dependencies of an image *before* copying the code, so a code change never
re-installs TensorFlow; and the offline compose test downloads exactly the same list into its wheelhouse.
pyproject.toml stays the only place the requirements are written. "core" is the base dependency list; extras
that name the project itself (``all = ["empathic-fusion[serving,...]"]``) are expanded. Standard library only.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def requirements(groups: list[str], pyproject: Path = PYPROJECT) -> list[str]:
    """The requirement strings of ``groups`` ("core" or extras), self-references expanded, without duplicates."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    self_ref = re.compile(rf"^{re.escape(project['name'])}\[([^\]]+)\]$")
    out: list[str] = []
    todo = list(groups)
    seen: set[str] = set()
    while todo:
        group = todo.pop(0)
        if group in seen:
            continue
        seen.add(group)
        if group == "core":
            lines = project["dependencies"]
        elif group in extras:
            lines = extras[group]
        else:
            raise SystemExit(f"unknown extra {group!r}; known: core, {', '.join(extras)}")
        for line in lines:
            match = self_ref.match(line.replace(" ", ""))
            if match:
                todo.extend(match.group(1).split(","))
            elif line not in out:
                out.append(line)
    return out


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1:] or ["core"])))
