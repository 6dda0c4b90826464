"""``empathy submit``: upload a video to a running gateway (``empathy up`` or ``docker compose up``),
optionally wait with a progress bar, and save the CSV result.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from cli.arguments import default_out, existing_file
from jobs.request import add_arguments, check_args_video, request_from_args
from shared.logs import add_log_format_argument, configure_logging

log = logging.getLogger(__name__)

SUBMIT_ATTEMPTS = 3  # uploads retried on a connection error or 503 (safe: they carry an idempotency key)
POLL_ERRORS_TOLERATED = 10  # consecutive failed status requests while waiting before giving up


class GatewayError(Exception):
    """The gateway could not be reached or refused a request; the message is meant for the user."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy submit", description="Upload a video to a running gateway.")
    parser.add_argument("video", type=existing_file)
    parser.add_argument("--gateway", default="http://localhost:8080", help="gateway base URL")
    parser.add_argument("--api-key", default=None,
                        help="API key (bearer token); default EMPATHY_API_KEY (empathy up prints one)")
    parser.add_argument("--idempotency-key", default=None,
                        help="resubmitting with the same key returns the same job (default: a new key per run, "
                             "reused for this run's retries)")
    add_arguments(parser)  # the job request's fields (absent: the service's settings)
    parser.add_argument("--transcript", type=Path, default=None, help="word timings JSON (skips ASR)")
    parser.add_argument("--wait", action="store_true", help="wait for the result (progress bar) and save it")
    parser.add_argument("--out", type=Path, default=None, help="CSV to write with --wait (default: <video>_valence.csv)")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between status requests")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up waiting after this many seconds")
    add_log_format_argument(parser)
    return parser


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _explain(response: Any) -> str:
    """A refusal in words: the status, the gateway's reason, and what to do about the common ones."""
    hints = {401: " (pass --api-key or set EMPATHY_API_KEY)",
             404: " (unknown job, or a job of another API key)",
             503: " (the gateway's Redis is down; retry later)"}
    return f"{response.status_code}: {_error_text(response)}{hints.get(response.status_code, '')}"


def _upload(requests: Any, url: str, args: argparse.Namespace, form: dict[str, str],
            headers: dict[str, str]) -> Any:
    """POST the video, retrying transient failures with the same idempotency key (so at most one job)."""
    for attempt in range(1, SUBMIT_ATTEMPTS + 1):
        files: dict[str, Any] = {"video": (args.video.name, args.video.open("rb"), "application/octet-stream")}
        if args.transcript is not None:
            files["transcript"] = (args.transcript.name, args.transcript.open("rb"), "application/json")
        try:
            response = requests.post(url, data=form, files=files, headers=headers, timeout=600)
        except requests.RequestException as exc:
            if attempt == SUBMIT_ATTEMPTS:
                raise GatewayError(f"cannot reach the gateway at {url}: {exc}") from None
            response = None
        finally:
            for _, handle, _ in files.values():
                handle.close()
        if response is not None and response.status_code != 503:
            return response
        if attempt == SUBMIT_ATTEMPTS:
            return response
        time.sleep(1.0 * attempt)
    raise AssertionError("unreachable: the last attempt returns or raises")


def main(argv: list[str] | None = None) -> int:
    import requests

    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(log_format=args.log_format, default_format="text")
    job = request_from_args(parser, args)  # checked here, before the upload starts
    check_args_video(parser, job, args.video)  # and against the video's headers (listener boxes)
    if args.transcript is not None and not args.transcript.is_file():
        parser.error(f"no such transcript: {args.transcript}")
    base = args.gateway.rstrip("/")
    api_key = args.api_key or os.environ.get("EMPATHY_API_KEY") or None
    headers = {**_headers(api_key), "Idempotency-Key": args.idempotency_key or uuid.uuid4().hex}
    try:
        response = _upload(requests, f"{base}/v1/jobs", args, job.to_form(), headers)
    except GatewayError as exc:
        print(f"empathy submit: {exc}", file=sys.stderr)
        return 2
    if response.status_code not in (200, 202):
        print(f"empathy submit: the gateway refused the video ({_explain(response)})", file=sys.stderr)
        return 1
    job = response.json()
    job_url = f"{base}/v1/jobs/{job['id']}"
    replayed = " (already submitted with this idempotency key)" if response.status_code == 200 else ""
    print(f"job {job['id']} accepted{replayed}: {job_url}")
    if not args.wait:
        return 0
    try:
        final = _wait(requests, job_url, headers=_headers(api_key), poll=args.poll, timeout=args.timeout)
    except GatewayError as exc:
        print(f"empathy submit: {exc}; the job goes on: {job_url}", file=sys.stderr)
        return 2
    if final is None:
        print(f"empathy submit: gave up after {args.timeout:.0f} s; the job goes on: {job_url}", file=sys.stderr)
        return 3
    if final["state"] != "done":
        print(f"empathy submit: job failed: {final.get('error', 'unknown error')}", file=sys.stderr)
        for name, entry in final["modalities"].items():
            if entry.get("detail"):
                print(f"  {name}: {entry['status']} - {entry['detail']}", file=sys.stderr)
        return 1
    try:
        csv_response = requests.get(f"{job_url}/result", params={"format": "csv"}, headers=_headers(api_key),
                                    timeout=120)
    except requests.RequestException as exc:
        print(f"empathy submit: cannot fetch the result ({exc}); it stays at {job_url}/result", file=sys.stderr)
        return 2
    if csv_response.status_code != 200:
        print(f"empathy submit: cannot fetch the result ({_explain(csv_response)})", file=sys.stderr)
        return 1
    out = args.out or default_out(args.video)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(csv_response.content)
    for name, entry in final["modalities"].items():
        detail = f" - {entry['detail']}" if entry.get("detail") else ""
        print(f"  {name:10s} {entry['status']}{detail}")
    if final.get("degraded"):
        print(f"degraded: fused {', '.join(final.get('used') or []) or 'nothing'} of {', '.join(final['modalities'])}")
    print(f"result: {out} (JSON: {job_url}/result, plot: {job_url}/plot.png)")
    return 0


def _error_text(response: Any) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return response.text[:500]


def _wait(requests: Any, job_url: str, *, headers: dict[str, str], poll: float,
          timeout: float) -> dict[str, Any] | None:
    """Poll the job until it is done or failed, drawing its overall progress; None on timeout.

    Transient trouble (connection errors, 503 while Redis restarts) is waited out, up to
    ``POLL_ERRORS_TOLERATED`` requests in a row; a refusal (401, 404) ends the wait with :class:`GatewayError`.
    """
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    deadline = time.monotonic() + timeout
    errors = 0
    with logging_redirect_tqdm(), tqdm(total=100, desc="job", unit="%", file=sys.stderr,
                                       bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed} {postfix}") as bar:
        while time.monotonic() < deadline:
            try:
                response = requests.get(job_url, headers=headers, timeout=30)
            except requests.RequestException as exc:
                response, problem = None, f"cannot reach the gateway: {exc}"
            if response is not None and response.status_code == 200:
                errors = 0
                job = response.json()
                bar.n = round(100 * job["progress"])
                bar.set_postfix_str(" ".join(f"{n}:{e['status']}" for n, e in job["modalities"].items()))
                if job["state"] in ("done", "failed"):
                    bar.n = 100
                    bar.refresh()
                    return job
            elif response is not None and response.status_code not in (502, 503, 504):
                raise GatewayError(f"status request refused ({_explain(response)})")
            else:
                errors += 1
                if response is not None:
                    problem = _explain(response)
                bar.set_postfix_str(f"waiting for the gateway ({problem})"[:80])
                if errors > POLL_ERRORS_TOLERATED:
                    raise GatewayError(f"the gateway kept failing: {problem}")
            time.sleep(poll)
    return None
