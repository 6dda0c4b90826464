"""Fixtures of the gateway's tests: one gateway environment on a real Redis, and its Flask test clients.

Limits are small so that tests can cross them cheaply (1 MiB uploads, 60 s videos); the model server
address points at a closed port (no test here reaches a model).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient

from gateway.app import create_app
from tests.ensemble_support import api_keys_env, bearer, ensemble_env, environment, redis_db

GATEWAY_DB = 3  # a Redis database of the gateway's tests alone (flushed before each test)
MAX_UPLOAD_MB = 1
MAX_DURATION_S = 60


@pytest.fixture
def env(redis_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The ``EMPATHY_*`` values of a gateway (set in ``os.environ`` for the test): empty Redis database,
    storage under ``tmp_path``, the API keys of alice and bob."""
    url = redis_db(redis_url, GATEWAY_DB)
    redis.Redis.from_url(url).flushdb()
    values = ensemble_env(url, tmp_path / "storage", tmp_path / "models", EMPATHY_MAX_UPLOAD_MB=str(MAX_UPLOAD_MB),
                          EMPATHY_MAX_DURATION_S=str(MAX_DURATION_S), EMPATHY_MODEL_SERVER="127.0.0.1:1",
                          **api_keys_env())
    with environment(values):
        yield values


@pytest.fixture
def keyless_client(env: dict[str, str]) -> FlaskClient:
    """A test client of the app that sends no API key unless a request gives one."""
    app = create_app()
    app.testing = True
    return app.test_client()


@pytest.fixture
def client(keyless_client: FlaskClient) -> FlaskClient:
    """A test client that sends alice's key with every request (a request's own header replaces it)."""
    keyless_client.environ_base["HTTP_AUTHORIZATION"] = bearer("alice")["Authorization"]
    return keyless_client
