"""What a client asks of one analysis: the job request, a value type with one parser and one stored form.

:class:`JobRequest` is built from a form or any mapping of text (the gateway's multipart form, the
``empathy analyze`` and ``empathy submit`` options) by :meth:`JobRequest.from_form`, the one validation,
which raises ``ValueError`` with a message naming the field (the gateway answers 400 with it, the commands a
usage error). The job store keeps it as text fields of the job's hash (:meth:`to_hash`) and the tasks read it
back typed (:meth:`from_hash`); the pipeline receives its options (:meth:`pipeline_options`); the OpenAPI
form (:func:`form_schema`) and the commands' options (:func:`add_arguments`) are generated from it.

Adding a field: one :func:`_field` entry in :class:`JobRequest` (type, default, parser, help, schema); then
the code that uses it (e.g. a task, or :class:`shared.pipeline.PipelineOptions` for a pipeline option).
"""

from __future__ import annotations

import argparse
import hashlib
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

from shared.crops import LISTENER_PATTERN, check_listener_pixels, check_listener_spec
from shared.fusion_methods import (
    check_spec,
    choices,
    get_method,
    method_names,
    parse_weights,
    weights_pattern,
)
from shared.settings import MODALITIES, Settings
from shared.values import PipelineOptions

if TYPE_CHECKING:
    from shared.media import VideoInfo

MAX_FIELD_CHARS = 200  # a longer value (but a repeatable field's) is refused, never cut, never echoed in full
MAX_SUBJECT = 2**31 - 1  # subjects reach the models as int32


def parse_subject(text: str) -> int:
    """A listener id from text: decimal digits, 0 to :data:`MAX_SUBJECT` (0 = unknown listener)."""
    value = text.strip()
    if not value.isascii() or not value.isdigit() or int(value) > MAX_SUBJECT:
        raise ValueError(f"subject must be an integer from 0 to {MAX_SUBJECT}, got {text[:50]!r}")
    return int(value)


@dataclass(frozen=True)
class FieldSpec:
    """How one request field is read and shown. ``parse``: text (non-empty, stripped) -> value, ValueError
    when malformed; ``text``: value -> the text ``parse`` reads back. ``repeatable``: the form may give the
    field several times (values joined by commas). ``schema``: its OpenAPI schema (``description`` = ``help``)."""

    help: str | Callable[[], str]  # a callable where it names what is registered later (fusion methods)
    parse: Callable[[str], Any]
    text: Callable[[Any], str] = str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    repeatable: bool = False
    aliases: tuple[str, ...] = ()  # more command-line spellings of --<name>
    max_chars: int | None = None  # the longest value accepted (None: MAX_FIELD_CHARS); longer ones are refused


def _field(default: Any = None, *, spec: FieldSpec, factory: Callable[[], Any] | None = None) -> Any:
    if factory is not None:
        return field(default_factory=factory, metadata={"spec": spec})
    return field(default=default, metadata={"spec": spec})


def parse_modalities(text: str) -> tuple[str, ...]:
    """A comma list of modality names, in the registry's order without duplicates; unknown names refused."""
    requested = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(requested) - set(MODALITIES))
    if unknown:
        raise ValueError(f"unknown modalities {[u[:30] for u in unknown[:5]]}; choose among {list(MODALITIES)}")
    return tuple(name for name in MODALITIES if name in requested) or tuple(MODALITIES)


_NAMES = "|".join(MODALITIES)
MODALITIES_PATTERN = rf"^({_NAMES})(,({_NAMES}))*$"  # one form value; the field may be repeated

MAX_CALLBACK_URL_CHARS = 2048


def parse_callback_url(text: str) -> str:
    """An absolute http(s) URL with a host and no credentials (``user:pass@``) or fragment.

    Only its form is checked here; whether the service may call it (https, the host allow-list, no private
    address after DNS resolution) is the service's policy (:mod:`jobs.callbacks`), checked at submission and
    again before every delivery.
    """
    if any(c.isspace() or ord(c) < 0x21 or ord(c) > 0x7e for c in text):
        raise ValueError("must be printable ASCII without spaces (percent-encode the rest)")
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials (user:password@): sign-in is by the signature header")
    if parts.fragment:
        raise ValueError("must not have a #fragment")
    return text


LISTENER_HELP = ("listener region: auto (2560x720 input: the official split x >= 1080; else the whole frame), "
                 "full, x0,y0,x1,y1 fractions or per subject '1=...;*=auto' (absent: EMPATHY_LISTENER_CROP)")


@dataclass(frozen=True)
class JobRequest:
    """One analysis as a client asked for it. Empty text and None mean "the service's setting"."""

    subject: int | None = _field(spec=FieldSpec(
        "listener id for per-subject re-scaling (0: unknown, global statistics; absent: EMPATHY_DEFAULT_SUBJECT)",
        parse=parse_subject, schema={"type": "integer", "minimum": 0, "maximum": MAX_SUBJECT}))
    modalities: tuple[str, ...] = _field(factory=lambda: tuple(MODALITIES), spec=FieldSpec(
        f"comma list, subset of {list(MODALITIES)} (absent: every modality)",
        parse=parse_modalities, text=",".join, repeatable=True,
        schema={"type": "string", "pattern": MODALITIES_PATTERN}))
    fusion: str = _field("", spec=FieldSpec(
        lambda: f"fusion of this job: {choices()} (absent: EMPATHY_FUSION_WEIGHTS)",
        parse=check_spec, schema={"type": "string"}, aliases=("--weights",)))
    listener: str = _field("", spec=FieldSpec(LISTENER_HELP, parse=check_listener_spec,
                                              schema={"type": "string", "pattern": LISTENER_PATTERN}))
    callback_url: str = _field("", spec=FieldSpec(
        "URL the service POSTs the signed job document to when the job is done or failed (absent: "
        "EMPATHY_CALLBACK_URL); https and hosts of EMPATHY_CALLBACK_HOSTS only",
        parse=parse_callback_url, max_chars=MAX_CALLBACK_URL_CHARS, aliases=("--callback-url",),
        schema={"type": "string", "maxLength": MAX_CALLBACK_URL_CHARS, "pattern": r"^https?://[!-~]+$"}))

    # --- reading ----------------------------------------------------------------------------------------
    @classmethod
    def from_form(cls, form: Mapping[str, str | Sequence[str] | None]) -> JobRequest:
        """The request a form asks for (values: text, a list of texts, or None = absent); ValueError otherwise.

        Unknown fields are mistakes (``subjet=3`` must not silently become subject 0), and so is a field given
        twice unless it is repeatable, a value over :data:`MAX_FIELD_CHARS` characters, and explicit fusion
        weights that are 0 for every requested modality. Absent or blank fields keep their defaults.
        """
        specs = field_specs()
        unknown = sorted(set(form) - set(specs))
        if unknown:
            shown = [name[:40] for name in unknown[:10]]  # echo a bounded amount of what the client sent
            raise ValueError(f"unknown form fields {shown}; expected {sorted(specs)}")
        values: dict[str, Any] = {}
        for name, spec in specs.items():
            raw = form.get(name)
            texts = [] if raw is None else [raw] if isinstance(raw, str) else list(raw)
            if len(texts) > 1 and not spec.repeatable:
                raise ValueError(f"form field {name!r} given more than once")
            text = ",".join(texts).strip()
            limit = spec.max_chars or MAX_FIELD_CHARS
            if not spec.repeatable and len(text) > limit:
                raise ValueError(f"{name}: longer than {limit} characters")
            if text:
                try:
                    values[name] = spec.parse(text)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        job = cls(**values)
        if job.fusion and get_method(job.fusion) is None:
            weights = parse_weights(job.fusion)
            if not any(weights.get(name, 0.0) for name in job.modalities):
                raise ValueError(f"fusion: {job.fusion!r} gives weight 0 to every requested modality "
                                 f"{list(job.modalities)}: no module would be fused")
        return job

    @classmethod
    def from_hash(cls, raw: Mapping[str, str]) -> JobRequest:
        """The request of a stored job (:meth:`jobs.store.JobStore.raw`), typed as the gateway validated it."""
        return cls.from_form({name: raw.get(name) for name in field_specs()})

    def check_video(self, info: VideoInfo) -> None:
        """The fields that only make sense with the video, against its header-probed frame size (ValueError
        naming the field): each listener box at least :data:`shared.crops.MIN_LISTENER_PX` pixels each way.
        The gateway calls it once the upload is probed, ``empathy analyze`` and ``submit`` before they start
        (a 1x0-pixel box used to be accepted and fail three workers)."""
        if self.listener and info.width > 0 and info.height > 0:
            try:
                check_listener_pixels(self.listener, info.width, info.height)
            except ValueError as exc:
                raise ValueError(f"listener: {exc}") from None

    def resolve(self, settings: Settings) -> JobRequest:
        """The same request with the service's default subject and callback filled in (what a job keeps)."""
        subject = settings.default_subject if self.subject is None else self.subject
        return replace(self, subject=subject, callback_url=self.callback_url or settings.callback_url)

    # --- writing ----------------------------------------------------------------------------------------
    def to_hash(self) -> dict[str, str]:
        """Every field as text, for the job's hash ("" = absent); :meth:`from_hash` reads it back."""
        specs = field_specs()
        return {name: "" if getattr(self, name) in (None, "") else specs[name].text(getattr(self, name))
                for name in specs}

    def to_form(self) -> dict[str, str]:
        """The form fields to send (``empathy submit``): those given, as text."""
        return {name: text for name, text in self.to_hash().items() if text}

    def pipeline_options(self) -> PipelineOptions:
        """What the analysis of each modality and the fusion need of the request."""
        return PipelineOptions(listener=self.listener or None, fusion=self.fusion or None)

    def fingerprint(self, video: IO[bytes], transcript: IO[bytes] | None = None) -> str:
        """What makes two submissions "the same upload" (idempotency): the video's bytes, every field, the
        transcript's bytes. Streams are read from where they are to their end."""
        digest = hashlib.sha256()
        while chunk := video.read(1 << 20):
            digest.update(chunk)
        digest.update(("|" + "|".join(f"{k}={v}" for k, v in self.to_hash().items()) + "|").encode())
        if transcript is not None:
            while chunk := transcript.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()


def field_specs() -> dict[str, FieldSpec]:
    """Every request field, in declaration order: name -> :class:`FieldSpec`."""
    return {f.name: f.metadata["spec"] for f in fields(JobRequest)}


def _help(spec: FieldSpec) -> str:
    return spec.help() if callable(spec.help) else spec.help


def form_schema() -> dict[str, dict[str, Any]]:
    """The OpenAPI schema of every request field (the multipart form's properties besides the files).

    As strict as :meth:`JobRequest.from_form` where a schema can say it: text fields at most
    :data:`MAX_FIELD_CHARS` characters (a repeatable field's each value is bounded by its pattern and the
    form's field size); the fusion field lists the registered methods as an enum, or explicit weights.
    """
    schema: dict[str, dict[str, Any]] = {}
    for name, spec in field_specs().items():
        schema[name] = {**spec.schema, "description": _help(spec)}
        if spec.schema.get("type") == "string" and not spec.repeatable:
            schema[name]["maxLength"] = spec.max_chars or MAX_FIELD_CHARS
    schema["fusion"] = {"anyOf": [{"type": "string", "enum": list(method_names())},
                                  {"type": "string", "pattern": weights_pattern(), "maxLength": MAX_FIELD_CHARS}],
                        "description": schema["fusion"]["description"] + " (finite weights >= 0, not 0 for "
                                       "every requested modality)"}
    return schema


def add_arguments(parser: argparse.ArgumentParser, *, skip: Iterable[str] = ()) -> None:
    """``--<field>`` options for every request field (text, checked by :func:`request_from_args`)."""
    for name, spec in field_specs().items():
        if name not in skip:
            parser.add_argument(f"--{name}", *spec.aliases, dest=name, default=None,
                                help=_help(spec).replace("%", "%%"))


def request_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> JobRequest:
    """The request the options of :func:`add_arguments` ask for; a usage error (exit 2) when one is malformed."""
    try:
        return JobRequest.from_form({name: getattr(args, name, None) for name in field_specs()})
    except ValueError as exc:
        _usage_error(parser, exc)


def check_args_video(parser: argparse.ArgumentParser, job: JobRequest, video: Path) -> None:
    """A usage error (exit 2) when the request does not fit the video (:meth:`JobRequest.check_video`), from
    its headers (nothing decoded). A file that does not probe is left to the command, which reports it."""
    from shared.media import MediaError, probe

    try:
        info = probe(video)
    except (MediaError, OSError):
        return
    try:
        job.check_video(info)
    except ValueError as exc:
        _usage_error(parser, exc)


def _usage_error(parser: argparse.ArgumentParser, exc: ValueError) -> NoReturn:
    name = str(exc).partition(":")[0]
    parser.error(f"argument --{name}: {exc}" if name in field_specs() else str(exc))
