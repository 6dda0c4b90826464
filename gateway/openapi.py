"""The gateway's OpenAPI 3.0 description, served at ``/openapi.json``.

Written by hand next to the code it describes, but for the job form's fields, which come from the job request
(:func:`jobs.request.form_schema`: patterns and lengths never looser than its parser; no extra fields).
``tests/unit/gateway/test_jobs_api.py`` checks that every Flask route is documented here and every documented
operation exists, so the two cannot drift apart; ``tests/unit/gateway/test_fuzz.py`` fuzzes the API from it.
"""

from __future__ import annotations

from typing import Any

from gateway.uploads import MAX_FIELD_BYTES, MAX_FILE_PARTS, MAX_FORM_PARTS, MAX_TRANSCRIPT_BYTES
from jobs.request import form_schema
from jobs.store import MAX_PAGE, STATES
from shared.crops import MIN_LISTENER_PX

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json({"$ref": "#/components/schemas/Error"}, description)


MODALITY_STATUS = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["queued", "preparing", "predicting", "postprocessing",
                                              "ok", "unavailable", "failed"]},
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
        "detail": {"type": "string", "description": "why a modality failed or is unavailable"},
        "seconds": {"type": "number"},
        "attempts": {"type": "integer", "description": "deliveries, when the task was re-delivered"},
    },
    "required": ["status", "progress"],
}

JOB = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "state": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
        "subject": {"type": "integer"},
        "filename": {"type": "string"},
        "created": {"type": "number", "description": "epoch seconds: accepted"},
        "updated": {"type": "number", "description": "epoch seconds: last change"},
        "started": {"type": "number", "description": "epoch seconds: the first modality started"},
        "finished": {"type": "number", "description": "epoch seconds: done or failed"},
        "error": {"type": "string"},
        "used": {"type": "array", "items": {"type": "string"}, "description": "modalities fusion used (when done)"},
        "degraded": {"type": "boolean", "description": "done with fewer modalities than requested"},
        "modalities": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/ModalityStatus"}},
        "callback": {"$ref": "#/components/schemas/Callback"},
        "links": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["id", "state", "progress", "modalities"],
}

CALLBACK = {
    "type": "object",
    "description": "the completion callback of a job with a callback_url, and its deliveries",
    "properties": {
        "url": {"type": "string"},
        "state": {"type": "string", "enum": ["waiting", "pending", "delivered", "failed", "refused"],
                  "description": "waiting: the job is not finished; pending: being delivered or retried"},
        "next_attempt": {"type": "number", "description": "epoch seconds of the next retry (pending)"},
        "attempts": {"type": "array", "items": {"type": "object", "properties": {
            "at": {"type": "number"}, "status": {"type": "integer", "description": "HTTP status; 0: no answer"},
            "seconds": {"type": "number"}, "error": {"type": "string"}}, "required": ["at", "status", "seconds"]}},
    },
    "required": ["url", "state", "attempts"],
}

JOB_LIST = {
    "type": "object",
    "properties": {
        "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}, "description": "newest first"},
        "next_cursor": {"type": "string", "nullable": True, "description": "the next page's cursor; null: the end"},
    },
    "required": ["jobs", "next_cursor"],
}

SERIES = {"type": "array", "items": {"type": "number", "nullable": True},
          "description": "one value per 25 fps frame; null where missing"}

RESULT = {
    "type": "object",
    "properties": {
        "job": {"type": "string"},
        "video": {"type": "string"},
        "subject": {"type": "integer"},
        "fps": {"type": "number"},
        "n_frames": {"type": "integer"},
        "duration_s": {"type": "number"},
        "seconds": {"type": "number", "description": "from upload to fused result"},
        "valence": SERIES,
        "agreement": {**SERIES, "description": "per frame, 1 - weighted std of the modules / subject std, in [0, 1]"},
        "band": {"type": "object", "description": "per-frame confidence band of the fused curve", "properties": {
            "low": SERIES, "high": SERIES,
            "coverage": {"type": "number", "nullable": True,
                         "description": "share of ground truth it held on validation (null: uncalibrated)"}}},
        "fusion": {"type": "object", "properties": {
            "used": {"type": "array", "items": {"type": "string"}},
            "weights": {"type": "object", "additionalProperties": {"type": "number"}},
            "weights_spec": {"type": "string"}, "method": {"type": "string"},
            "cutoff_hz": {"type": "number", "description": "final low-pass applied (after the clip-length bound)"},
            "cutoff_requested_hz": {"type": "number"},
            "model_version": {"type": "integer", "nullable": True, "description": "models/fusion version"}}},
        "degraded": {"type": "boolean", "description": "some requested modality did not contribute"},
        "notes": {"type": "array", "items": {"type": "string"},
                  "description": "e.g. an unknown subject, the listener region searched, an ambiguous listener"},
        "label_range": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
                        "description": "[low, high]: every valence value (fused and per module) lies within"},
        "modalities": {"type": "object", "additionalProperties": {"type": "object", "properties": {
            "status": {"type": "string"}, "detail": {"type": "string"}, "seconds": {"type": "number"},
            "model_version": {"type": "integer", "nullable": True}, "valence": SERIES,
            "quality": {"type": "object", "description": (
                "what the module's curve rests on: no_signal (why it carries none, '' when it does: silence, a "
                "frozen picture, a flat prediction; then it is flat and weighed 0), raw_spread and "
                "reference_spread, face (coverage, frames_with_face, spans_without_s), model (version, trained_on, "
                "zero_training)"),
                "properties": {"no_signal": {"type": "string"}, "face": {"type": "object"},
                               "model": {"type": "object"}}}}}},
    },
    "required": ["n_frames", "fps", "valence", "agreement", "modalities"],
}

_UNAUTHORIZED = {"401": _error("missing or invalid API key"),
                 "429": _error("too many refused requests from this address or key (EMPATHY_AUTH_FAILURE_LIMIT)")}
_UNAVAILABLE = {"503": _error("Redis (job store / broker) unavailable; retry later")}

def spec() -> dict[str, Any]:
    """The document, built when asked: the form follows the job request and the registered fusion methods."""
    return {
        "openapi": "3.0.3",
        "security": [{"bearer": []}],
        "info": {
            "title": "Empathic valence gateway",
            "version": "1",
            "description": "Upload a video of a listener; get per-frame valence (25 fps) from five modality models "
                           "fused as in 'Alpha and City' (OMG-Empathy), with a per-frame agreement signal.",
        },
        "paths": {
            "/v1/jobs": {
                "get": {
                    "summary": "The caller's jobs, newest first, a page at a time",
                    "parameters": [
                        {"name": "limit", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 20}},
                        {"name": "state", "in": "query", "required": False,
                         "schema": {"type": "string", "pattern": f"^(({'|'.join(STATES)})(,({'|'.join(STATES)}))*)?$"},
                         "description": "only jobs in these states (comma list; empty: every state)"},
                        {"name": "cursor", "in": "query", "required": False,
                         "schema": {"type": "string", "pattern": r"^[0-9]{1,12}\.[0-9]{3}-[0-9a-f]{32}$"},
                         "description": "next_cursor of the previous page"},
                    ],
                    "responses": {"200": _json({"$ref": "#/components/schemas/JobList"}, "one page of jobs"),
                                  "400": _error("bad limit, state or cursor"), **_UNAUTHORIZED, **_UNAVAILABLE},
                },
                "post": {
                    "summary": "Submit a video for analysis",
                    "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                    "schema": {"type": "string", "pattern": "^[!-~]{1,200}$"},
                                    "description": "the same key and upload again returns the first job (200)"}],
                    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                        "type": "object",
                        "properties": {
                            "video": {"type": "string", "format": "binary",
                                      "description": "a video (a still image is 415, from its header): frames, "
                                                     "pixel rate and duration within the limits (413), read "
                                                     "from its headers; nothing is decoded at upload"},
                            "transcript": {"type": "string", "format": "binary",
                                           "description": "optional word timings (JSON), used instead of ASR"},
                            **form_schema(),  # the job request's fields (jobs.request.JobRequest)
                        },
                        "required": ["video"],
                        "additionalProperties": False,
                    }, "encoding": {"video": {"contentType": "video/*, application/octet-stream"}}}}},
                    "responses": {
                        "202": _json({"$ref": "#/components/schemas/Job"}, "accepted; Location gives the job URL"),
                        "200": _json({"$ref": "#/components/schemas/Job"}, "idempotent replay: the job this key made"),
                        "400": _error("bad or unknown form field, empty upload, bad transcript, fusion weights 0 "
                                      "for every requested modality, listener box under "
                                      f"{MIN_LISTENER_PX}x{MIN_LISTENER_PX} pixels of the video, a callback_url "
                                      "the service may not call"),
                        **_UNAUTHORIZED,
                        "409": _error("the same idempotency key is still being processed"),
                        "408": _error("the upload arrived slower than EMPATHY_UPLOAD_MIN_RATE_KIB_S"),
                        "413": _error("upload larger than EMPATHY_MAX_UPLOAD_MB, longer than EMPATHY_MAX_DURATION_S, "
                                      "frames larger than EMPATHY_MAX_FRAME_SIZE or pixel rate above "
                                      "EMPATHY_MAX_PIXEL_RATE; a form with more than "
                                      f"{MAX_FORM_PARTS} parts, {MAX_FILE_PARTS} files or a text field over "
                                      f"{MAX_FIELD_BYTES // 1024} KiB; a transcript over "
                                      f"{MAX_TRANSCRIPT_BYTES >> 20} MiB"),
                        "415": _error("not a usable video (a still image, not media, truncated, no video stream, "
                                      "no frames, headers without a frame size, shorter than "
                                      "EMPATHY_MIN_DURATION_S)"),
                        "429": _error("too many refused requests (EMPATHY_AUTH_FAILURE_LIMIT), or this key's "
                                      "EMPATHY_KEY_ACTIVE_JOBS / EMPATHY_KEY_JOBS_PER_MINUTE"),
                        "422": _error("idempotency key reused for a different upload"),
                        **_UNAVAILABLE,
                    },
                },
            },
            "/v1/jobs/{job_id}": {
                "parameters": [_JOB_ID],
                "get": {"summary": "State and per-modality progress of a job",
                        "responses": {"200": _json({"$ref": "#/components/schemas/Job"}, "the job"),
                                      **_UNAUTHORIZED, "404": _error("unknown job (or another key's)"),
                                      **_UNAVAILABLE}},
                "delete": {"summary": "Delete a job, its video and its results (revokes pending tasks)",
                           "responses": {"204": {"description": "deleted"}, **_UNAUTHORIZED,
                                         "404": _error("unknown job (or another key's)"), **_UNAVAILABLE}},
            },
            "/v1/jobs/{job_id}/result": {
                "parameters": [_JOB_ID, {"name": "format", "in": "query", "required": False,
                                         "schema": {"type": "string", "enum": ["json", "csv"], "default": "json"}}],
                "get": {"summary": "Fused valence, agreement and every module's curve",
                        "responses": {"200": {"description": "the result",
                                              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Result"}},
                                                          "text/csv": {"schema": {"type": "string"}}}},
                                      "400": _error("bad format"), **_UNAUTHORIZED, "404": _error("unknown job"),
                                      "409": _error("job not done (or failed)"), "410": _error("result files gone")}},
            },
            "/v1/jobs/{job_id}/plot.png": {
                "parameters": [_JOB_ID],
                "get": {"summary": "Modules, fusion and agreement over time (like the paper's Fig. 3)",
                        "responses": {"200": {"description": "PNG", "content": {"image/png": {}}},
                                      **_UNAUTHORIZED, "404": _error("unknown job"), "409": _error("job not done"),
                                      "410": _error("result files gone")}},
            },
            "/v1/webhooks/secret": {
                "get": {"summary": "The caller's webhook secret: callbacks are signed with it (Empathy-Signature)",
                        "responses": {"200": _json({"type": "object", "properties": {
                            "secret": {"type": "string"}, "signature_header": {"type": "string"},
                            "event_header": {"type": "string"}, "scheme": {"type": "string"}},
                            "required": ["secret", "signature_header", "event_header", "scheme"]}, "the secret"),
                                      **_UNAUTHORIZED,
                                      "409": _error("callbacks are off (no EMPATHY_WEBHOOK_SIGNING_KEY)"),
                                      **_UNAVAILABLE}},
            },
            "/": {"get": {"summary": "The web page (HTML; the key is pasted into it, never sent in a URL)",
                          "security": [], "responses": {"200": {"description": "HTML",
                                                                "content": {"text/html": {}}}}}},
            "/ui/{name}": {"get": {"summary": "The web page's script and style sheet", "security": [],
                                   "parameters": [{"name": "name", "in": "path", "required": True,
                                                   "schema": {"type": "string", "enum": ["app.js", "app.css"]}}],
                                   "responses": {"200": {"description": "the file", "content": {
                                       "text/javascript": {}, "text/css": {}}},
                                                 "404": {"description": "no such file",
                                                         "content": {"text/plain": {}}}}}},
            "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": _json({"type": "object"}, "alive")}}},
            "/readyz": {"get": {"summary": "Readiness: Redis, the job storage and every model server (gRPC GetModelStatus)",
                                "security": [],
                                "responses": {"200": _json({"type": "object"}, "ready"),
                                              "503": _json({"type": "object"}, "not ready; checks say why")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "security": [],
                                 "responses": {"200": {"description": "text exposition format",
                                                       "content": {"text/plain": {}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "security": [],
                                      "responses": {"200": _json({"type": "object"}, "OpenAPI 3.0")}}},
        },
        "components": {
            "schemas": {"Error": _ERROR, "Job": JOB, "JobList": JOB_LIST, "Callback": CALLBACK,
                        "ModalityStatus": MODALITY_STATUS, "Result": RESULT},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "an API key of EMPATHY_API_KEYS / EMPATHY_API_KEYS_FILE"}},
        },
    }
