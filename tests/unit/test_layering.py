"""The folders are layers: each package imports only from the layers below it (lazy imports included).

shared (the domain library) <- serving (model store, serving client, wire protocol), synthetic (the data
generator) <- jobs (job request, store and storage) <- training, services, gateway <- cli (the command).
empathy_client (the Python client and the callbacks' signature scheme) stands apart: the standard library and
requests only, so a user's program needs nothing of the service; the service signs with its webhooks module.
A lazy import inside a function counts as much as one at the top: both tie the packages together.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import REPO

# package -> the project packages it must never import
ABOVE_SHARED = {"serving", "synthetic", "jobs", "gateway", "services", "training", "cli", "bench", "scripts", "tests"}
FORBIDDEN: dict[str, set[str]] = {
    "empathy_client": ABOVE_SHARED | {"shared", "numpy", "flask", "redis", "celery"},
    "shared": ABOVE_SHARED,
    "serving": ABOVE_SHARED - {"serving"},
    "synthetic": ABOVE_SHARED - {"synthetic"},
    "jobs": ABOVE_SHARED - {"jobs"},
    # sends tasks by name only; never TensorFlow (serving.servable loads SavedModels)
    "gateway": {"services.tasks", "serving.servable", "synthetic", "training", "cli", "bench", "scripts", "tests"},
    "services": {"gateway", "synthetic", "training", "cli", "bench", "scripts", "tests"},
    "training": {"gateway", "services", "cli", "bench", "scripts", "tests"},
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every absolute module an ``import`` or ``from ... import`` names in ``path``, with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def violations(package: str) -> list[str]:
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        for line, module in imported_modules(path):
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN[package]):
                bad.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_each_package_imports_only_the_layers_below_it(package: str) -> None:
    assert violations(package) == []


def test_the_check_sees_lazy_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "lazy.py"
    source.write_text("def f():\n    from gateway.app import create_app\n    import training.trainer\n")
    assert [m for _, m in imported_modules(source)] == ["gateway.app", "gateway.app.create_app", "training.trainer"]


def test_importing_the_gateway_builds_no_celery_app_and_loads_no_tensorflow() -> None:
    """The gateway builds its own (dispatch-only) Celery app in its factory; the workers' app exists only where
    ``services.celery_app.app`` is asked for (the tasks, ``celery -A``)."""
    probe = ("import sys, celery._state as state\n"
             "import gateway.app, gateway.jobs_api, gateway.openapi\n"
             "import services.celery_app as c\n"
             "assert 'app' not in vars(c) and not list(state._apps), list(state._apps)\n"
             "assert 'tensorflow' not in sys.modules and 'services.tasks' not in sys.modules\n"
             "assert c.app is c.app and len(list(state._apps)) == 1\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-2000:]
