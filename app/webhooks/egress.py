"""Egress safety for webhook URLs (SPEC §7): no request reaches the service's own network.

A URL must be HTTPS; plain HTTP, and loopback or private addresses, only for hosts in
``RRG_WEBHOOK_ALLOWLIST`` (host names, addresses or CIDRs). The host is resolved once per
connection and *every* address is vetted; the connection then goes to a vetted address, so
DNS cannot answer differently between the check and the connect. This happens inside
httpx's connection pool (a custom httpcore network backend): TLS still starts with the URL's
host name, so SNI and certificate checks are unchanged, and every new connection is vetted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import select
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from app.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
RESOLVE_TIMEOUT = 5.0

# Never reachable, whatever ``is_global`` says on this Python version (it differs between
# 3.11, 3.12 and 3.13): RFC 6890 special-purpose blocks plus the translation prefixes.
DENIED_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, incl. the 169.254.169.254 metadata service
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, incl. broadcast
        "::/128",
        "::1/128",
        "::/96",  # IPv4-compatible (deprecated)
        "::ffff:0:0/96",  # IPv4-mapped
        "64:ff9b::/96",  # NAT64
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments, incl. Teredo
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
NAT64_PREFIXES = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class EgressRefused(Exception):
    """A webhook URL or address that may not be reached."""


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: IPv4-mapped, IPv4-compatible, 6to4,
    Teredo (server and client) and NAT64."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in net for net in NAT64_PREFIXES) or int(address) >> 32 == 0:
        found.append(low32)  # NAT64, or IPv4-compatible ::a.b.c.d
    return found


def is_public(address: IPAddress) -> bool:
    """A globally routable unicast address, and so is every IPv4 address it carries."""
    for inner in embedded_ipv4(address):
        if not is_public(inner):
            return False
    if any(address in net for net in DENIED_NETWORKS if net.version == address.version):
        return False
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_unspecified
    )


def parse_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class EgressPolicy:
    """What ``RRG_WEBHOOK_ALLOWLIST`` opens: host names (any address they resolve to, and
    plain HTTP), and networks (addresses inside them, and plain HTTP to them)."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        return cls.of(settings.webhook_allowlist)

    @classmethod
    def of(cls, entries: Iterable[str]) -> EgressPolicy:
        hosts, networks = set(), []
        for entry in entries:
            entry = entry.strip().lower()
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                hosts.add(entry.rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def host_listed(self, host: str) -> bool:
        host = host.strip("[]").lower().rstrip(".")
        if host in self.hosts:
            return True
        ip = parse_ip(host)
        return ip is not None and self.address_listed(ip)

    def address_listed(self, address: IPAddress) -> bool:
        candidates = [address, *embedded_ipv4(address)]
        return any(
            a in net for a in candidates for net in self.networks if net.version == a.version
        )

    def check_url(self, url: str) -> httpx.URL:
        """The URL parsed, or EgressRefused saying why it may not be used."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise EgressRefused(f"is not a valid URL ({exc})") from None
        if parsed.scheme not in ("https", "http") or not parsed.host:
            raise EgressRefused("must be an absolute https:// URL")
        if parsed.port is not None and not 0 < parsed.port < 65536:
            raise EgressRefused("has a port out of range")
        if parsed.userinfo:
            raise EgressRefused("must not carry credentials")
        if parsed.scheme == "http" and not self.host_listed(parsed.host):
            raise EgressRefused("must use HTTPS (plain HTTP only for allowlisted hosts)")
        return parsed

    def vet(self, host: str, addresses: Sequence[str]) -> list[str]:
        """The addresses, if every one of them may be reached; else EgressRefused."""
        if not addresses:
            raise EgressRefused(f"{host} does not resolve")
        if host.strip("[]").lower().rstrip(".") in self.hosts:
            return list(addresses)
        for raw in addresses:
            address = parse_ip(raw)
            if address is None:
                raise EgressRefused(f"{host} resolves to an unparseable address {raw!r}")
            if not (self.address_listed(address) or is_public(address)):
                raise EgressRefused(
                    f"{host} resolves to {address}, a loopback, private, link-local or "
                    "reserved address"
                )
        return list(addresses)


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve_and_vet(
    policy: EgressPolicy, host: str, port: int, resolve: Resolver = system_resolve
) -> list[str]:
    host = host.strip("[]")
    if parse_ip(host) is not None:
        return policy.vet(host, [host])
    try:
        addresses = await asyncio.wait_for(resolve(host, port), RESOLVE_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:  # ValueError: IDNA, NUL characters
        raise EgressRefused(f"{host} does not resolve ({exc})") from None
    return policy.vet(host, addresses)


async def check_destination(
    policy: EgressPolicy, url: str, resolve: Resolver = system_resolve
) -> None:
    """Subscription-time check: the URL's form and every address its host resolves to."""
    parsed = policy.check_url(url)
    if parsed.host.lower().rstrip(".") in policy.hosts:
        return  # listed by name: trusted by configuration (vetted again at send time)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    await resolve_and_vet(policy, parsed.host, port, resolve)


class _Stream(httpcore.AsyncNetworkStream):
    """A connection whose raw socket is looked up once. httpcore asks whether each pooled
    connection is readable (closed by the server) many times per request, and anyio answers
    by building all of a socket's attributes, a getpeername() system call included, each
    time: most of a request's CPU time with a pool of 64 connections."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "socket":
            return self._socket
        if info == "is_readable":
            return _readable(self._socket)
        return self._inner.get_extra_info(info)


def _readable(sock: socket.socket | None) -> bool:
    """Whether a read would return at once (data, or the server closed the connection)."""
    if sock is None or sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, vets every address, then connects to a vetted address (never by name)."""

    def __init__(self, policy: EgressPolicy, resolve: Resolver = system_resolve) -> None:
        self.policy = policy
        self.resolve = resolve
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve_and_vet(self.policy, host, port, self.resolve)
        error: Exception | None = None
        for address in addresses:
            try:
                return _Stream(
                    await self._inner.connect_tcp(
                        address, port, timeout, local_address, socket_options
                    )
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("webhooks never connect to local sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool whose every connection is vetted (httpx's
    transport takes no network backend, so its pool is built here)."""

    def __init__(
        self,
        backend: GuardedBackend,
        *,
        limits: httpx.Limits,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        super().__init__(verify=verify, trust_env=False, limits=limits)
        self.backend = backend
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


def build_client(
    policy: EgressPolicy,
    *,
    timeout: float,
    max_connections: int,
    verify: ssl.SSLContext | bool = True,
    resolve: Resolver = system_resolve,
) -> httpx.AsyncClient:
    """The one HTTP client webhooks are sent with: vetted connections, no redirects, no
    proxies or certificates from the environment, connect/read/write timeouts."""
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.AsyncClient(
        transport=GuardedTransport(GuardedBackend(policy, resolve), limits=limits, verify=verify),
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(timeout, pool=None),
    )
