"""Egress safety (SPEC §7): URLs to loopback, private, link-local, unspecified and
IPv4-mapped addresses, or to hosts resolving there, are refused when not allowlisted — when
subscribing (422) and again when sending (the attempt is recorded as blocked). Connections go
to the vetted address while TLS still checks the URL's host name."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import uuid
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, insert, select

from app.config import Settings
from app.db import Database
from app.webhooks.dispatcher import Dispatcher
from app.webhooks.egress import (
    EgressPolicy,
    EgressRefused,
    GuardedBackend,
    GuardedTransport,
    build_client,
    is_public,
    system_resolve,
)
from app.webhooks.models import Subscription
from app.webhooks.service import Egress
from tests.conftest import MakeActor, assert_problem
from tests.escalation.helpers import Clock
from tests.webhooks.helpers import attempts, deliveries, emit, escalated, incident, subscribe
from tests.webhooks.receiver import Receiver

REFUSED_HOSTS = [
    "127.0.0.1",
    "10.0.0.1",
    "169.254.169.254",
    "[::ffff:127.0.0.1]",
    "0.0.0.0",  # noqa: S104 - a destination under test, not a bind address
    "localhost",
]


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("169.254.169.254", False),  # cloud metadata
        ("0.0.0.0", False),  # noqa: S104
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("192.0.0.8", False),
        ("::1", False),
        ("::", False),
        ("fd00::1", False),  # unique local
        ("fe80::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("::127.0.0.1", False),  # IPv4-compatible
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("2002:a9fe:a9fe::1", False),  # 6to4 of 169.254.169.254
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
    ],
)
def test_only_globally_routable_addresses_are_public(address: str, public: bool):
    assert is_public(ipaddress.ip_address(address)) is public


def test_the_allowlist_opens_hosts_and_networks_and_plain_http_to_them():
    policy = EgressPolicy.of(["hooks.example.test", "10.0.0.0/8", "[::1]"])
    assert policy.check_url("http://hooks.example.test/x").host == "hooks.example.test"
    assert policy.check_url("http://10.1.2.3:8080/").host == "10.1.2.3"
    assert policy.check_url("http://[::1]:80/").host == "::1"
    for url in ("http://example.org/", "ftp://example.org/", "https://user:pw@example.org/"):
        with pytest.raises(EgressRefused):
            policy.check_url(url)
    assert policy.vet("hooks.example.test", ["127.0.0.1"]) == ["127.0.0.1"]  # by name
    assert policy.vet("internal", ["10.9.9.9"]) == ["10.9.9.9"]  # by network
    with pytest.raises(EgressRefused, match=r"192\.168\.0\.1"):
        policy.vet("internal", ["10.9.9.9", "192.168.0.1"])


@pytest.mark.parametrize("host", REFUSED_HOSTS)
async def test_blocked_destinations_are_refused_when_subscribing(
    app,
    client: httpx.AsyncClient,
    db: Database,
    make_actor: MakeActor,
    receiver: Receiver,
    host: str,
):
    app.state.webhook_egress = Egress(EgressPolicy(), system_resolve)  # nothing allowlisted
    lead = await make_actor("lead", "DOE")
    for scheme in ("https", "http"):
        response = await client.post(
            "/api/v1/webhooks/subscriptions",
            json={"url": f"{scheme}://{host}:{receiver.port}/hook"},
            headers=lead.headers,
        )
        body = assert_problem(response, 422)
        assert body["errors"][0]["field"] == "url", body
    async with db.unit_of_work(readonly=True) as session:
        assert await session.scalar(select(func.count()).select_from(Subscription)) == 0


async def test_plain_http_to_a_public_host_is_refused_when_subscribing(
    client: httpx.AsyncClient, make_actor: MakeActor
):
    lead = await make_actor("lead", "DOE")
    response = await client.post(
        "/api/v1/webhooks/subscriptions",
        json={"url": "http://8.8.8.8/hook"},
        headers=lead.headers,
    )
    assert "HTTPS" in assert_problem(response, 422)["errors"][0]["reason"]


async def test_blocked_destinations_are_refused_again_when_sending(
    app,
    client: httpx.AsyncClient,
    db: Database,
    clock: Clock,
    make_actor: MakeActor,
    receiver: Receiver,
    settings: Settings,
):
    lead = await make_actor("lead", "DOE")
    found = await incident(client, lead)
    # Subscribed while the allowlist admitted them (e.g. before it was narrowed).
    async with db.unit_of_work() as session:
        box = app.state.webhook_box
        for host in REFUSED_HOSTS:
            sub_id = uuid.uuid4()
            await session.execute(
                insert(Subscription),
                [
                    {
                        "id": sub_id,
                        "ministry_id": lead.user.ministry_id,
                        "url": f"http://{host}:{receiver.port}/hook",
                        "event_types": [],
                        "max_tlp": "GREEN",
                        "description": host,
                        "active": True,
                        "secret_ciphertext": box.seal("whsec_" + "A" * 44, sub_id),
                        "created_at": clock.at,
                        "updated_at": clock.at,
                        "version": 1,
                    }
                ],
            )
    await emit(db, escalated(found["id"]))
    strict = Dispatcher.from_settings(settings.model_copy(update={"webhook_allowlist": []}), db)
    try:
        assert await strict.drain() == len(REFUSED_HOSTS)
    finally:
        await strict.aclose()
    assert receiver.requests == []
    rows = await deliveries(db)
    assert len(rows) == len(REFUSED_HOSTS)
    for delivery in rows:
        (attempt,) = await attempts(db, delivery.id)
        assert attempt.outcome == "blocked", attempt.error
        assert attempt.error and attempt.error.startswith("blocked:")
        assert delivery.status == "pending" and delivery.tries == 1  # retried on schedule


async def test_a_host_with_any_private_answer_is_refused(receiver: Receiver):
    async def resolve(host: str, port: int) -> list[str]:
        return ["8.8.8.8", "127.0.0.1"]  # a rebinding resolver mixing answers

    client = build_client(EgressPolicy(), timeout=2, max_connections=4, resolve=resolve)
    async with client:
        with pytest.raises(EgressRefused, match=r"127\.0\.0\.1"):
            await client.post(f"http://rebind.example.test:{receiver.port}/hook")
    assert receiver.requests == []


async def test_the_client_is_wired_through_the_guarded_pool(receiver: Receiver):
    client = build_client(EgressPolicy(), timeout=2, max_connections=4)
    transport = client._transport  # the wiring LIBRARIES.md asks to guard
    assert isinstance(transport, GuardedTransport)
    assert transport._pool._network_backend is transport.backend  # type: ignore[attr-defined]
    assert isinstance(transport.backend, GuardedBackend)
    async with client:
        with pytest.raises(EgressRefused):
            await client.post(receiver.url())
    assert receiver.requests == []
    assert client.follow_redirects is False and client.trust_env is False


async def test_proxy_variables_in_the_environment_are_ignored(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = build_client(EgressPolicy.of(["127.0.0.1"]), timeout=2, max_connections=4)
    async with client:
        response = await client.post(receiver.url("/direct"), content=b"{}")
    assert response.status_code == 200
    assert len(receiver.at("/direct")) == 1


# --- TLS: the connection goes to the vetted address, the certificate is checked by name ----


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.example.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.example.test")]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_tls_checks_the_url_host_name_while_connecting_to_the_vetted_address(
    tls_files: tuple[Path, Path],
):
    cert_file, key_file = tls_files
    server = Receiver(ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)).start()
    resolved: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"]  # both names point at the loopback receiver

    trust = ssl.create_default_context(cafile=str(cert_file))
    # Loopback is opened by network only: the names themselves are not allowlisted.
    client = build_client(
        EgressPolicy.of(["127.0.0.1/32"]),
        timeout=2,
        max_connections=4,
        verify=trust,
        resolve=resolve,
    )
    try:
        async with client:
            ok = await client.post(f"https://hooks.example.test:{server.port}/tls", content=b"{}")
            assert ok.status_code == 200
            (request,) = server.at("/tls")
            assert request.headers["host"] == f"hooks.example.test:{server.port}"
            # Same address, another name: the certificate does not match it, and the pooled
            # connection verified for the first name is not reused for the second.
            with pytest.raises(httpx.ConnectError, match=r"(?i)certificate|hostname"):
                await client.post(f"https://other.example.test:{server.port}/tls", content=b"{}")
        assert resolved == ["hooks.example.test", "other.example.test"]
        assert len(server.at("/tls")) == 1
    finally:
        server.stop()


async def test_subscribing_to_an_allowlisted_loopback_receiver_works(
    client: httpx.AsyncClient, make_actor: MakeActor, receiver: Receiver
):
    lead = await make_actor("lead", "DOE")
    sub = await subscribe(client, lead, receiver.url())
    assert sub["url"] == receiver.url()
