"""``empathy submit``: videos to a running gateway (``empathy up`` or ``docker compose up``) through the Python
client (:mod:`empathy_client`).

One video: upload it, optionally wait with a progress bar (``--wait``), and save the CSV. A folder, a glob or
several videos (``empathy submit DIR --out PRED_DIR``): the batch (:mod:`empathy_client.batch`), at most
``--parallel`` jobs in flight, one overall progress bar and a line per file, ``PRED_DIR/<name>.csv`` for
each (the layout ``empathy score PRED_DIR GT_DIR`` and the official scorer read); run it again to resume.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from cli.arguments import default_out
from empathy_client import ApiError, Client, Job, find_videos, run_batch
from jobs.request import add_arguments, check_args_video, request_from_args
from shared.logs import add_log_format_argument, configure_logging

log = logging.getLogger(__name__)

SINGLE_RETRIES = 3  # one video: a refused or unreachable gateway is reported within seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy submit", description="Upload videos to a running gateway: one "
                                     "video, or a folder / glob / several videos as a resumable batch.")
    parser.add_argument("inputs", nargs="+", metavar="VIDEO|DIR|GLOB",
                        help="a video; or a folder, glob pattern or several videos (a batch: needs --out PRED_DIR)")
    parser.add_argument("--gateway", default="http://localhost:8080", help="gateway base URL")
    parser.add_argument("--api-key", default=None,
                        help="API key (bearer token); default EMPATHY_API_KEY (empathy up prints one)")
    parser.add_argument("--idempotency-key", default=None,
                        help="one video: resubmitting with the same key returns the same job (default: a new key "
                             "per run, reused for this run's retries); a batch derives one per file")
    add_arguments(parser)  # the job request's fields (absent: the service's settings)
    parser.add_argument("--transcript", type=Path, default=None, help="word timings JSON (skips ASR; one video)")
    parser.add_argument("--wait", action="store_true", help="wait for the result (progress bar) and save it "
                                                            "(a batch always waits)")
    parser.add_argument("--out", type=Path, default=None,
                        help="one video with --wait: the CSV (default <video>_valence.csv); a batch: the folder "
                             "PRED_DIR of <video name>.csv files")
    parser.add_argument("--parallel", type=int, default=4, help="a batch: jobs in flight at once")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between status requests")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up waiting after this many seconds "
                                                                      "(a batch: per video)")
    add_log_format_argument(parser)
    return parser


def is_batch(inputs: list[str]) -> bool:
    """Several inputs, a folder or a pattern: a batch; one existing file: one video."""
    return len(inputs) > 1 or not Path(inputs[0]).is_file()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(log_format=args.log_format, default_format="text")
    job = request_from_args(parser, args)  # checked here, before any upload starts
    if args.transcript is not None and not args.transcript.is_file():
        parser.error(f"no such transcript: {args.transcript}")
    api_key = args.api_key or os.environ.get("EMPATHY_API_KEY") or None
    if is_batch(args.inputs):
        try:
            videos = find_videos(args.inputs)
        except FileNotFoundError as exc:
            parser.error(str(exc))
        if args.out is None or args.out.is_file():
            parser.error("a batch (folder, glob or several videos) needs --out PRED_DIR, a folder")
        if args.transcript is not None:
            parser.error("--transcript names one video's words: submit that video alone")
        if args.parallel < 1:
            parser.error("--parallel must be at least 1")
        return _batch(Client(args.gateway, api_key), videos, args, job.to_form())
    check_args_video(parser, job, Path(args.inputs[0]))  # and against the video's headers (listener boxes)
    return _single(Client(args.gateway, api_key, retries=SINGLE_RETRIES), Path(args.inputs[0]), args, job.to_form())


def _explain(exc: ApiError) -> str:
    """A refusal in words, with what to do about the common ones."""
    hints = {401: " (pass --api-key or set EMPATHY_API_KEY)", 404: " (unknown job, or a job of another API key)",
             429: " (this key's limits; retry later)", 503: " (the gateway's Redis is down; retry later)"}
    return f"{exc}{hints.get(exc.status, '')}"


def _single(client: Client, video: Path, args: argparse.Namespace, form: dict[str, str]) -> int:
    try:
        job = client.submit(video, fields=form, transcript=args.transcript, idempotency_key=args.idempotency_key)
    except ApiError as exc:
        if exc.status == 0:
            print(f"empathy submit: {exc}", file=sys.stderr)
            return 2
        print(f"empathy submit: the gateway refused the video ({_explain(exc)})", file=sys.stderr)
        return 1
    job_url = f"{client.base_url}/v1/jobs/{job.id}"
    replayed = " (already submitted with this idempotency key)" if job.replayed else ""
    print(f"job {job.id} accepted{replayed}: {job_url}")
    if not args.wait:
        return 0
    try:
        final = _wait_with_bar(client, job.id, poll=args.poll, timeout=args.timeout)
    except ApiError as exc:
        print(f"empathy submit: status request refused ({_explain(exc)}); the job goes on: {job_url}", file=sys.stderr)
        return 2
    except TimeoutError:
        print(f"empathy submit: gave up after {args.timeout:.0f} s; the job goes on: {job_url}", file=sys.stderr)
        return 3
    if final.state != "done":
        print(f"empathy submit: job failed: {final.error or 'unknown error'}", file=sys.stderr)
        for entry in final.modalities.values():
            if entry.detail:
                print(f"  {entry.name}: {entry.status} - {entry.detail}", file=sys.stderr)
        return 1
    try:
        content = client.result_csv(job.id)
    except ApiError as exc:
        print(f"empathy submit: cannot fetch the result ({_explain(exc)}); it stays at {job_url}/result",
              file=sys.stderr)
        return 2
    out = args.out or default_out(video)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(content)
    for entry in final.modalities.values():
        detail = f" - {entry.detail}" if entry.detail else ""
        print(f"  {entry.name:10s} {entry.status}{detail}")
    if final.degraded:
        print(f"degraded: fused {', '.join(final.used) or 'nothing'} of {', '.join(final.modalities)}")
    print(f"result: {out} (JSON: {job_url}/result, plot: {job_url}/plot.png)")
    return 0


def _wait_with_bar(client: Client, job_id: str, *, poll: float, timeout: float) -> Job:
    """Wait for the job, drawing its overall progress and each modality's state."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm(), tqdm(total=100, desc="job", unit="%", file=sys.stderr,
                                       bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed} {postfix}") as bar:

        def progress(job: Job) -> None:
            bar.n = 100 if job.finished_state else round(100 * job.progress)
            bar.set_postfix_str(" ".join(f"{m.name}:{m.status}" for m in job.modalities.values()))

        return client.wait(job_id, poll_s=poll, timeout_s=timeout, progress=progress)


def _batch(client: Client, videos: list[Path], args: argparse.Namespace, form: dict[str, str]) -> int:
    """The resumable batch with one overall bar (fractions of videos) and a line per file event."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    fractions = dict.fromkeys((v.name for v in videos), 0.0)
    print(f"{len(videos)} videos -> {args.out}/ ({args.parallel} in flight at most)")
    with logging_redirect_tqdm(), tqdm(total=len(videos), desc="batch", unit="video", file=sys.stderr,
                                       bar_format="{desc} {n:.1f}/{total} videos|{bar}| {elapsed} {postfix}") as bar:

        def on_event(kind: str, name: str, detail: Any) -> None:
            if kind == "progress":
                fractions[name] = min(0.99, detail.progress)
            else:
                if kind in ("skipped", "done", "failed"):
                    fractions[name] = 1.0
                line = {"skipped": f"skipped    {name}: {detail} exists",
                        "submitted": f"submitted  {name}: job {getattr(detail, 'id', '')}",
                        "reattached": f"reattached {name}: job {getattr(detail, 'id', '')} ({getattr(detail, 'state', '')})",
                        "done": f"done       {name} -> {detail}",
                        "failed": f"FAILED     {name}: {detail}"}[kind]
                bar.write(line, file=sys.stdout)
            bar.n = round(sum(fractions.values()), 2)
            bar.set_postfix_str(f"{sum(1 for f in fractions.values() if f >= 1.0)} finished")
            bar.refresh()

        report = run_batch(client, videos, args.out, fields=form, parallel=args.parallel, poll_s=args.poll,
                           timeout_s=args.timeout, on_event=on_event)
    done, skipped, failed = report.of("done"), report.of("skipped"), report.failed
    print(f"{len(videos)} videos in {report.seconds:.1f} s: {len(done)} done, {len(skipped)} skipped (CSV there "
          f"already), {len(failed)} failed; predictions in {args.out}/ (score them: empathy score {args.out} GT_DIR)")
    if failed:
        print(f"empathy submit: {len(failed)} of {len(videos)} videos failed (run the same command again to retry "
              f"them; the rest is kept):", file=sys.stderr)
        for outcome in failed:
            print(f"  {outcome.video.name}: {outcome.error}", file=sys.stderr)
        return 1
    return 0
