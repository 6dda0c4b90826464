"""A researcher's whole workflow through a real local ensemble (``empathy up``: Redis, the model server, a
worker per modality, the fusion worker with its callback courier, the gateway under gunicorn):

* a folder of OMG-Empathy-named synthetic recordings goes through ``empathy submit DIR --out PRED_DIR`` (with
  the key "bob", whose jobs are only these; the other tests use "alice"); the submitter is killed (SIGKILL,
  no clean-up) half way and run again: it skips what was done, re-attaches to what was running, and every
  video ends with exactly one job and one CSV; ``empathy score PRED_DIR GT_DIR``
  then gives Table I and says the official script would run on the folder unchanged;
* every job of the batch names a callback URL (a real HTTP receiver in this process): each arrives once,
  signed with the key's webhook secret, and ``GET /v1/jobs/{id}`` records the delivery;
* the web page in a real browser (Debian's chromium, headless, through chromium-driver and Selenium): paste
  the key, upload a clip, wait for done, find the fused curve drawn, download the CSV, delete the job.
  Screenshots go to ``var/test-artifacts/web/``.

Models: the session's tiny trained ones (``ensemble_models``; EMPATHY_TEST_MODELS reuses a directory), the
recordings: the session's synthetic data set (``synthetic_dataset``, EMPATHY_TEST_DATASET).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from empathy_client import Client
from empathy_client.batch import MANIFEST
from empathy_client.webhooks import SIGNATURE_HEADER, verify
from shared.ports import free_port
from tests.ensemble_support import API_TOKENS, REPO, api_keys_env, redis_db, start_up, stop, wait_for
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.slow

class Ensemble(NamedTuple):
    url: str
    log: Path  # everything `empathy up` and its children wrote


ARTIFACTS = REPO / "var" / "test-artifacts" / "web"
CALLBACK_ENV = {"EMPATHY_CALLBACK_HOSTS": "127.0.0.1", "EMPATHY_CALLBACK_ALLOW_HTTP": "on",
                "EMPATHY_CALLBACK_ALLOW_NETWORKS": "127.0.0.1/32"}


@pytest.fixture(scope="module")
def ensemble(ensemble_models: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ensemble]:
    """``empathy up`` with the test keys and callbacks allowed to this machine's loopback (explicitly)."""
    workdir = tmp_path_factory.mktemp("workflow")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), **api_keys_env(), **CALLBACK_ENV}
    log_path = workdir / "up.log"
    launcher = start_up(port, redis_url=redis_db(redis_url, 7), models_dir=ensemble_models,
                        storage_dir=workdir / "storage", env=env, log_path=log_path, cwd=workdir)
    url = f"http://127.0.0.1:{port}"
    client = Client(url, API_TOKENS["alice"], retries=0)

    def ready() -> bool:
        assert launcher.poll() is None, log_path.read_text()[-5000:]
        try:
            return client.request("GET", "/readyz").status_code == 200
        except Exception:  # noqa: BLE001 - not yet
            return False

    try:
        wait_for(ready, timeout=300, interval=1.0, what="the ensemble's /readyz")
        yield Ensemble(url, log_path)
    finally:
        stop(launcher, timeout=120, sig=signal.SIGINT)
    assert launcher.returncode == 0, log_path.read_text()[-5000:]


def _submit_batch(url: str, videos: Path, out: Path, callback: str, log: Path) -> subprocess.Popen:
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "submit", str(videos), "--out", str(out), "--gateway", url,
             "--api-key", API_TOKENS["bob"], "--parallel", "2", "--poll", "0.5", "--callback-url", callback],
            cwd=out.parent, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True)


def test_a_folder_with_a_kill_and_a_resume_then_scored(ensemble: Ensemble, synthetic_dataset: Path,
                                                        tmp_path: Path) -> None:
    url = ensemble.url
    videos = sorted((synthetic_dataset / "Videos").glob("Subject_*_Story_*.mp4"))
    assert len(videos) >= 4
    out = tmp_path / "predictions"
    client = Client(url, API_TOKENS["bob"])
    secret = client.webhook_secret()
    with Receiver() as receiver:
        # run 1: killed (SIGKILL, no chance to clean up) once the first CSV is written
        log = tmp_path / "submit.log"
        started = time.monotonic()
        first = _submit_batch(url, synthetic_dataset / "Videos", out, receiver.url, log)
        try:
            wait_for(lambda: first.poll() is None and any(out.glob("*.csv")), timeout=900, interval=0.2,
                     what="the first CSV")
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
        manifest = json.loads((out / MANIFEST).read_text())["files"]
        before = {name: entry.get("job") for name, entry in manifest.items()}
        done_before = sorted(p.stem for p in out.glob("*.csv"))
        assert done_before and len(done_before) < len(videos), log.read_text()

        # run 2: finishes the rest, re-attaching to what run 1 left running
        second = _submit_batch(url, synthetic_dataset / "Videos", out, receiver.url, log)
        assert second.wait(timeout=1800) == 0, log.read_text()[-5000:]
        batch_s = time.monotonic() - started
        output = log.read_text()
        receiver.wait(len(videos), timeout=60)
        time.sleep(1.0)  # a duplicate delivery would arrive now

    # every video: exactly one job, one CSV, one callback
    jobs = list(client.iter_jobs())
    assert sorted(job.filename for job in jobs) == sorted(v.name for v in videos), [j.filename for j in jobs]
    assert all(job.state == "done" for job in jobs)
    for name, job_id in before.items():
        if job_id:
            assert any(job.id == job_id for job in jobs), f"{name}: run 2 made a new job instead of re-attaching"
    for stem in done_before:
        assert f"skipped    {stem}.mp4" in output
    for name, job_id in before.items():  # submitted by run 1, not finished when it was killed: re-attached
        if job_id and Path(name).stem not in done_before:
            assert f"reattached {name}: job {job_id}" in output, output
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{v.stem}.csv" for v in videos)  # manifest removed
    header = (out / f"{videos[0].stem}.csv").read_text().splitlines()[0]
    assert header.startswith("valence,agreement,band_low,band_high")

    # callbacks: one each, signed, recorded on the job
    events = [verify(secret, r.headers[SIGNATURE_HEADER], r.body) for r in receiver.received]
    assert sorted(e["job"]["id"] for e in events) == sorted(job.id for job in jobs)
    by_id = {job.id: job for job in jobs}
    latencies = [r.at - by_id[e["job"]["id"]].finished for r, e in zip(receiver.received, events, strict=True)]
    for job in jobs:
        assert job.callback is not None and job.callback["state"] == "delivered", job.callback
        assert [a["status"] for a in job.callback["attempts"]] == [200]

    # Table I of the folder, with the official maths
    scored = subprocess.run([sys.executable, "-m", "cli", "score", str(out), str(synthetic_dataset / "Annotations")],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert scored.returncode == 0, scored.stdout + scored.stderr
    assert "Personalized track" in scored.stdout and "would run on these inputs unchanged" in scored.stdout
    summary = (f"{len(videos)} videos (kill + resume) in {batch_s:.1f} s; callback latency after the job finished: "
               f"median {sorted(latencies)[len(latencies) // 2] * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")
    ARTIFACTS.parent.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS.parent / "workflow-summary.txt").write_text(summary + "\n\n" + scored.stdout)
    print(summary)


def _browser(download_dir: Path, profile: Path):  # noqa: ANN202
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail("chromium and chromium-driver are not installed (scripts/setup.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,1600"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                              "download.prompt_for_download": False})
    browser = webdriver.Chrome(service=Service(driver), options=options)
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return browser


def test_the_web_page_in_a_real_browser(ensemble: Ensemble, synthetic_dataset: Path, tmp_path: Path) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    video = sorted((synthetic_dataset / "Videos").glob("Subject_*_Story_*.mp4"))[0]
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser = _browser(downloads, tmp_path / "profile")
    try:
        browser.get(ensemble.url + "/")
        assert browser.title == "Empathic valence"
        browser.find_element(By.ID, "api-key").send_keys(API_TOKENS["alice"])
        browser.find_element(By.ID, "key-use").click()
        browser.find_element(By.ID, "video").send_keys(str(video))
        browser.find_element(By.ID, "submit").click()
        WebDriverWait(browser, 60).until(ready.text_to_be_present_in_element((By.ID, "upload-status"), "accepted"))
        job_id = browser.find_element(By.ID, "job-id").text
        assert len(job_id) == 32 and API_TOKENS["alice"] not in browser.current_url
        WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#progress .bar"))
        browser.save_screenshot(str(ARTIFACTS / "1-progress.png"))
        WebDriverWait(browser, 900, poll_frequency=1).until(
            lambda b: b.find_elements(By.ID, "curve-fused") or "failed" in b.find_element(By.ID, "job-state").text)
        assert "done" in browser.find_element(By.ID, "job-state").text, browser.find_element(By.ID, "job-state").text
        fused = browser.find_element(By.ID, "curve-fused").get_attribute("d")
        assert fused.startswith("M") and fused.count("L") >= 400  # a 20 s clip: 500 frames drawn
        assert browser.find_element(By.ID, "band").get_attribute("d").endswith("Z")
        modules = browser.find_elements(By.CSS_SELECTOR, "path.module")
        assert {m.get_attribute("data-modality") for m in modules} <= {"audio", "text", "face", "landmarks", "body"}
        assert modules and browser.find_element(By.ID, "curve-agreement").get_attribute("d").startswith("M")
        bars = browser.find_elements(By.CSS_SELECTOR, "#progress .bar progress")
        assert len(bars) == 5 and all(float(b.get_attribute("value")) == 1.0 for b in bars)
        browser.save_screenshot(str(ARTIFACTS / "2-result.png"))

        browser.find_element(By.ID, "download-csv").click()
        wait_for(lambda: list(downloads.glob("*.csv")), timeout=30, what="the downloaded CSV")
        (csv,) = downloads.glob("*.csv")
        lines = csv.read_text().splitlines()
        assert csv.name == f"{video.stem}_valence.csv" and lines[0].startswith("valence,agreement,band_low")
        assert len(lines) == 501
        browser.find_element(By.ID, "download-json").click()
        wait_for(lambda: list(downloads.glob("*.json")), timeout=30, what="the downloaded JSON")
        (document,) = downloads.glob("*.json")
        result = json.loads(document.read_text())
        assert result["job"] == job_id and result["n_frames"] == 500 and len(result["valence"]) == 500

        browser.find_element(By.ID, "refresh").click()
        row = f"#job-table tr[data-job='{job_id}']"
        WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, row))
        browser.save_screenshot(str(ARTIFACTS / "3-jobs.png"))

        def delete(b) -> bool:  # noqa: ANN001 - the list re-renders when a refresh lands: find the row again
            b.find_element(By.CSS_SELECTOR, f"{row} button.delete").click()
            return True

        WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,)).until(delete)
        WebDriverWait(browser, 30).until(ready.text_to_be_present_in_element((By.ID, "jobs-status"), "deleted"))
        assert not browser.find_elements(By.CSS_SELECTOR, row)
        browser.save_screenshot(str(ARTIFACTS / "4-deleted.png"))
        problems = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"
                    and "favicon" not in entry["message"]]
        assert problems == []  # no CSP violation, no script error
    finally:
        browser.quit()
    assert API_TOKENS["alice"] not in ensemble.log.read_text(), f"the key reached a log: {ensemble.log}"
    with pytest.raises(Exception) as gone:
        Client(ensemble.url, API_TOKENS["alice"]).job(job_id)
    assert getattr(gone.value, "status", None) == 404


def test_the_readme_python_example_runs(ensemble: Ensemble, synthetic_dataset: Path, tmp_path: Path) -> None:
    """The README's client example, as written (only the gateway's port differs), on a real job."""
    text = (REPO / "README.md").read_text()
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert block.startswith("from empathy_client import Client")
    shutil.copy(sorted((synthetic_dataset / "Videos").glob("Subject_1_Story_*.mp4"))[-1], tmp_path / "video.mp4")
    result = subprocess.run([sys.executable, "-c", block.replace("http://127.0.0.1:8080", ensemble.url)], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO), "EMPATHY_API_KEY": API_TOKENS["alice"]},
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-2] == "done 100%" and lines[0].startswith(("queued", "running"))
    values = json.loads(lines[-1])
    assert len(values) == 5 and all(-1 <= v <= 1 for v in values)
