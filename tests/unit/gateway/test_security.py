"""Security of the gateway against a real Redis: API keys, per-key jobs, secrets kept out of Redis and logs.

Every refusal is checked on every route; a job of another key must look exactly like a job that does not
exist. ``empathy submit`` is exercised against the real app served over HTTP on a free port.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from werkzeug.serving import make_server

from gateway.app import create_app
from gateway.auth import AuthConfigError
from jobs.store import new_job_id, valid_job_id
from shared.ports import free_port
from tests.ensemble_support import (
    API_TOKENS,
    bearer,
    ensemble_env,
    environment,
    redis_db,
    write_tiny_video,
)

ROUTES = ("", "/result", "/plot.png")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_video(tmp_path_factory.mktemp("video") / "clip.mp4")


def submit(client, video: Path, headers: dict[str, str]):  # noqa: ANN001, ANN201
    return client.post("/v1/jobs", data={"video": (io.BytesIO(video.read_bytes()), "clip.mp4"), "modalities": "audio"},
                       content_type="multipart/form-data", headers=headers)


def test_requests_without_a_valid_key_are_refused(keyless_client, env, video: Path) -> None:  # noqa: ANN001
    job = submit(keyless_client, video, bearer("alice")).get_json()
    wrong = [{}, {"Authorization": "Bearer not-a-key-of-this-gateway"}, {"Authorization": API_TOKENS["alice"]},
             {"Authorization": f"Basic {API_TOKENS['alice']}"}, {"Authorization": "Bearer "}]
    for headers in wrong:
        response = submit(keyless_client, video, headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "API key" in response.get_json()["error"]
        for suffix in ROUTES:
            assert keyless_client.get(f"/v1/jobs/{job['id']}{suffix}", headers=headers).status_code == 401
        assert keyless_client.delete(f"/v1/jobs/{job['id']}", headers=headers).status_code == 401
    jobs = Path(env["EMPATHY_STORAGE_DIR"]) / "jobs"
    assert [p.name for p in jobs.iterdir()] == [job["id"]]  # refused uploads kept nothing
    assert keyless_client.get("/healthz").status_code == 200  # probes need no key
    assert keyless_client.get("/openapi.json").get_json()["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_a_job_is_visible_only_to_the_key_that_created_it(keyless_client, video: Path) -> None:  # noqa: ANN001
    alice = bearer("alice")
    job = submit(keyless_client, video, alice).get_json()
    unknown = "0123456789abcdef0123456789abcdef"
    for suffix in ROUTES:
        mine = keyless_client.get(f"/v1/jobs/{job['id']}{suffix}", headers=alice)
        assert mine.status_code == (200 if suffix == "" else 409)
        theirs = keyless_client.get(f"/v1/jobs/{job['id']}{suffix}", headers=bearer("bob"))
        nobody = keyless_client.get(f"/v1/jobs/{unknown}{suffix}", headers=bearer("bob"))
        assert theirs.status_code == nobody.status_code == 404
        assert theirs.get_json()["error"].replace(job["id"], unknown) == nobody.get_json()["error"]
    assert keyless_client.delete(f"/v1/jobs/{job['id']}", headers=bearer("bob")).status_code == 404
    assert keyless_client.get(f"/v1/jobs/{job['id']}", headers=alice).get_json()["state"] == "queued"  # still there
    assert keyless_client.delete(f"/v1/jobs/{job['id']}", headers=alice).status_code == 204


def test_only_a_hash_of_the_key_is_stored_and_no_key_is_logged(keyless_client, env, video: Path,  # noqa: ANN001
                                                               caplog: pytest.LogCaptureFixture) -> None:
    token = API_TOKENS["alice"]
    with caplog.at_level(logging.DEBUG):
        job = submit(keyless_client, video, bearer("alice")).get_json()
        keyless_client.get(f"/v1/jobs/{job['id']}", headers={"Authorization": "Bearer a-wrong-guess-of-a-key"})
    store = redis.Redis.from_url(env["EMPATHY_REDIS_URL"], decode_responses=True)
    assert store.hget(f"empathy:job:{job['id']}", "owner") == hashlib.sha256(token.encode()).hexdigest()
    dump = " ".join(str(store.dump(key)) for key in store.scan_iter("*"))
    assert token not in dump and API_TOKENS["bob"] not in dump
    assert "owner" not in job  # the hash is not shown either
    messages = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "job accepted" in messages and "alice" in messages  # keys are logged by name...
    assert token not in messages and "a-wrong-guess-of-a-key" not in messages  # ...never by value


def test_job_ids_are_random_128_bit_tokens(keyless_client, video: Path) -> None:  # noqa: ANN001
    ids = {new_job_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(valid_job_id(i) for i in ids)
    submitted = [submit(keyless_client, video, bearer("alice")).get_json()["id"] for _ in range(3)]
    assert len(set(submitted)) == 3 and all(valid_job_id(i) for i in submitted)
    # no shared prefix or counter between consecutive ids (uuid1-style ids would share most digits)
    assert len({i[:8] for i in submitted}) == 3 and len({i[-8:] for i in submitted}) == 3


def test_authentication_is_on_by_default_and_needs_keys(redis_url: str, tmp_path: Path, video: Path) -> None:
    base = ensemble_env(redis_db(redis_url, 8), tmp_path / "storage", tmp_path / "models")
    with environment(base), pytest.raises(AuthConfigError, match="no API key is configured"):
        create_app()
    for bad, message in (("alice", "not 'name:token'"), ("alice:short", "shorter than 16"), (":" + "x" * 20, "entry 1")):
        with environment({**base, "EMPATHY_API_KEYS": bad}), pytest.raises(AuthConfigError, match=message):
            create_app()
    with environment({**base, "EMPATHY_API_KEYS_FILE": str(tmp_path / "missing")}), \
            pytest.raises(AuthConfigError, match="cannot read"):
        create_app()
    keys_file = tmp_path / "api_keys"
    keys_file.write_text(f"# the team's keys\nalice:{API_TOKENS['alice']}   # laptop\n\nbob:{API_TOKENS['bob']}\n")
    with environment({**base, "EMPATHY_API_KEYS_FILE": str(keys_file)}):
        client = create_app().test_client()
        assert submit(client, video, bearer("bob")).status_code == 202
        assert submit(client, video, {}).status_code == 401
    with environment({**base, "EMPATHY_AUTH": "off"}):  # explicit local-development mode
        assert submit(create_app().test_client(), video, {}).status_code == 202
    with pytest.raises(ValueError, match="EMPATHY_AUTH='of'"), environment({**base, "EMPATHY_AUTH": "of"}):
        create_app()  # a typo never turns authentication off


def test_settings_never_show_keys(env, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    from cli.config import main as config_main
    from shared.settings import get_settings

    assert config_main([]) == 0
    printed = capsys.readouterr().out
    assert "EMPATHY_API_KEYS=<set, not shown>" in printed and API_TOKENS["alice"] not in printed
    assert API_TOKENS["alice"] not in repr(get_settings())


def test_celery_speaks_json_only(env) -> None:  # noqa: ANN001
    from services.celery_app import create_app as create_celery

    for dispatch_only in (False, True):
        conf = create_celery(dispatch_only=dispatch_only).conf
        assert conf.accept_content == ["json"] and conf.result_accept_content == ["json"]
        assert conf.task_serializer == conf.result_serializer == "json"
        assert conf.task_acks_late and conf.task_reject_on_worker_lost


@pytest.fixture
def live_gateway(env) -> Iterator[str]:  # noqa: ANN001
    """The real app over real HTTP on a free port (werkzeug's threaded server), for the submit client."""
    server = make_server("127.0.0.1", free_port(), create_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


def test_submit_explains_refusals_and_reuses_its_idempotency_key(live_gateway: str, video: Path,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.submit import main as submit_main

    monkeypatch.delenv("EMPATHY_API_KEY", raising=False)
    assert submit_main([str(video), "--gateway", live_gateway, "--modalities", "audio"]) == 1
    err = capsys.readouterr().err
    assert "401" in err and "--api-key" in err

    assert submit_main([str(video), "--gateway", live_gateway, "--api-key", "wrong-key-of-nobody"]) == 1
    assert "401" in capsys.readouterr().err

    monkeypatch.setenv("EMPATHY_API_KEY", API_TOKENS["alice"])
    arguments = [str(video), "--gateway", live_gateway, "--modalities", "audio", "--idempotency-key", "k-1"]
    assert submit_main(arguments) == 0
    first = capsys.readouterr().out
    assert submit_main(arguments) == 0
    second = capsys.readouterr().out
    job_id = first.split("job ", 1)[1].split()[0]
    assert valid_job_id(job_id) and f"job {job_id} accepted (already submitted" in second
