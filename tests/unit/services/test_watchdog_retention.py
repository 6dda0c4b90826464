"""The running ensemble expires old jobs by itself: the fusion workers' watchdog thread sweeps the job storage
(EMPATHY_RESULT_RETENTION_S), outside any task, with a real Redis for its lock."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.storage import retention
from jobs.storage.local import LocalStorage
from shared.settings import get_settings
from tests.ensemble_support import redis_db
from tests.serving_helpers import wait_for

OLD, FRESH = "a" * 32, "b" * 32


@pytest.fixture
def environment(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    storage_dir = tmp_path / "storage"
    for name, value in {"EMPATHY_REDIS_URL": redis_db(redis_url, 13), "EMPATHY_STORAGE_DIR": str(storage_dir),
                        "EMPATHY_STORAGE_BACKEND": "local", "EMPATHY_RESULT_RETENTION_S": "3600",
                        "EMPATHY_WATCHDOG_INTERVAL_S": "0.2"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(retention, "_last_sweep", 0.0)
    get_settings.cache_clear()
    yield storage_dir
    get_settings.cache_clear()


def test_the_watchdog_thread_removes_jobs_older_than_the_retention(environment: Path) -> None:
    from services.celery_app import app
    from services.watchdog import run_forever

    storage = LocalStorage(environment)
    storage.put_bytes(OLD, "result.json", b"{}")
    storage.put_bytes(FRESH, "result.json", b"{}")
    two_hours_ago = time.time() - 7200
    os.utime(storage.path(OLD, "result.json"), (two_hours_ago, two_hours_ago))
    stop = threading.Event()
    thread = threading.Thread(target=run_forever, args=(app, stop), daemon=True)
    thread.start()
    try:
        wait_for(lambda: not storage.job_exists(OLD), timeout_s=20)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert storage.job_exists(FRESH)  # an hour's retention keeps a job written a moment ago


def test_a_store_that_cannot_be_opened_does_not_end_the_job_watchdog(environment: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from services.celery_app import app
    from services.watchdog import run_forever

    monkeypatch.setenv("EMPATHY_STORAGE_BACKEND", "s3")
    monkeypatch.setenv("EMPATHY_S3_ACCESS_KEY_FILE", str(tmp_path / "missing-secret"))
    monkeypatch.setenv("EMPATHY_S3_SECRET_KEY_FILE", str(tmp_path / "missing-secret"))
    get_settings.cache_clear()
    stop = threading.Event()
    thread = threading.Thread(target=run_forever, args=(app, stop), daemon=True)
    thread.start()
    try:
        time.sleep(1.5)  # several 0.2 s intervals, each failing to open the store
        assert thread.is_alive()  # still looking after the jobs (the retention is logged as failing)
    finally:
        stop.set()
        thread.join(timeout=10)
