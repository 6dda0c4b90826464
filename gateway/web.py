"""The web page: ``/`` (plain HTML) with ``/ui/app.js`` and ``/ui/app.css``, files of ``gateway/web/``.

No build step and nothing fetched from elsewhere: the page is three files served as they are (the HTML gets
the modality names and fusion methods filled in, as data attributes). The script uses only the public API
(``/v1/jobs``, ``/openapi.json``) with the API key the user pastes, which stays in the page's memory: never
in a URL, a cookie or storage, so it reaches no log. Every answer of these routes carries a strict
Content-Security-Policy (scripts and styles from this origin only, no inline code, requests to this origin
only, no framing), so even a hostile job file name shown in the page cannot run code.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from flask import Blueprint, Response

from shared.fusion_methods import method_names
from shared.settings import MODALITIES

bp = Blueprint("web", __name__)

FOLDER = Path(__file__).with_name("web")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY", "Cache-Control": "no-cache"}
ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}


@bp.get("/")
def page() -> Response:
    text = (FOLDER / "index.html").read_text(encoding="utf-8")
    text = text.replace("{{modalities}}", html.escape(json.dumps(list(MODALITIES))))
    text = text.replace("{{fusions}}", html.escape(json.dumps(list(method_names()))))
    return Response(text, mimetype="text/html", headers=HEADERS)


@bp.get("/ui/<name>")
def asset(name: str) -> Response:
    if name not in ASSETS:
        return Response("not found\n", status=404, mimetype="text/plain", headers=HEADERS)
    return Response((FOLDER / name).read_bytes(), mimetype=ASSETS[name], headers=HEADERS)
