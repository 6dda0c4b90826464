"""API keys of the gateway: who may call ``/v1``, and which jobs belong to whom.

Keys are bearer tokens (``Authorization: Bearer <token>``) configured as ``name:token`` pairs in
``EMPATHY_API_KEYS`` or, better (no secret in the environment of every process), one per line in the file
``EMPATHY_API_KEYS_FILE``. Only SHA-256 digests of the tokens are kept in memory and in Redis: a job's
``owner`` is the digest of the token that created it, so a leaked job store reveals no key, and a job is
visible only to requests that present the same token. Tokens are compared in constant time
(:func:`hmac.compare_digest` over every configured key) so response times say nothing about how much of
a guess was right.

Authentication is on by default. ``EMPATHY_AUTH=off`` turns it off for local development: every request
is then the anonymous owner ``""`` and sees every job. Turning it on without any key is a configuration
error, reported at start-up instead of a gateway that refuses everything.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from shared.settings import Settings

log = logging.getLogger(__name__)

ANONYMOUS = ""  # the owner of every job while authentication is off
MIN_TOKEN_LENGTH = 16


class AuthConfigError(ValueError):
    """The key configuration is unusable (malformed entry, short token, missing file, no key at all)."""


@dataclass(frozen=True)
class Caller:
    """Who made a request: the key's name (for logs) and the owner digest jobs are filed under."""

    name: str
    owner: str


def token_digest(token: str) -> str:
    """Hex SHA-256 of a token: what is stored and compared, never the token itself."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_keys(entries: Iterable[str], *, source: str) -> dict[str, str]:
    """``name:token`` entries (blank ones skipped) -> {digest: name}; ``source`` names them in errors."""
    keys: dict[str, str] = {}
    for number, raw in enumerate(entries, start=1):
        entry = raw.strip()
        if not entry:
            continue
        name, sep, token = entry.partition(":")
        name, token = name.strip(), token.strip()
        if not sep or not name or not token:
            raise AuthConfigError(f"{source}: entry {number} is not 'name:token'")
        if len(token) < MIN_TOKEN_LENGTH:
            raise AuthConfigError(f"{source}: the token of {name!r} is shorter than {MIN_TOKEN_LENGTH} characters")
        keys[token_digest(token)] = name
    return keys


def load_keys(settings: Settings) -> dict[str, str]:
    """Every configured key as {digest: name}: ``EMPATHY_API_KEYS`` (comma-separated) and the lines of
    ``EMPATHY_API_KEYS_FILE`` (``#`` starts a comment)."""
    keys = parse_keys(settings.api_keys.split(","), source="EMPATHY_API_KEYS")
    if settings.api_keys_file:
        path = Path(settings.api_keys_file)
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise AuthConfigError(f"EMPATHY_API_KEYS_FILE={path}: cannot read it ({exc.strerror})") from None
        keys.update(parse_keys([line.split("#", 1)[0] for line in lines], source=f"EMPATHY_API_KEYS_FILE={path}"))
    return keys


class Authenticator:
    """Checks the bearer token of a request against the configured keys."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.auth
        self.keys = load_keys(settings) if self.enabled else {}
        if self.enabled and not self.keys:
            raise AuthConfigError("authentication is on (EMPATHY_AUTH) but no API key is configured: set "
                                  "EMPATHY_API_KEYS_FILE or EMPATHY_API_KEYS ('name:token'), or EMPATHY_AUTH=off "
                                  "for local development only")
        log.info("gateway authentication", extra={"enabled": self.enabled, "keys": sorted(self.keys.values())})

    def identify(self, authorization: str | None) -> Caller | None:
        """The caller of an ``Authorization`` header value; None when it carries no valid key."""
        if not self.enabled:
            return Caller(name="anonymous", owner=ANONYMOUS)
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        presented = token_digest(token.strip())
        found: Caller | None = None
        for digest, name in self.keys.items():  # no early exit: the time taken does not depend on the match
            if hmac.compare_digest(presented, digest):
                found = Caller(name=name, owner=digest)
        return found

    @staticmethod
    def owns(caller: Caller, owner: str | None) -> bool:
        """Whether ``caller`` may see a job filed under ``owner`` (constant-time comparison)."""
        return owner is not None and hmac.compare_digest(caller.owner, owner)


class FailureLimiter:
    """How many refused requests (401, 404 for unknown jobs) a client address or a presented key made lately.

    Guessing keys or job ids costs the guesser a request each; beyond ``limit`` refusals within
    ``window_s`` every request of that address or key is answered 429 (``Retry-After``) without being
    looked at, until the oldest refusal leaves the window. Counted per key too, so a guesser spreading over
    many addresses still cannot hammer one key, and per address, so random keys from one address do not
    escape. In memory, per gateway process: a limit on cost, not an accounting.
    """

    MAX_SUBJECTS = 50_000  # bound on remembered addresses/keys (random keys must not grow memory forever)

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, subject: str, now: float) -> deque[float] | None:
        events = self._events.get(subject)
        while events and events[0] <= now - self.window_s:
            events.popleft()
        return events

    def retry_after(self, *subjects: str) -> float | None:
        """Seconds until the first of ``subjects`` is allowed again; None when none is over the limit."""
        if self.limit <= 0:
            return None
        now = time.monotonic()
        waits = []
        with self._lock:
            for subject in subjects:
                events = self._recent(subject, now)
                if events and len(events) >= self.limit:
                    waits.append(events[-self.limit] + self.window_s - now)
        return max(waits) if waits else None

    def record(self, *subjects: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._events) >= self.MAX_SUBJECTS:
                for subject in [s for s in self._events if not self._recent(s, now)]:
                    del self._events[subject]
                while len(self._events) >= self.MAX_SUBJECTS:
                    del self._events[next(iter(self._events))]  # oldest inserted first
            for subject in subjects:
                self._events.setdefault(subject, deque()).append(now)


def presented_key(authorization: str | None) -> str | None:
    """A short digest naming the token a request presented (valid or not), for :class:`FailureLimiter`."""
    scheme, _, token = (authorization or "").partition(" ")
    return f"key:{token_digest(token.strip())[:32]}" if scheme.lower() == "bearer" and token.strip() else None
