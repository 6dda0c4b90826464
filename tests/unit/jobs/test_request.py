"""The job request (jobs.request): one parser from a form, the job hash and back, the fingerprint, and what
is generated from it (the gateway's OpenAPI form, the commands' options)."""

from __future__ import annotations

import argparse
import io
import re
from pathlib import Path

import pytest

from jobs.request import (
    MAX_FIELD_CHARS,
    JobRequest,
    add_arguments,
    check_args_video,
    field_specs,
    form_schema,
    request_from_args,
)
from shared.media import probe
from shared.settings import MODALITIES, Settings
from shared.values import PipelineOptions
from tests.ensemble_support import write_tiny_video


def test_a_form_parses_into_a_typed_request_and_back() -> None:
    job = JobRequest.from_form({"subject": " 7 ", "modalities": ["body,audio", "face"], "fusion": "paper",
                                "listener": "0.5,0,1,1"})
    assert job == JobRequest(subject=7, modalities=("audio", "face", "body"), fusion="paper", listener="0.5,0,1,1")
    assert job.to_hash() == {"subject": "7", "modalities": "audio,face,body", "fusion": "paper",
                             "listener": "0.5,0,1,1", "callback_url": ""}
    assert JobRequest.from_hash({**job.to_hash(), "state": "queued", "audio.status": "ok"}) == job
    assert JobRequest.from_form(job.to_form()) == job
    assert job.pipeline_options() == PipelineOptions(listener="0.5,0,1,1", fusion="paper")


def test_absent_fields_are_the_services_settings() -> None:
    job = JobRequest.from_form({"subject": "", "fusion": "  ", "modalities": None})
    assert job == JobRequest() and job.modalities == tuple(MODALITIES) and job.subject is None
    assert job.to_form() == {"modalities": ",".join(MODALITIES)}  # the service's subject, fusion and listener
    assert job.pipeline_options() == PipelineOptions()
    assert job.resolve(Settings(default_subject=3)).subject == 3
    assert JobRequest(subject=0).resolve(Settings(default_subject=3)).subject == 0
    assert JobRequest().resolve(Settings(callback_url="https://a.example/hook")).callback_url == "https://a.example/hook"
    assert JobRequest(callback_url="https://b.example/").resolve(
        Settings(callback_url="https://a.example/hook")).callback_url == "https://b.example/"


@pytest.mark.parametrize(("form", "message"), [
    ({"subjet": "3"}, "unknown form fields ['subjet']"),
    ({"subject": ["1", "2"]}, "form field 'subject' given more than once"),
    ({"subject": "-1"}, "subject: subject must be an integer"),
    ({"subject": "\u0663"}, "subject: subject must be an integer"),
    ({"modalities": "audio,smell"}, "modalities: unknown modalities ['smell']"),
    ({"fusion": "best"}, "fusion: bad fusion weight 'best'"),
    ({"fusion": "audio=-1"}, "fusion: fusion weight of 'audio' must be a finite number >= 0"),
    ({"fusion": "audio=inf"}, "fusion: fusion weight of 'audio' must be a finite number >= 0"),
    ({"fusion": "audio=nan,text=1"}, "fusion: fusion weight of 'audio' must be a finite number >= 0"),
    ({"fusion": "audio=x"}, "fusion: fusion weight of 'audio' is not a number"),
    ({"fusion": "audio=0,text=0"}, "are all zero"),
    ({"fusion": "text=1", "modalities": "audio,body"}, "fusion: 'text=1' gives weight 0 to every requested modality"),
    ({"fusion": "audio=1," * 40}, f"fusion: longer than {MAX_FIELD_CHARS} characters"),  # refused, never cut
    ({"listener": "0.6,0,0.5,1"}, "listener: "),
    ({"callback_url": "ftp://example.org/x"}, "callback_url: must be an absolute http:// or https:// URL"),
    ({"callback_url": "https://user:pw@example.org/x"}, "callback_url: must not carry credentials"),
    ({"callback_url": "https://example.org/a b"}, "callback_url: must be printable ASCII"),
    ({"callback_url": "https://example.org:99999/"}, "callback_url: not a URL"),
    ({"callback_url": "https://example.org/" + "a" * 2100}, "callback_url: longer than 2048 characters"),
])
def test_a_malformed_form_is_refused_with_the_field_named(form: dict, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        JobRequest.from_form(form)
    assert message in str(caught.value)


def test_the_fingerprint_covers_the_upload_and_every_field() -> None:
    def fingerprint(job: JobRequest, video: bytes = b"video", transcript: bytes | None = None) -> str:
        return job.fingerprint(io.BytesIO(video), None if transcript is None else io.BytesIO(transcript))

    base = JobRequest(subject=1)
    assert fingerprint(base) == fingerprint(JobRequest.from_form({"subject": "1"}))
    others = {fingerprint(base, b"other"), fingerprint(base, transcript=b"{}"), fingerprint(JobRequest(subject=2)),
              fingerprint(JobRequest(subject=1, fusion="paper")), fingerprint(JobRequest(subject=1, listener="full")),
              fingerprint(JobRequest(subject=1, modalities=("audio",)))}
    assert fingerprint(base) not in others and len(others) == 6


def test_the_openapi_form_and_the_command_options_follow_the_fields() -> None:
    schema = form_schema()
    assert list(schema) == list(field_specs()) == ["subject", "modalities", "fusion", "listener", "callback_url"]
    assert schema["subject"]["type"] == "integer" and all(s.get("description") for s in schema.values())
    parser = argparse.ArgumentParser(prog="empathy test")
    add_arguments(parser)
    args = parser.parse_args(["--subject", "2", "--weights", "ccc", "--modalities", "text",
                              "--callback-url", "https://example.org/hook?k=1"])
    assert request_from_args(parser, args) == JobRequest(subject=2, modalities=("text",), fusion="ccc",
                                                         callback_url="https://example.org/hook?k=1")
    with pytest.raises(SystemExit) as usage:
        request_from_args(parser, parser.parse_args(["--listener", "left"]))
    assert usage.value.code == 2


def test_the_request_meets_the_video_it_is_for(tmp_path: Path) -> None:
    """A listener box must cover at least 32x32 pixels of the actual video (its header-probed size): a 1x0 box
    used to be accepted and fail three workers. The same check serves the gateway and the commands."""
    video = write_tiny_video(tmp_path / "clip.mp4")  # 64x48
    info = probe(video)
    JobRequest.from_form({"listener": "0,0,0.5,1"}).check_video(info)  # 32x48: enough
    JobRequest().check_video(info)
    with pytest.raises(ValueError, match=r"^listener: the box 0,0,0.02,0.5 is 1x24 pixels of the 64x48 video"):
        JobRequest.from_form({"listener": "0,0,0.02,0.5"}).check_video(info)
    with pytest.raises(ValueError, match="of subject 1 is 6x24 pixels"):
        JobRequest.from_form({"listener": "1=0.5,0.5,0.6,1;*=full"}).check_video(info)
    parser = argparse.ArgumentParser(prog="empathy test")
    add_arguments(parser)
    job = request_from_args(parser, parser.parse_args(["--listener", "0,0,0.02,0.5"]))
    with pytest.raises(SystemExit) as usage:
        check_args_video(parser, job, video)
    assert usage.value.code == 2
    check_args_video(parser, job, tmp_path / "not-a-video.mp4")  # left to the command, which reports it


@pytest.mark.parametrize(("name", "accepted", "refused"), [
    ("modalities", ["audio", "audio,text,body"], ["smell", "audio,", " audio"]),
    ("listener", ["auto", "full", "0.5,0,1,1", "1=full;*=0.5,0.5,0.6,1"], ["left", "0,0,nan,1", "2,0,1,1"]),
])
def test_the_openapi_patterns_are_never_looser_than_the_parser(name: str, accepted: list[str],
                                                               refused: list[str]) -> None:
    pattern = form_schema()[name]["pattern"]
    for text in accepted:
        assert re.match(pattern, text) and JobRequest.from_form({name: text}), text
    for text in refused:
        assert not re.match(pattern, text), text


def test_the_openapi_fusion_is_a_method_or_finite_explicit_weights() -> None:
    schema = form_schema()
    methods, weights = schema["fusion"]["anyOf"]
    assert methods["enum"] == ["paper", "ccc", "learned"] and weights["maxLength"] == MAX_FIELD_CHARS
    for text in ("audio=1", "audio=0.5,text=2.25"):
        assert re.match(weights["pattern"], text) and JobRequest.from_form({"fusion": text}).fusion == text
    for text in ("audio=inf", "audio=nan", "audio=-1", "audio=1e3", "smell=1", "audio=1,"):
        assert not re.match(weights["pattern"], text), text
    assert schema["listener"]["maxLength"] == MAX_FIELD_CHARS and "maxLength" not in schema["modalities"]
    assert schema["subject"]["maximum"] == 2**31 - 1
