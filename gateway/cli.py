"""``empathy analyze`` (the whole pipeline in this process) and ``empathy submit`` (a client of the gateway).

``analyze`` needs no server at all: it loads the models in-process (``LocalPredictor``) and runs
:func:`shared.pipeline.analyze_video`, the very pipeline the workers run. When the models directory has
no model for a requested modality it first builds the bundled default models
(:mod:`gateway.bootstrap`; a few minutes, once).

``submit`` uploads a video to a running gateway (``empathy up`` or ``docker compose up``), optionally
waits with a progress bar, and saves the CSV result.
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

from shared.logs import configure_logging
from shared.settings import MODALITIES, get_settings

log = logging.getLogger(__name__)


def _modalities(raw: str | None) -> list[str]:
    if not raw:
        return list(MODALITIES)
    names = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = sorted(set(names) - set(MODALITIES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown modalities {unknown}; choose among {', '.join(MODALITIES)}")
    return [name for name in MODALITIES if name in names]


def _listener(text: str) -> str:
    """A listener region spec (see shared.crops), checked before any work starts."""
    from shared.crops import check_listener_spec

    try:
        return check_listener_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _default_out(video: Path) -> Path:
    return Path(f"{video.stem}_valence.csv")


# --- empathy analyze -----------------------------------------------------------------------------------
def analyze_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy analyze", description="Per-frame valence of one video, "
                                     "computed in this process (no servers).")
    parser.add_argument("video", type=Path)
    parser.add_argument("--subject", type=int, default=None,
                        help="listener id for per-subject re-scaling (default EMPATHY_DEFAULT_SUBJECT; 0 = unknown)")
    parser.add_argument("--out", type=Path, default=None, help="CSV to write (default: <video>_valence.csv)")
    parser.add_argument("--json", type=Path, default=None, help="also write the full result document here")
    parser.add_argument("--plot", type=Path, default=None, help="also draw modules, fusion and agreement (PNG)")
    parser.add_argument("--modalities", default=None, help="comma list (default: all five)")
    parser.add_argument("--models-dir", type=Path, default=None, help="model repository (default EMPATHY_MODELS_DIR)")
    parser.add_argument("--transcript", type=Path, default=None, help="word timings JSON (skips ASR)")
    parser.add_argument("--weights", "--fusion", dest="weights", default=None,
                        help="fusion: ccc | paper | learned | audio=1,text=1,... (default EMPATHY_FUSION_WEIGHTS)")
    parser.add_argument("--annotation", type=Path, default=None,
                        help="ground-truth valence CSV (OMG-Empathy annotation): drawn in --plot, CCC printed")
    parser.add_argument("--listener", type=_listener, default=None,
                        help="listener region: auto (2560x720: x >= 1080; else whole frame), full, x0,y0,x1,y1 "
                        "(default EMPATHY_LISTENER_CROP)")
    parser.add_argument("--no-build", action="store_true",
                        help="fail instead of building the bundled default models when some are missing")
    return parser


def analyze_main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from gateway.bootstrap import build_default_models, fusion_missing, missing_models
    from shared.fusion import FusionError
    from shared.pipeline import analyze_video, listener_notes
    from shared.results import build_document, to_csv
    from shared.storage import write_json

    parser = analyze_parser()
    args = parser.parse_args(argv)
    configure_logging()
    settings = get_settings()
    try:
        names = _modalities(args.modalities)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if not args.video.is_file():
        parser.error(f"no such video: {args.video}")
    models_dir = args.models_dir or settings.models_dir
    missing = missing_models(models_dir, names)
    if missing:
        if args.no_build:
            print(f"empathy analyze: no model for {', '.join(missing)} under {models_dir} "
                  f"(build them: python -m gateway.bootstrap --models-dir {models_dir})", file=sys.stderr)
            return 2
        print(f"Building the bundled default models for {', '.join(missing)} under {models_dir} "
              f"(once; a few minutes)...", file=sys.stderr)
        build_default_models(models_dir, data_dir=settings.data_dir, modalities=missing)
    elif fusion_missing(models_dir) and not args.no_build:
        build_default_models(models_dir, data_dir=settings.data_dir, modalities=names)  # fits only the fusion

    bar = tqdm(total=len(names), desc="analyze", unit="modality", file=sys.stderr)

    def progress(name: str, stage: str, fraction: float) -> None:
        bar.set_postfix_str(f"{name}: {stage}")
        if fraction >= 1.0:
            bar.update(1)

    try:
        result = analyze_video(args.video, subject=args.subject, modalities=names, models_dir=models_dir,
                               transcript=args.transcript, weights_spec=args.weights, progress=progress,
                               settings=settings, listener=args.listener)
    except FusionError as exc:
        bar.close()
        print(f"empathy analyze: no modality produced a prediction: {exc}", file=sys.stderr)
        return 1
    bar.close()
    document = build_document(fusion=result.fusion, modalities=result.modalities, subject=result.subject,
                              fps=result.fps, video=args.video.name, seconds=result.seconds,
                              notes=listener_notes(result.modalities))
    out = args.out or _default_out(args.video)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_csv(document))
    if args.json:
        write_json(args.json, document)
    truth = None
    if args.annotation:
        from shared.data import read_labels

        truth = read_labels(args.annotation)
    if args.plot:
        from gateway.plot import render_png

        args.plot.write_bytes(render_png(document, ground_truth=truth))
    _print_summary(document, out, result.seconds, truth)
    return 0


def _print_summary(document: dict[str, Any], out: Path, seconds: float, truth: Any = None) -> None:
    """What was fused and how; with an annotation, the CCC of every module and of the fusion against it."""
    import numpy as np

    from shared.metrics import ccc

    def score(series: list[float | None]) -> str:
        if truth is None:
            return ""
        values = np.array([np.nan if v is None else v for v in series], dtype=np.float64)
        n = min(values.size, truth.size)
        seen = np.isfinite(values[:n])
        return f" CCC {ccc(truth[:n][seen], values[:n][seen]):.2f}" if seen.sum() > 1 else " CCC -"

    agreement = [a for a in document["agreement"] if a is not None]
    print(f"{document['n_frames']} frames ({document['duration_s']} s) analysed in {seconds:.1f} s")
    for name, entry in document["modalities"].items():
        weight = document["fusion"]["weights"].get(name)
        shown = f"weight {weight:.2f}" if weight is not None else "not fused"
        detail = f" - {entry['detail']}" if entry["detail"] else ""
        print(f"  {name:10s} {entry['status']:12s} {shown:12s} {entry['seconds']:.1f} s{score(entry['valence'])}{detail}")
    fusion = document["fusion"]
    cutoff = f"final low-pass {fusion['cutoff_hz']:.3g} Hz" if fusion["cutoff_hz"] > 0 else "no final low-pass"
    print(f"fusion {fusion['method']} ({cutoff}){score(document['valence'])}")
    if agreement:
        print(f"mean agreement {sum(agreement) / len(agreement):.2f}")
    for note in document.get("notes") or []:
        print(f"note: {note}")
    print(f"result: {out}")


# --- empathy submit ------------------------------------------------------------------------------------
SUBMIT_ATTEMPTS = 3  # uploads retried on a connection error or 503 (safe: they carry an idempotency key)
POLL_ERRORS_TOLERATED = 10  # consecutive failed status requests while waiting before giving up


class GatewayError(Exception):
    """The gateway could not be reached or refused a request; the message is meant for the user."""


def submit_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy submit", description="Upload a video to a running gateway.")
    parser.add_argument("video", type=Path)
    parser.add_argument("--gateway", default="http://localhost:8080", help="gateway base URL")
    parser.add_argument("--api-key", default=None,
                        help="API key (bearer token); default EMPATHY_API_KEY (empathy up prints one)")
    parser.add_argument("--idempotency-key", default=None,
                        help="resubmitting with the same key returns the same job (default: a new key per run, "
                             "reused for this run's retries)")
    parser.add_argument("--subject", type=int, default=None)
    parser.add_argument("--listener", type=_listener, default=None,
                        help="listener region: auto, full or x0,y0,x1,y1 fractions (default: the service's)")
    parser.add_argument("--modalities", default=None, help="comma list (default: all five)")
    parser.add_argument("--transcript", type=Path, default=None, help="word timings JSON (skips ASR)")
    parser.add_argument("--fusion", default=None,
                        help="fusion of this job: ccc | paper | learned | audio=1,... (default: the service's)")
    parser.add_argument("--wait", action="store_true", help="wait for the result (progress bar) and save it")
    parser.add_argument("--out", type=Path, default=None, help="CSV to write with --wait (default: <video>_valence.csv)")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between status requests")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up waiting after this many seconds")
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


def submit_main(argv: list[str] | None = None) -> int:
    import requests

    parser = submit_parser()
    args = parser.parse_args(argv)
    configure_logging()
    try:
        names = _modalities(args.modalities)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if not args.video.is_file():
        parser.error(f"no such video: {args.video}")
    if args.transcript is not None and not args.transcript.is_file():
        parser.error(f"no such transcript: {args.transcript}")
    base = args.gateway.rstrip("/")
    api_key = args.api_key or os.environ.get("EMPATHY_API_KEY") or None
    headers = {**_headers(api_key), "Idempotency-Key": args.idempotency_key or uuid.uuid4().hex}
    form: dict[str, str] = {"modalities": ",".join(names)}
    if args.subject is not None:
        form["subject"] = str(args.subject)
    if args.fusion:
        form["fusion"] = args.fusion
    if args.listener is not None:
        form["listener"] = args.listener
    try:
        response = _upload(requests, f"{base}/v1/jobs", args, form, headers)
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
    out = args.out or _default_out(args.video)
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

    deadline = time.monotonic() + timeout
    errors = 0
    with tqdm(total=100, desc="job", unit="%", file=sys.stderr,
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
