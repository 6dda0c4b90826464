"""deploy/swarm/stack.yml (and the Kubernetes manifests), checked without a cluster.

Both are written from the modality registry (``python -m scripts.deploy_files``); the committed files must be
what it writes. The Swarm stack is read as YAML for what docs/deploy.md promises (dnsrr everywhere, placement by
node label, the gateway published in host mode, no volume shared between hosts, a worker and a model server per
modality) and, where the docker CLI is installed, interpolated by ``docker stack config`` (client side: no
daemon needed). The stack runs for real across three namespaced hosts in ``make test-multihost``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts import deploy_files
from shared.registry import BUILTIN, FUSION_QUEUE, VISION_QUEUE, ModalityEntry
from shared.settings import MODALITIES
from tests import REPO

STACK_FILE = REPO / "deploy" / "swarm" / "stack.yml"
CORE_SERVICES = ("redis", "s3", "gateway", FUSION_QUEUE)
IMAGE = re.compile(r"^\$\{EMPATHY_REGISTRY:-\}empathy/(?P<kind>[a-z0-9-]+):\$\{EMPATHY_TAG:-latest\}$")
PASSED_THROUGH = {"EMPATHY_FUSION_CUTOFF_HZ": "0.0", "EMPATHY_TASK_VISIBILITY_TIMEOUT_S": "3600",
                  "EMPATHY_TASK_RESTORE_INTERVAL_S": "60"}  # the settings' defaults
S3_SECRETS = {"s3_access_key", "s3_secret_key"}


@pytest.fixture(scope="module")
def stack() -> dict:
    return yaml.safe_load(STACK_FILE.read_text())


def role(service: dict) -> str:
    """The node role a service is placed on (its one placement constraint)."""
    constraints = service["deploy"]["placement"]["constraints"]
    assert len(constraints) == 1, constraints
    match = re.fullmatch(r"node\.labels\.empathy\.role == (\w+)", constraints[0])
    assert match, constraints[0]
    return match.group(1)


def secret_names(service: dict) -> set[str]:
    return {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}


def test_the_committed_deploy_files_are_what_the_registry_writes() -> None:
    for path, text in deploy_files.rendered().items():
        assert path.read_text() == text, f"{path.name} is stale: run python -m scripts.deploy_files"
    assert subprocess.run([sys.executable, "-m", "scripts.deploy_files", "--check"], cwd=REPO,
                          capture_output=True, timeout=60).returncode == 0


def test_the_passed_through_defaults_are_the_settings() -> None:
    """A variable left unset in the deploying shell gets the default shared.settings declares."""
    import dataclasses

    from shared.settings import Settings

    defaults = {f"EMPATHY_{f.name.upper()}": str(f.default) for f in dataclasses.fields(Settings)}
    assert {variable: defaults[variable] for variable in PASSED_THROUGH} == PASSED_THROUGH
    assert {k: str(v) for k, v in deploy_files.PASSED_THROUGH.items()} == PASSED_THROUGH


def test_the_check_mode_finds_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "stack.yml"
    stale.write_text(STACK_FILE.read_text().replace("dnsrr", "vip", 1))
    monkeypatch.setattr(deploy_files, "rendered", lambda: {stale: STACK_FILE.read_text()})
    assert deploy_files.main(["--check"]) == 1
    assert stale.read_text() != STACK_FILE.read_text()  # --check writes nothing
    assert deploy_files.main([]) == 0 and stale.read_text() == STACK_FILE.read_text()


def test_the_stack_services_are_the_registry(stack: dict) -> None:
    expected = {*CORE_SERVICES, VISION_QUEUE, *MODALITIES, *(f"{m}-serving" for m in MODALITIES)}
    assert set(stack["services"]) == expected, set(stack["services"]) ^ expected


def test_every_service_is_dnsrr_and_placed_by_node_label(stack: dict) -> None:
    for name, service in stack["services"].items():
        assert service["deploy"]["endpoint_mode"] == "dnsrr", name  # no IPVS: no virtual IPs
        assert role(service) == ("core" if name in CORE_SERVICES else "worker"), name


def test_a_worker_and_a_model_server_per_modality_scaled_by_variables(stack: dict) -> None:
    services = stack["services"]
    for name in MODALITIES:
        worker, server = services[name], services[f"{name}-serving"]
        assert worker["command"] == [name] and worker["environment"]["WORKER_QUEUE"] == name
        assert IMAGE.match(worker["image"])["kind"] == "worker"
        assert worker["deploy"]["replicas"] == f"${{{name.upper()}_REPLICAS:-1}}"
        assert worker["environment"][f"EMPATHY_{name.upper()}_MODEL_SERVER"] == f"{name}-serving:8500"
        assert IMAGE.match(server["image"])["kind"] == "model-server"
        assert server["environment"]["MODEL_NAME"] == name
        assert server["environment"]["MODEL_BASE_PATH"] == "s3://${EMPATHY_S3_BUCKET:-empathy}/models"
        assert server["deploy"]["replicas"] == f"${{{name.upper()}_SERVING_REPLICAS:-1}}"
        assert secret_names(worker) == secret_names(server) == S3_SECRETS
    assert services[FUSION_QUEUE]["command"] == [FUSION_QUEUE]
    assert IMAGE.match(services[FUSION_QUEUE]["image"])["kind"] == "fusion"
    assert services[VISION_QUEUE]["deploy"]["replicas"] == "${VISION_REPLICAS:-0}"  # optional, like its profile


def test_images_are_the_projects_behind_a_registry_prefix(stack: dict) -> None:
    kinds = {name: IMAGE.match(service["image"]) for name, service in stack["services"].items()}
    assert all(kinds.values()), [n for n, m in kinds.items() if not m]
    assert {kinds["redis"]["kind"], kinds["s3"]["kind"], kinds["gateway"]["kind"]} == {"redis", "s3", "gateway"}
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", (REPO / "Dockerfile").read_text(), re.MULTILINE))
    assert {m["kind"] for m in kinds.values()} <= targets  # every image is a target of the one Dockerfile


def test_only_the_gateway_publishes_in_host_mode(stack: dict) -> None:
    for name, service in stack["services"].items():
        if name != "gateway":
            assert "ports" not in service, name
    (port,) = stack["services"]["gateway"]["ports"]
    assert port["mode"] == "host" and port["target"] == 8080  # no routing mesh without IPVS


def test_no_volume_is_shared_between_hosts(stack: dict) -> None:
    """Only Redis and the store have volumes: named, local to the core node they are placed on; no bind mount."""
    mounted = {name: service["volumes"] for name, service in stack["services"].items() if service.get("volumes")}
    assert mounted == {"redis": ["redis-data:/data"], "s3": ["s3-data:/data/s3"]}
    assert set(stack["volumes"]) == {"redis-data", "s3-data"}
    assert all(not spec or "driver" not in spec for spec in stack["volumes"].values())  # the local driver


def test_everything_uses_the_object_store_and_the_same_knobs(stack: dict) -> None:
    for name, service in stack["services"].items():
        if name in ("redis", "s3"):
            continue
        env = service["environment"]
        assert env["EMPATHY_STORAGE_BACKEND"] == "s3" and env["EMPATHY_S3_ENDPOINT_URL"] == "http://s3:8333", name
        assert env["EMPATHY_MODELS_URL"] == "s3://${EMPATHY_S3_BUCKET:-empathy}/models", name
        assert env["EMPATHY_S3_ACCESS_KEY_FILE"] == "/run/secrets/s3_access_key", name
        assert env["EMPATHY_S3_SECRET_KEY_FILE"] == "/run/secrets/s3_secret_key", name
        assert S3_SECRETS <= secret_names(service), name
        for variable, default in PASSED_THROUGH.items():  # from the deploying shell, else the settings' default
            assert env[variable] == f"${{{variable}:-{default}}}", (name, variable)
    assert stack["services"]["gateway"]["environment"]["EMPATHY_S3_CREATE_BUCKET"] == "true"


def test_secrets_are_swarm_secrets_and_the_api_keys_reach_only_the_gateway(stack: dict) -> None:
    assert set(stack["secrets"]) == {"api_keys", *S3_SECRETS}
    assert all(set(spec) == {"file"} for spec in stack["secrets"].values())
    holders = {name for name, service in stack["services"].items() if "api_keys" in secret_names(service)}
    assert holders == {"gateway"}


def test_a_sixth_modality_gets_its_worker_and_model_server() -> None:
    sixth = ModalityEntry("gaze", paper_weight=0.5, batch_size=32, vision=True, summary="gaze direction")
    services = yaml.safe_load(deploy_files.render_stack((*BUILTIN, sixth), ["plugins.gaze"]))["services"]
    assert services["gaze"]["command"] == ["gaze"] and role(services["gaze"]) == "worker"
    assert services["gaze"]["environment"]["EMPATHY_GAZE_MODEL_SERVER"] == "gaze-serving:8500"
    assert services["gaze"]["environment"]["EMPATHY_MODALITY_PLUGINS"] == "plugins.gaze"
    assert services["gaze-serving"]["environment"]["MODEL_NAME"] == "gaze"


def docker_with_stack_config() -> str | None:
    """A docker CLI that has `docker stack config` (Docker 20.10 of Debian does not), or None."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run([docker, "stack", "config", "--help"], capture_output=True, timeout=30)
    return docker if probe.returncode == 0 else None


@pytest.mark.skipif(docker_with_stack_config() is None, reason="no docker CLI with `docker stack config`")
def test_docker_stack_config_accepts_and_interpolates_the_stack() -> None:
    """The docker CLI's own stack loader (client side, no daemon): the file loads, variables interpolate."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANDMARKS_REPLICAS": "3",
           "EMPATHY_REGISTRY": "h1:5000/", "EMPATHY_TASK_VISIBILITY_TIMEOUT_S": "30"}
    result = subprocess.run([str(docker_with_stack_config()), "stack", "config", "-c", str(STACK_FILE)],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["landmarks"]["deploy"]["replicas"] == 3 and services["audio"]["deploy"]["replicas"] == 1
    assert services["landmarks"]["image"] == "h1:5000/empathy/worker:latest"
    assert services["audio"]["environment"]["EMPATHY_TASK_VISIBILITY_TIMEOUT_S"] == "30"
    assert services["audio"]["environment"]["EMPATHY_TASK_RESTORE_INTERVAL_S"] == "60"  # unset: the default
    assert all(value is not None for s in services.values() for value in (s.get("environment") or {}).values())
    assert all(s["deploy"]["endpoint_mode"] == "dnsrr" for s in services.values())
    assert services["gateway"]["ports"] == [{"mode": "host", "target": 8080, "published": 8080, "protocol": "tcp"}]


# --- Kubernetes --------------------------------------------------------------------------------------------------

KUBERNETES_FILE = REPO / "deploy" / "kubernetes" / "empathy.yaml"
# KEDA's ScaledObject (keda.sh/v1alpha1) as its documentation lists it (keda.sh/docs/2.x/reference/scaledobject-spec,
# keda.sh/docs/2.x/scalers/redis-lists): a CRD, so kubernetes-validate has no schema for it. Top-level spec fields
# and the redis trigger's metadata; the required ones are what the manifests must set.
KEDA_SPEC_FIELDS = {"scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod", "idleReplicaCount",
                    "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers"}
KEDA_TARGET_FIELDS = {"apiVersion", "kind", "name", "envSourceContainerName"}
KEDA_REDIS_FIELDS = {"address", "host", "port", "usernameFromEnv", "passwordFromEnv", "listName", "listLength",
                     "activationListLength", "enableTLS", "unsafeSsl", "databaseIndex", "addressFromEnv",
                     "hostFromEnv", "portFromEnv"}
KEDA_INTEGERS = ("pollingInterval", "cooldownPeriod", "minReplicaCount", "maxReplicaCount")


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    return [doc for doc in yaml.safe_load_all(KUBERNETES_FILE.read_text()) if doc]


def objects_of(manifests: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in manifests if o["kind"] == kind}


def test_every_kubernetes_object_validates_for_the_declared_version(manifests: list[dict]) -> None:
    """kubernetes-validate (offline JSON schemas of the Kubernetes API), strict: unknown fields fail too."""
    import kubernetes_validate

    version = deploy_files.KUBERNETES_VERSION
    assert f"Kubernetes {version}+" in KUBERNETES_FILE.read_text().split("---")[0]
    validated = 0
    for obj in manifests:
        if obj["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: checked against KEDA's documented fields below
        assert kubernetes_validate.validate(obj, version, strict=True) == version, obj["metadata"]["name"]
        validated += 1
    assert validated == len(manifests) - len(MODALITIES)
    broken = next(o for o in manifests if o["kind"] == "Deployment")  # the validator does fail on a wrong field
    broken = {**broken, "spec": {**broken["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_the_kubernetes_objects_are_the_registry(manifests: list[dict]) -> None:
    deployments, services = objects_of(manifests, "Deployment"), objects_of(manifests, "Service")
    assert set(deployments) == {"redis", "s3", "gateway", FUSION_QUEUE, *MODALITIES,
                                *(f"{m}-serving" for m in MODALITIES)}
    assert set(services) == {"redis", "s3", "gateway", *(f"{m}-serving" for m in MODALITIES)}
    assert set(objects_of(manifests, "ScaledObject")) == set(MODALITIES)
    assert [o["metadata"]["name"] for o in manifests if o["kind"] == "Namespace"] == ["empathy"]
    assert all(o["metadata"].get("namespace") == "empathy" for o in manifests if o["kind"] != "Namespace")
    for name in MODALITIES:
        (worker,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert worker["args"] == [name] and worker["image"] == "empathy/worker:latest"
        assert "replicas" not in deployments[name]["spec"]  # KEDA owns them
        (server,) = deployments[f"{name}-serving"]["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e["value"] for e in server["env"]}
        assert env == {"MODEL_NAME": name, "MODEL_BASE_PATH": "s3://empathy/models"}
        assert {p["port"] for p in services[f"{name}-serving"]["spec"]["ports"]} == {8500, 8501}
    config = objects_of(manifests, "ConfigMap")["empathy-env"]["data"]
    assert config["EMPATHY_STORAGE_BACKEND"] == "s3" and config["EMPATHY_MODELS_URL"] == "s3://empathy/models"
    for name in MODALITIES:
        assert config[f"EMPATHY_{name.upper()}_MODEL_SERVER"] == f"{name}-serving:8500"


def test_every_container_has_requests_a_readiness_probe_and_a_user(manifests: list[dict]) -> None:
    for name, deployment in objects_of(manifests, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001, name
        for container in pod["containers"]:
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert "readinessProbe" in container, name


def test_the_secret_is_referenced_never_inlined(manifests: list[dict]) -> None:
    assert not [o for o in manifests if o["kind"] == "Secret"]
    assert "kubectl -n empathy create secret generic empathy-secrets" in KUBERNETES_FILE.read_text()
    holders = {}
    for name, deployment in objects_of(manifests, "Deployment").items():
        for volume in deployment["spec"]["template"]["spec"].get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] == "empathy-secrets", name
                holders[name] = {item["key"] for item in volume["secret"]["items"]}
    assert holders.pop("gateway") == {"api_keys", *S3_SECRETS}
    assert "redis" not in holders and all(keys == S3_SECRETS for keys in holders.values()), holders


def test_no_volume_is_shared_between_pods(manifests: list[dict]) -> None:
    claims = objects_of(manifests, "PersistentVolumeClaim")
    assert set(claims) == {"redis-data", "s3-data"}
    assert all(c["spec"]["accessModes"] == ["ReadWriteOnce"] for c in claims.values())
    used = {}
    for name, deployment in objects_of(manifests, "Deployment").items():
        for volume in deployment["spec"]["template"]["spec"].get("volumes", []):
            assert set(volume) & {"secret", "emptyDir", "persistentVolumeClaim"}, (name, volume)
            if "persistentVolumeClaim" in volume:
                used[volume["persistentVolumeClaim"]["claimName"]] = name
                assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    assert used == {"redis-data": "redis", "s3-data": "s3"}


def test_the_scaled_objects_have_keda_s_documented_shape(manifests: list[dict]) -> None:
    deployments, services = objects_of(manifests, "Deployment"), objects_of(manifests, "Service")
    redis_port = services["redis"]["spec"]["ports"][0]["port"]
    for name, scaled in objects_of(manifests, "ScaledObject").items():
        assert scaled["apiVersion"] == "keda.sh/v1alpha1"
        spec = scaled["spec"]
        assert set(spec) <= KEDA_SPEC_FIELDS and set(spec["scaleTargetRef"]) <= KEDA_TARGET_FIELDS, name
        assert all(isinstance(spec[key], int) for key in KEDA_INTEGERS), name
        assert spec["minReplicaCount"] == 0 < spec["maxReplicaCount"]  # scale to zero allowed
        target = spec["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name) and name in deployments
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "redis" and set(trigger["metadata"]) <= KEDA_REDIS_FIELDS, name
        meta = trigger["metadata"]
        assert all(isinstance(value, str) for value in meta.values()), name  # KEDA's metadata is a string map
        assert {"listName", "listLength", "address"} <= set(meta)
        assert meta["address"] == f"redis.empathy.svc.cluster.local:{redis_port}"
        assert int(meta["listLength"]) > 0
        config_db = objects_of(manifests, "ConfigMap")["empathy-env"]["data"]["EMPATHY_REDIS_URL"].rsplit("/", 1)[1]
        assert meta["databaseIndex"] == config_db
        assert meta["listName"] == deploy_files.entries()[MODALITIES.index(name)].queue


def test_the_keda_list_is_the_list_celery_fills(manifests: list[dict], redis_url: str) -> None:
    """A job sent the gateway's way (services.celery_app.dispatch_job) to a real Redis with no worker: the Redis
    list each ScaledObject watches (``listName``) is the one that grows, by one task, and no other queue's does."""
    import redis

    from services.celery_app import create_app, dispatch_job
    from shared.settings import Settings
    from tests.ensemble_support import redis_db

    url = redis_db(redis_url, 6)
    client = redis.Redis.from_url(url)
    client.flushdb()
    app = create_app(Settings(redis_url=url), dispatch_only=True)
    watched = {name: o["spec"]["triggers"][0]["metadata"]["listName"]
               for name, o in objects_of(manifests, "ScaledObject").items()}
    try:
        for number, (modality, list_name) in enumerate(watched.items()):
            before = {name: client.llen(name) for name in watched.values()}
            dispatch_job(app, f"keda{number:028d}", [modality])
            after = {name: client.llen(name) for name in watched.values()}
            assert after[list_name] == before[list_name] + 1, (modality, before, after)
            assert {n: c for n, c in after.items() if n != list_name} == \
                {n: c for n, c in before.items() if n != list_name}
        assert client.type(watched[MODALITIES[0]]) == b"list"
    finally:
        client.flushdb()
        app.close()
