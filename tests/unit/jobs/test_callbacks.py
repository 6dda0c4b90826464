"""jobs.callbacks: where callbacks may go (SSRF refusals after DNS resolution) and one signed delivery to a
real HTTP receiver, whose signature the receivers' verifier (empathy_client.webhooks) accepts."""

from __future__ import annotations

import ipaddress
import json
import socket
import socketserver
import threading
import time

import pytest

from empathy_client.webhooks import (
    SIGNATURE_HEADER,
    WebhookVerificationError,
    secret_for,
    sign,
    verify,
)
from jobs.callbacks import CallbackPolicy, CallbackRefused, deliver
from shared.settings import Settings
from tests.webhook_receiver import Receiver

LOCAL = CallbackPolicy(hosts=("127.0.0.1", "localhost"), allow_http=True,
                       networks=(ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128")))


def test_the_policy_is_read_from_the_settings() -> None:
    policy = CallbackPolicy.from_settings(Settings(callback_hosts="hooks.example.org, *.example.net",
                                                   callback_allow_http=True, callback_allow_networks="10.1.0.0/16"))
    assert policy.hosts == ("hooks.example.org", "*.example.net") and policy.allow_http
    assert policy.host_allowed("HOOKS.example.org.") and policy.host_allowed("a.b.example.net")
    assert not policy.host_allowed("example.net") and not policy.host_allowed("evil-example.net")
    assert not policy.host_allowed("hooks.example.org.evil.com")
    assert policy.address_allowed(ipaddress.ip_address("10.1.2.3"))
    assert not policy.address_allowed(ipaddress.ip_address("10.2.0.1"))


@pytest.mark.parametrize(("policy", "url", "reason"), [
    (CallbackPolicy(), "https://hooks.example.org/x", "EMPATHY_CALLBACK_HOSTS is empty"),
    (CallbackPolicy(hosts=("*",)), "http://hooks.example.org/x", "must be https"),
    (CallbackPolicy(hosts=("hooks.example.org",)), "https://other.example.org/x", "not on the service's allow-list"),
])
def test_scheme_and_allow_list_are_checked_before_any_lookup(policy: CallbackPolicy, url: str, reason: str) -> None:
    with pytest.raises(CallbackRefused, match=reason):
        policy.check_url(url)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5", "172.16.3.4", "192.168.1.1", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1", "::1", "fd00::1",
                                     "fe80::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "fd00:ec2::254"])
def test_addresses_that_are_not_public_are_refused(address: str) -> None:
    policy = CallbackPolicy(hosts=("*",))
    assert not policy.address_allowed(ipaddress.ip_address(address))


def test_public_addresses_pass() -> None:
    policy = CallbackPolicy(hosts=("*",))
    for address in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"):
        assert policy.address_allowed(ipaddress.ip_address(address))


def test_a_name_resolving_to_loopback_is_refused_unless_its_network_is_allowed() -> None:
    """Real resolution of 'localhost' (the allow-list names it; the address it resolves to decides)."""
    refused = CallbackPolicy(hosts=("localhost",), allow_http=True)
    with pytest.raises(CallbackRefused, match=r"resolves to (127\.0\.0\.1|::1), which is not a public address"):
        refused.resolve("http://localhost:9/hook")
    assert "127.0.0.1" in LOCAL.resolve("http://localhost:9/hook")


def test_one_private_address_among_public_ones_refuses_the_host() -> None:
    """A DNS answer mixing a public and a private address (rebinding) is refused as a whole."""
    def answer(host: str, port: int, **_: object) -> list:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]

    with pytest.raises(CallbackRefused, match="169.254.169.254"):
        CallbackPolicy(hosts=("*",)).resolve("https://rebind.example.org/", getaddrinfo=answer)


def test_a_delivery_is_signed_and_the_verifier_accepts_it() -> None:
    secret = secret_for("signing-key", "owner-digest")
    with Receiver() as receiver:
        attempt = deliver(receiver.url + "?tag=7", {"event": "job.done", "job": {"id": "a" * 32}}, event="job.done",
                          secret=secret, policy=LOCAL, timeout_s=5)
        (received,) = receiver.wait(1, timeout=5)
    assert attempt.delivered and attempt.status == 200 and attempt.error == "" and attempt.seconds < 5
    assert received.path == "/hook?tag=7" and received.headers["Empathy-Event"] == "job.done"
    assert received.headers["Content-Type"] == "application/json"
    assert verify(secret, received.headers[SIGNATURE_HEADER], received.body) == {"event": "job.done",
                                                                                 "job": {"id": "a" * 32}}
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify(secret_for("signing-key", "another-owner"), received.headers[SIGNATURE_HEADER], received.body)
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify(secret, received.headers[SIGNATURE_HEADER], received.body.replace(b"done", b"fail"))


def test_the_verifier_refuses_old_malformed_and_missing_signatures() -> None:
    body = json.dumps({"event": "job.failed"}).encode()
    old = sign("s3cret", body, timestamp=int(time.time()) - 3600)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify("s3cret", old, body)
    assert verify("s3cret", old, body, tolerance_s=7200) == {"event": "job.failed"}
    for header in (None, "", "v1=abc", "t=x,v1=abc", "t=1"):
        with pytest.raises(WebhookVerificationError):
            verify("s3cret", header, body)
    rotated = sign("new", body) + "," + sign("s3cret", body).split(",")[1]
    assert verify("s3cret", rotated, body) == {"event": "job.failed"}


def test_an_error_answer_or_no_answer_is_a_failed_attempt() -> None:
    with Receiver(answers=(503,)) as receiver:
        attempt = deliver(receiver.url, {}, event="job.done", secret="s", policy=LOCAL, timeout_s=5)
    assert not attempt.delivered and attempt.status == 503 and "503" in attempt.error
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    attempt = deliver(f"http://127.0.0.1:{port}/", {}, event="job.done", secret="s", policy=LOCAL, timeout_s=2)
    assert attempt.status == 0 and "ConnectionRefused" in attempt.error
    with Receiver(delay_s=3) as slow:
        attempt = deliver(slow.url, {}, event="job.done", secret="s", policy=LOCAL, timeout_s=0.5)
    assert attempt.status == 0 and "no complete answer within 0.5 s" in attempt.error and attempt.seconds < 2


def test_a_receiver_trickling_its_answer_is_cut_off_at_the_attempts_deadline() -> None:
    """One byte of header every 0.3 s never trips a per-read timeout; the attempt's deadline cuts it."""
    class Trickle(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(65536)
            try:
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 100:
                    self.request.sendall(bytes([byte]))
                    time.sleep(0.3)
            except OSError:
                pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        attempt = deliver(f"http://127.0.0.1:{server.server_address[1]}/", {}, event="job.done", secret="s",
                          policy=LOCAL, timeout_s=1.5)
    finally:
        server.shutdown()
        server.server_close()
    assert attempt.status == 0 and "no complete answer within 1.5 s" in attempt.error and attempt.seconds < 3


def test_a_refused_url_is_never_connected_to() -> None:
    with Receiver() as receiver:
        with pytest.raises(CallbackRefused):
            deliver(receiver.url, {}, event="job.done", secret="s",
                    policy=CallbackPolicy(hosts=("127.0.0.1",), allow_http=True), timeout_s=2)
        time.sleep(0.2)
        assert receiver.received == []
