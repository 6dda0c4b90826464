"""GET /v1/jobs (the caller's jobs only, newest first, by state, a page at a time), the callback_url field
checked at submission (SSRF refusals answer 400), the webhook secret, and the web page's headers."""

from __future__ import annotations

import io

import pytest

from empathy_client.webhooks import secret_for
from gateway.auth import token_digest
from gateway.web import CSP
from tests.ensemble_support import API_TOKENS, bearer, environment, write_tiny_video


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_tiny_video(tmp_path_factory.mktemp("video") / "clip.mp4").read_bytes()


def submit(client, data: bytes, name: str = "Subject_1_Story_2.mp4", headers=None, **form: str):  # noqa: ANN001, ANN201
    return client.post("/v1/jobs", data={"video": (io.BytesIO(data), name), **form},
                       content_type="multipart/form-data", headers=headers or {})


def test_listing_shows_only_the_callers_jobs_newest_first(client, video) -> None:  # noqa: ANN001
    mine = [submit(client, video, name=f"Subject_1_Story_{k}.mp4").get_json()["id"] for k in range(1, 4)]
    theirs = submit(client, video, headers=bearer("bob")).get_json()["id"]
    page = client.get("/v1/jobs").get_json()
    assert [job["id"] for job in page["jobs"]] == mine[::-1] and page["next_cursor"] is None
    assert page["jobs"][0]["filename"] == "Subject_1_Story_3.mp4" and page["jobs"][0]["links"]["self"].endswith(mine[2])
    assert all(job["state"] == "queued" and "created" in job and "modalities" in job for job in page["jobs"])
    assert [job["id"] for job in client.get("/v1/jobs", headers=bearer("bob")).get_json()["jobs"]] == [theirs]

    first = client.get("/v1/jobs?limit=2").get_json()
    assert [job["id"] for job in first["jobs"]] == mine[:0:-1] and first["next_cursor"]
    second = client.get(f"/v1/jobs?limit=2&cursor={first['next_cursor']}").get_json()
    assert [job["id"] for job in second["jobs"]] == [mine[0]] and second["next_cursor"] is None
    assert client.get("/v1/jobs?state=done,failed").get_json() == {"jobs": [], "next_cursor": None}
    assert len(client.get("/v1/jobs?state=queued").get_json()["jobs"]) == 3


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "state=finished", "cursor=abc",
                                   "cursor=1.1-" + "0" * 32])
def test_bad_listing_parameters_are_400(client, query: str) -> None:  # noqa: ANN001
    response = client.get(f"/v1/jobs?{query}")
    assert response.status_code == 400 and response.get_json()["error"]


def test_listing_needs_a_key(keyless_client) -> None:  # noqa: ANN001
    assert keyless_client.get("/v1/jobs").status_code == 401


CALLBACKS = {"EMPATHY_CALLBACK_HOSTS": "127.0.0.1,localhost,hooks.example.org",
             "EMPATHY_CALLBACK_ALLOW_HTTP": "on", "EMPATHY_CALLBACK_ALLOW_NETWORKS": "127.0.0.1/32",
             "EMPATHY_WEBHOOK_SIGNING_KEY": "gateway-test-signing-key"}


@pytest.fixture
def callback_client(env):  # noqa: ANN001, ANN201
    from gateway.app import create_app

    with environment({**env, **CALLBACKS}):
        app = create_app()
        app.testing = True
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = bearer("alice")["Authorization"]
        yield client


def test_a_callback_url_is_kept_and_shown_on_the_job(callback_client, video) -> None:  # noqa: ANN001
    response = submit(callback_client, video, callback_url="http://127.0.0.1:9/hook?tag=1")
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert job["callback"] == {"url": "http://127.0.0.1:9/hook?tag=1", "state": "waiting", "attempts": []}


@pytest.mark.parametrize(("url", "reason"), [
    ("http://169.254.169.254/latest/meta-data/", "not on the service's allow-list"),
    ("http://10.0.0.1/hook", "not on the service's allow-list"),
    ("ftp://127.0.0.1/hook", "must be an absolute http:// or https:// URL"),
    ("http://user:pw@127.0.0.1/hook", "must not carry credentials"),
])
def test_a_callback_url_the_service_may_not_call_is_400(callback_client, video, url: str,  # noqa: ANN001
                                                        reason: str) -> None:
    response = submit(callback_client, video, callback_url=url)
    assert response.status_code == 400 and reason in response.get_json()["error"]
    assert callback_client.get("/v1/jobs").get_json()["jobs"] == []  # nothing kept


def test_a_listed_name_resolving_to_a_private_address_is_400(env, video) -> None:  # noqa: ANN001
    from gateway.app import create_app

    with environment({**env, **CALLBACKS, "EMPATHY_CALLBACK_ALLOW_NETWORKS": ""}):
        client = create_app().test_client()
        response = submit(client, video, headers=bearer("alice"), callback_url="http://localhost:9/hook")
    error = response.get_json()["error"]
    assert response.status_code == 400 and ("resolves to 127.0.0.1" in error or "resolves to ::1" in error), error


def test_without_callback_settings_a_callback_is_refused(client, video) -> None:  # noqa: ANN001
    response = submit(client, video, callback_url="https://hooks.example.org/x")
    assert response.status_code == 400 and "EMPATHY_CALLBACK_HOSTS is empty" in response.get_json()["error"]
    assert client.get("/v1/webhooks/secret").status_code == 409


def test_the_webhook_secret_is_the_callers_own(callback_client) -> None:  # noqa: ANN001
    alice = callback_client.get("/v1/webhooks/secret").get_json()
    bob = callback_client.get("/v1/webhooks/secret", headers=bearer("bob")).get_json()
    key = CALLBACKS["EMPATHY_WEBHOOK_SIGNING_KEY"]
    assert alice["secret"] == secret_for(key, token_digest(API_TOKENS["alice"])) != bob["secret"]
    assert alice["signature_header"] == "Empathy-Signature"
    assert callback_client.get("/v1/webhooks/secret", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_the_web_page_and_its_files_carry_a_strict_csp(keyless_client) -> None:  # noqa: ANN001
    page = keyless_client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"] == CSP and "'unsafe-inline'" not in CSP
    assert "script-src 'self'" in CSP and "connect-src 'self'" in CSP and "frame-ancestors 'none'" in CSP
    text = page.get_data(as_text=True)
    assert "<script>" not in text and " style=" not in text and " on" + "click=" not in text  # nothing inline
    assert "&quot;audio&quot;" in text and "&quot;learned&quot;" in text  # modalities and fusion methods
    script = keyless_client.get("/ui/app.js")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    assert script.headers["X-Content-Type-Options"] == "nosniff"
    assert "innerHTML" not in script.get_data(as_text=True)  # service values are written as text only
    assert keyless_client.get("/ui/app.css").mimetype == "text/css"
    assert keyless_client.get("/ui/../app.py").status_code == 404
    assert keyless_client.get("/ui/index.html").status_code == 404
