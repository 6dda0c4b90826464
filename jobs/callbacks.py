"""Completion callbacks: where the service may send them (no server-side request forgery) and one delivery.

A job may name a ``callback_url`` (:class:`jobs.request.JobRequest`); when it ends, the fusion worker's
courier (:mod:`services.courier`) POSTs the job document there, signed with the owner's webhook secret
(:mod:`empathy_client.webhooks`, the scheme a receiver checks with). The URL comes from a client, so the
service must not become a way into its own network:

* **at submission** (:meth:`CallbackPolicy.check_url`, the gateway answers 400): ``https`` only unless
  ``EMPATHY_CALLBACK_ALLOW_HTTP``, and the host on the ``EMPATHY_CALLBACK_HOSTS`` allow-list (empty: no
  callbacks at all);
* **before every delivery** (:meth:`CallbackPolicy.resolve`): the same checks, then every address the host
  resolves to must be public. Loopback, private, link-local (169.254.169.254, the cloud metadata service),
  shared (100.64/10), multicast, reserved and unspecified addresses, IPv4-mapped ones included, are refused
  unless inside an explicitly allowed network (``EMPATHY_CALLBACK_ALLOW_NETWORKS``, e.g. ``127.0.0.1/32`` in
  tests). The connection then goes to the very address that was checked (:func:`deliver` pins it; TLS still
  verifies the host name), so a DNS answer that changes between check and connect cannot redirect it.
  Redirects are not followed.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from empathy_client.webhooks import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, secret_for, sign
from shared.settings import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_ANSWER_BYTES = 64 * 1024  # of the receiver's answer, read and dropped
USER_AGENT = "empathy-callbacks/1"


class CallbackRefused(ValueError):
    """The service may not call this URL (scheme, allow-list, or an address that is not public)."""


def _public(address: Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        return _public(mapped)
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_link_local
                                      or address.is_loopback or address.is_unspecified or address.is_private)


@dataclass(frozen=True)
class CallbackPolicy:
    """Where callbacks may go: the allow-list, whether http is allowed, the non-public networks allowed."""

    hosts: tuple[str, ...] = ()
    allow_http: bool = False
    networks: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> CallbackPolicy:
        """``EMPATHY_CALLBACK_HOSTS``, ``EMPATHY_CALLBACK_ALLOW_HTTP``, ``EMPATHY_CALLBACK_ALLOW_NETWORKS``."""
        hosts = tuple(h.strip().lower().rstrip(".") for h in settings.callback_hosts.split(",") if h.strip())
        networks = tuple(ipaddress.ip_network(n.strip(), strict=False)
                         for n in settings.callback_allow_networks.split(",") if n.strip())
        return cls(hosts=hosts, allow_http=settings.callback_allow_http, networks=networks)

    def host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for pattern in self.hosts:
            if pattern == "*" or pattern == host:
                return True
            if pattern.startswith("*.") and host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        return False

    def check_url(self, url: str) -> urllib.parse.SplitResult:
        """The URL's parts when its scheme and host are allowed (no DNS here); :class:`CallbackRefused` if not."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" and not (parts.scheme == "http" and self.allow_http):
            raise CallbackRefused("callback_url must be https (EMPATHY_CALLBACK_ALLOW_HTTP is off)")
        if not self.hosts:
            raise CallbackRefused("callbacks are off on this service (EMPATHY_CALLBACK_HOSTS is empty)")
        if not parts.hostname or not self.host_allowed(parts.hostname):
            raise CallbackRefused(f"callback host {str(parts.hostname)[:100]!r} is not on the service's allow-list "
                                  "(EMPATHY_CALLBACK_HOSTS)")
        return parts

    def address_allowed(self, address: Address) -> bool:
        return _public(address) or any(address in network for network in self.networks
                                       if network.version == address.version)

    def resolve(self, url: str, *, getaddrinfo: Callable[..., Any] = socket.getaddrinfo) -> list[str]:
        """The addresses the URL's host resolves to, once every one of them is allowed.

        One refused address refuses the URL: a host that resolves to a public and a private address is
        a rebinding attempt as often as not.
        """
        parts = self.check_url(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise ConnectionError(f"cannot resolve {parts.hostname}: {exc}") from None
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            if not self.address_allowed(address):
                raise CallbackRefused(f"callback host {parts.hostname} resolves to {address}, which is not a public "
                                      "address (EMPATHY_CALLBACK_ALLOW_NETWORKS allows one explicitly)")
        if not addresses:
            raise ConnectionError(f"{parts.hostname} has no address")
        return addresses


def webhook_secret(settings: Settings, owner: str) -> str:
    """The webhook secret of an API key (``owner``: its digest); :class:`CallbackRefused` without a signing key."""
    if not settings.webhook_signing_key:
        raise CallbackRefused("callbacks are off on this service (no EMPATHY_WEBHOOK_SIGNING_KEY)")
    return secret_for(settings.webhook_signing_key, owner)


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt as recorded on the job: when, the HTTP status (0: none), the error, how long."""

    at: float
    status: int
    seconds: float
    error: str = ""

    @property
    def delivered(self) -> bool:
        return 200 <= self.status < 300

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"at": round(self.at, 3), "status": self.status, "seconds": round(self.seconds, 3)}
        if self.error:
            entry["error"] = self.error
        return entry


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to one checked address, whatever the host name resolves to now."""

    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection to one checked address; the certificate is still checked against the host name."""

    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


def deliver(url: str, document: dict[str, Any], *, event: str, secret: str, policy: CallbackPolicy,
            timeout_s: float, resolve: Callable[[str], Sequence[str]] | None = None) -> Attempt:
    """One signed POST of ``document`` to ``url``; the attempt as recorded (2xx = delivered).

    The policy is applied again here (allow-list, then the resolved addresses); the connection goes to the
    first checked address. The whole attempt (connect, send, the answer's head and up to 64 KiB of its body)
    is cut off after ``timeout_s``, however the receiver trickles its bytes. Raises :class:`CallbackRefused`
    when the policy refuses the URL (not worth a retry).
    """
    started, at = time.monotonic(), time.time()
    body = json.dumps(document, separators=(",", ":")).encode()
    addresses = (resolve or policy.resolve)(url)  # CallbackRefused propagates: a refused URL is final
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    kind = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    connection = kind(parts.hostname or "", addresses[0], port, timeout_s)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, SIGNATURE_HEADER: sign(secret, body),
               EVENT_HEADER: event, DELIVERY_HEADER: uuid.uuid4().hex}
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    expired = threading.Event()

    def cut_off() -> None:  # the deadline of the whole attempt: unblock whatever read or write is waiting
        expired.set()
        if connection.sock is not None:
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    deadline = threading.Timer(timeout_s, cut_off)
    deadline.start()
    timed_out = False  # the socket's own timeout (the same timeout_s) may fire before the deadline's timer
    try:
        connection.request("POST", path, body=body, headers=headers)
        answer = connection.getresponse()
        answer.read(MAX_ANSWER_BYTES)
        status = answer.status
        error = "" if 200 <= status < 300 else f"answered {status} {answer.reason}"[:200]
    except (OSError, http.client.HTTPException) as exc:
        status, error = 0, f"{type(exc).__name__}: {exc}"[:200]
        timed_out = isinstance(exc, TimeoutError)
    finally:
        deadline.cancel()
        connection.close()
    if status == 0 and (expired.is_set() or timed_out):
        error = f"no complete answer within {timeout_s:g} s (EMPATHY_CALLBACK_TIMEOUT_S)"
    return Attempt(at=at, status=status, seconds=time.monotonic() - started, error=error)
