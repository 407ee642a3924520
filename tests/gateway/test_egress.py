"""The egress proxy against real sockets on 127.0.0.1: tunnels, forwarding, refusals, fuzzing."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bot.gateway import egress
from bot.gateway.egress import EgressProxy
from bot.gateway.grants import Grant
from tests.gateway.support import MemoryAudit, StaticGrants

GOOD = "cred-good"
FUZZ = "cred-fuzz"
RUN_ID = 41
LOOPBACK = "127.0.0.1"
ANSWER_TIMEOUT = 5.0


def basic(credential: str, user: str = "agentbot") -> str:
    return "Basic " + base64.b64encode(f"{user}:{credential}".encode()).decode()


def loopback_only(address: str) -> bool:
    """The tests' stand-in for is_public: their upstreams live on 127.0.0.1, nothing else."""
    return address == LOOPBACK


class Resolver:
    """Names to addresses from a table; anything else fails as an unknown name would."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "unknown name")
        return list(self.table[host])


@dataclass
class Upstream:
    """A TCP server on 127.0.0.1 that echoes (or runs a given handler), counting connections."""

    port: int = 0
    connections: int = 0
    received: bytearray = field(default_factory=bytearray)


@contextlib.asynccontextmanager
async def upstream(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter, Upstream], Awaitable[None]]
    | None = None,
) -> AsyncIterator[Upstream]:
    state = Upstream()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            if handler is not None:
                await handler(reader, writer, state)
            else:
                while data := await reader.read(65536):
                    state.received += data
                    writer.write(data)
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, LOOPBACK, 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class Running:
    proxy: EgressProxy
    port: int
    audit: Audit
    resolver: Resolver


@pytest.fixture
async def start_proxy() -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    proxies: list[EgressProxy] = []

    async def start(
        allowed: Iterable[str] = (),
        *,
        names: dict[str, list[str]] | None = None,
        grants: Any = None,
        **options: Any,
    ) -> Running:
        audit = Audit()
        resolver = Resolver(names if names is not None else {"registry.test": [LOOPBACK]})
        grant = Grant(run_id=RUN_ID, installation_id=1, repo_full_name="o/r",
                      allowed_hosts=tuple(allowed))
        options.setdefault("address_ok", loopback_only)
        proxy = EgressProxy(grants or StaticGrants({GOOD: grant}), audit, resolver=resolver,
                            **options)
        proxies.append(proxy)
        port = await proxy.start(LOOPBACK, 0)
        return Running(proxy, port, audit, resolver)

    yield start
    for proxy in proxies:
        await proxy.close()


async def send(port: int, data: bytes, *, half_close: bool = True) -> bytes:
    """Send raw bytes to the proxy and read its whole answer."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        writer.write(data)
        await writer.drain()
        if half_close:
            writer.write_eof()
        return await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT)
    finally:
        writer.close()


def connect_head(target: str, credential: str | None = GOOD, *extra: str) -> bytes:
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if credential is not None:
        lines.append(f"Proxy-Authorization: {basic(credential)}")
    lines += extra
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def tunnel(
    port: int, target: str, credential: str | None = GOOD
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Open a CONNECT tunnel; returns the streams and the proxy's answer head."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    writer.write(connect_head(target, credential))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_TIMEOUT)
    return reader, writer, head


def status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:80]
    return int(answer[9:12])


def body(answer: bytes) -> str:
    return answer.partition(b"\r\n\r\n")[2].decode()


class Audit(MemoryAudit):
    """MemoryAudit that tells when an event arrives (each is written after its close)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()

    async def record(self, run_id: int, kind: str, data: dict[str, Any]) -> None:
        await super().record(run_id, kind, data)
        self.arrived.set()


async def events(audit: Audit, count: int = 1) -> list[dict[str, Any]]:
    """The audit's events once `count` have arrived."""
    async with asyncio.timeout(ANSWER_TIMEOUT):
        while len(audit.events) < count:
            audit.arrived.clear()
            await audit.arrived.wait()
    await asyncio.sleep(0.05)  # and no more than that
    assert len(audit.events) == count, audit.events
    assert all(run_id == RUN_ID and kind == "egress" for run_id, kind, _ in audit.events)
    return [data for _, _, data in audit.events]


# --- tunnels ---------------------------------------------------------------------------------


async def test_connect_tunnel_passes_bytes_both_ways(start_proxy: Any) -> None:
    async with upstream() as echo:
        running = await start_proxy([f"registry.test:{echo.port}"])
        reader, writer, head = await tunnel(running.port, f"registry.test:{echo.port}")
        assert head == egress.ESTABLISHED
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), ANSWER_TIMEOUT) == b"ping"
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT) == b""
        writer.close()
        [event] = await events(running.audit)
    assert event["host"] == "registry.test" and event["port"] == echo.port
    assert event["method"] == "CONNECT" and event["verdict"] == "allowed"
    assert (event["bytes_up"], event["bytes_down"]) == (4, 4)
    assert event["address"] == LOOPBACK and "reason" not in event
    assert isinstance(event["seconds"], float)
    assert running.resolver.asked == ["registry.test"]


async def test_default_address_check_refuses_loopback(start_proxy: Any) -> None:
    async with upstream() as echo:
        running = await start_proxy(
            [f"registry.test:{echo.port}"], address_ok=egress.hosts.is_public
        )
        answer = await send(running.port, connect_head(f"registry.test:{echo.port}"))
        [event] = await events(running.audit)
    assert status(answer) == 403
    assert body(answer) == egress.REASON_NOT_PUBLIC.format(host="registry.test") + "\n"
    assert echo.connections == 0
    assert event["verdict"] == "refused" and event["reason"] == body(answer).strip()


async def test_refused_host_names_it_and_the_setting(start_proxy: Any) -> None:
    running = await start_proxy(["registry.test"])
    answer = await send(running.port, connect_head("other.test:443"))
    assert status(answer) == 403
    text = body(answer)
    assert "other.test:443" in text and "network.allow" in text and ".github/agentbot.yml" in text
    assert "add other.test to" in text
    [event] = await events(running.audit)
    assert event == {
        "host": "other.test", "port": 443, "method": "CONNECT", "verdict": "refused",
        "reason": text.strip(), "bytes_up": 0, "bytes_down": 0, "seconds": event["seconds"],
    }
    assert running.resolver.asked == []  # refused before any lookup


async def test_refusal_on_other_port_suggests_host_with_port(start_proxy: Any) -> None:
    running = await start_proxy(["registry.test"])
    answer = await send(running.port, connect_head("registry.test:8443"))
    assert status(answer) == 403 and "add registry.test:8443 to" in body(answer)


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("files.pkg.test", True),
        ("a.b.pkg.test", True),
        ("FILES.Pkg.Test.", True),
        ("pkg.test", False),
        ("badpkg.test", False),
        ("pkg.test.evil.test", False),
    ],
)
async def test_wildcard_matching(start_proxy: Any, name: str, allowed: bool) -> None:
    async with upstream() as echo:
        running = await start_proxy(
            [f"*.pkg.test:{echo.port}"], names={name.lower().rstrip("."): [LOOPBACK]}
        )
        reader, writer, head = await tunnel(running.port, f"{name}:{echo.port}")
        writer.close()
    assert status(head) == (200 if allowed else 403)


async def test_ip_literal_only_when_listed(start_proxy: Any) -> None:
    async with upstream() as echo:
        target = f"{LOOPBACK}:{echo.port}"
        unlisted = await start_proxy([f"registry.test:{echo.port}", "*.test"])
        assert status(await send(unlisted.port, connect_head(target))) == 403
        listed = await start_proxy([target])
        reader, writer, head = await tunnel(listed.port, target)
        writer.write(b"hi")
        assert await asyncio.wait_for(reader.readexactly(2), ANSWER_TIMEOUT) == b"hi"
        writer.close()
        assert status(head) == 200
        public_only = await start_proxy([target], address_ok=egress.hosts.is_public)
        answer = await send(public_only.port, connect_head(target))
        assert status(answer) == 403
        assert body(answer).strip() == egress.REASON_IP_NOT_PUBLIC.format(host=LOOPBACK)
        assert echo.connections == 1
    assert listed.resolver.asked == []


async def test_name_resolving_to_any_private_address_is_refused(start_proxy: Any) -> None:
    async with upstream() as echo:
        running = await start_proxy(
            [f"rebind.test:{echo.port}"], names={"rebind.test": [LOOPBACK, "10.0.0.7"]}
        )
        answer = await send(running.port, connect_head(f"rebind.test:{echo.port}"))
        assert echo.connections == 0
    assert status(answer) == 403
    assert body(answer).strip() == egress.REASON_NOT_PUBLIC.format(host="rebind.test")


async def test_unresolvable_name_gets_502(start_proxy: Any) -> None:
    running = await start_proxy(["nowhere.test:443"], names={})
    answer = await send(running.port, connect_head("nowhere.test:443"))
    assert status(answer) == 502
    assert body(answer).strip() == egress.REASON_UNRESOLVED.format(host="nowhere.test")


async def test_closed_upstream_port_gets_502(start_proxy: Any) -> None:
    async with upstream() as gone:
        port = gone.port
    running = await start_proxy([f"registry.test:{port}"])
    answer = await send(running.port, connect_head(f"registry.test:{port}"))
    assert status(answer) == 502
    [event] = await events(running.audit)
    assert event["verdict"] == "refused" and event["reason"].startswith("could not connect")


async def test_falls_back_to_the_next_checked_address(
    start_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = asyncio.open_connection
    tried: list[str] = []

    async def open_connection(host: str, port: int, **kwargs: Any) -> Any:
        tried.append(host)
        if host != LOOPBACK:  # never dialled: stands for an unreachable IPv6 answer
            raise OSError("network unreachable")
        return await real_open(host, port, **kwargs)

    monkeypatch.setattr(asyncio, "open_connection", open_connection)
    async with upstream() as echo:
        running = await start_proxy(
            [f"registry.test:{echo.port}"],
            names={"registry.test": ["2001:db8::5", LOOPBACK]},
            address_ok=lambda address: address in ("2001:db8::5", LOOPBACK),
        )
        reader, writer, head = await tunnel(running.port, f"registry.test:{echo.port}")
        writer.close()
        [event] = await events(running.audit)
    assert status(head) == 200
    assert event["address"] == LOOPBACK
    assert tried[-2:] == ["2001:db8::5", LOOPBACK]


# --- credentials -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, egress.REASON_NO_CREDENTIAL),
        (basic("wrong-credential"), egress.REASON_BAD_CREDENTIAL),
        ("Bearer wrong-credential", egress.REASON_BAD_CREDENTIAL),
        ("Basic !!not-base64!!", egress.REASON_BAD_CREDENTIAL),
        ("Basic " + base64.b64encode(b"no-colon").decode(), egress.REASON_BAD_CREDENTIAL),
        (basic(""), egress.REASON_BAD_CREDENTIAL),
        ("Digest username=agentbot", egress.REASON_BAD_CREDENTIAL),
    ],
)
async def test_missing_or_wrong_credential_gets_407(
    start_proxy: Any, caplog: pytest.LogCaptureFixture, authorization: str | None, reason: str
) -> None:
    running = await start_proxy(["registry.test"])
    extra = [f"Proxy-Authorization: {authorization}"] if authorization else []
    with caplog.at_level(logging.INFO, logger="bot.gateway.egress"):
        answer = await send(running.port, connect_head("registry.test:443", None, *extra))
        await asyncio.sleep(0.05)
    assert status(answer) == 407
    assert b'\r\nProxy-Authenticate: Basic realm="agentbot"\r\n' in answer
    assert body(answer).strip() == reason
    assert running.audit.events == []  # no run to book it under
    [record] = [r for r in caplog.records if r.name == "bot.gateway.egress"]
    assert record.levelno == logging.INFO
    assert record.__dict__["peer"].startswith(LOOPBACK + ":")
    assert record.__dict__["reason"] == reason
    assert "wrong-credential" not in caplog.text
    if authorization:
        assert authorization not in caplog.text


@pytest.mark.parametrize("authorization", [basic(GOOD), basic(GOOD, user="anyone"),
                                           f"Bearer {GOOD}", f"bearer  {GOOD}"])
async def test_basic_password_or_bearer_token_authenticates(
    start_proxy: Any, authorization: str
) -> None:
    async with upstream() as echo:
        running = await start_proxy([f"registry.test:{echo.port}"])
        head = connect_head(f"registry.test:{echo.port}", None,
                            f"Proxy-Authorization: {authorization}")
        reader, writer = await asyncio.open_connection(LOOPBACK, running.port)
        writer.write(head)
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_TIMEOUT)
        writer.close()
    assert answer == egress.ESTABLISHED


class FailingGrants:
    async def grant(self, credential: str) -> Grant | None:
        raise RuntimeError(f"database down while looking up {credential}")


async def test_failing_credential_lookup_gets_503_and_leaks_nothing(
    start_proxy: Any, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start_proxy(["registry.test"], grants=FailingGrants())
    answer = await send(running.port, connect_head("registry.test:443"))
    assert status(answer) == 503
    assert GOOD not in caplog.text and GOOD not in answer.decode()


class FailingAudit(Audit):
    async def record(self, run_id: int, kind: str, data: dict[str, Any]) -> None:
        raise RuntimeError("audit store down")


async def test_failing_audit_does_not_break_the_proxy(start_proxy: Any) -> None:
    running = await start_proxy(["registry.test"])
    running.proxy._audit = FailingAudit()
    for _ in range(2):
        assert status(await send(running.port, connect_head("other.test:443"))) == 403


# --- malformed requests ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"GET / HTTP/1.1\r\nHost: registry.test\r\n\r\n", "absolute http:// URL"),
        (b"GET https://registry.test/ HTTP/1.1\r\n\r\n", "absolute http:// URL"),
        (b"garbage\r\n\r\n", egress.REASON_REQUEST_LINE),
        (b"CONNECT  registry.test:443 HTTP/1.1\r\n\r\n", egress.REASON_REQUEST_LINE),
        (b"CONNECT registry.test:443 HTTP/2.0\r\n\r\n", egress.REASON_VERSION),
        (b"CONNECT registry.test:443 http/1.1\r\n\r\n", egress.REASON_VERSION),
        (b"BREW http://registry.test/ HTTP/1.1\r\n\r\n", egress.REASON_METHOD),
        (b"connect registry.test:443 HTTP/1.1\r\n\r\n", egress.REASON_METHOD),
        (b"CONNECT registry.test:443 HTTP/1.1\n\n", egress.REASON_NO_CRLF),
        ("CONNECT régistry.test:443 HTTP/1.1\r\n\r\n".encode(), egress.REASON_NOT_ASCII),
        (b"\r\n", egress.REASON_EMPTY_LINE),
        (b"CONNECT registry.test HTTP/1.1\r\n\r\n", "host:port"),
        (b"CONNECT registry.test:0 HTTP/1.1\r\n\r\n", "port"),
        (b"CONNECT u:p@registry.test:443 HTTP/1.1\r\n\r\n", "user:password@"),
        (b"CONNECT 2130706433:443 HTTP/1.1\r\n\r\n", "must not end in a number"),
        (b"CONNECT bad_host.test:443 HTTP/1.1\r\n\r\n", "not a valid DNS name"),
        (b"CONNECT registry.test:443 HTTP/1.1\r\nBad Name: x\r\n\r\n", egress.REASON_BAD_HEADER),
        (b"CONNECT registry.test:443 HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
         egress.REASON_BAD_HEADER),
        (b"CONNECT registry.test:443 HTTP/1.1\r\nNoColon\r\n\r\n", egress.REASON_BAD_HEADER),
        (b"CONNECT registry.test:443 HTTP/1.1\r\nX: a\x00b\r\n\r\n", egress.REASON_BAD_HEADER),
        (b"POST http://registry.test/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
         "content-length is repeated"),
        (b"POST http://registry.test/ HTTP/1.1\r\nContent-Length: 1\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n", egress.REASON_BOTH_LENGTHS),
        (b"POST http://registry.test/ HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
         egress.REASON_TRANSFER_ENCODING),
        (b"POST http://registry.test/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
         egress.REASON_CONTENT_LENGTH),
        (b"CONNECT regi", egress.REASON_HEAD_CUT),
    ],
)
async def test_malformed_request_gets_400_with_reason(
    start_proxy: Any, head: bytes, reason: str
) -> None:
    running = await start_proxy(["registry.test"])
    answer = await send(running.port, head)
    assert status(answer) == 400
    text = body(answer)
    assert reason in text and text.endswith("\n") and text.count("\n") == 1
    assert running.audit.events == []


async def test_silent_connection_is_closed_without_answer(start_proxy: Any) -> None:
    running = await start_proxy(["registry.test"])
    assert await send(running.port, b"") == b""


async def test_oversized_head_gets_431(start_proxy: Any) -> None:
    running = await start_proxy(["registry.test"], max_header_bytes=4096)
    big = connect_head("registry.test:443", GOOD, "X-Big: " + "a" * 20000)
    answer = await send(running.port, big, half_close=False)
    assert status(answer) == 431
    many = connect_head("registry.test:443", GOOD, *[f"X-{i}: v" for i in range(150)])
    assert status(await send(running.port, many, half_close=False)) == 431


async def test_slow_client_gets_408(start_proxy: Any) -> None:
    running = await start_proxy(["registry.test"], header_timeout=0.3)
    reader, writer = await asyncio.open_connection(LOOPBACK, running.port)
    writer.write(b"CONNECT registry.test:443 HTTP/1.1\r\nX-Slow: ")
    started = time.monotonic()
    answer = await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT)
    writer.close()
    assert status(answer) == 408
    assert 0.25 < time.monotonic() - started < 3


# --- plain HTTP ------------------------------------------------------------------------------


async def origin_app() -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        data = await request.read()
        return web.json_response({
            "method": request.method,
            "path": request.path_qs,
            "host": request.headers.get("Host"),
            "connection": request.headers.get("Connection"),
            "proxy_authorization": request.headers.get("Proxy-Authorization"),
            "chunked": request.headers.get("Transfer-Encoding"),
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
        })

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


async def test_plain_http_is_forwarded_with_aiohttp_client(
    start_proxy: Any, aiohttp_server: Any
) -> None:
    server = await aiohttp_server(await origin_app(), host=LOOPBACK)
    running = await start_proxy([f"registry.test:{server.port}"])
    # As the sandbox's HTTP_PROXY has it. (aiohttp sends proxy_headers only with CONNECT, and
    # 3.14 deprecates BasicAuth.)
    proxy = f"http://agentbot:{GOOD}@{LOOPBACK}:{running.port}"
    url = f"http://registry.test:{server.port}/simple/pkg/?a=1"
    payload = bytes(range(256)) * 4096  # 1 MiB

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 100_000):
            yield payload[start:start + 100_000]

    async with aiohttp.ClientSession() as session:
        async with session.get(url, proxy=proxy) as response:
            got = await response.json()
        async with session.post(url, data=payload, proxy=proxy) as response:
            posted = await response.json()
        async with session.put(url, data=chunks(), proxy=proxy) as response:
            streamed = await response.json()
    assert got["method"] == "GET" and got["path"] == "/simple/pkg/?a=1"
    assert got["host"] == f"registry.test:{server.port}"
    assert got["connection"] == "close" and got["proxy_authorization"] is None
    digest = hashlib.sha256(payload).hexdigest()
    assert (posted["size"], posted["sha256"]) == (len(payload), digest)
    assert streamed["chunked"] == "chunked"
    assert (streamed["size"], streamed["sha256"]) == (len(payload), digest)
    logged = await events(running.audit, 3)
    assert [event["method"] for event in logged] == ["GET", "POST", "PUT"]
    assert all(event["verdict"] == "allowed" for event in logged)
    assert logged[1]["bytes_up"] > len(payload) and logged[1]["bytes_down"] > 0


async def test_plain_http_rewrites_head_and_relays_only_one_request(start_proxy: Any) -> None:
    async def origin(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Upstream
    ) -> None:
        state.received += await reader.readuntil(b"\r\n\r\n")
        state.received += await reader.readexactly(5)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        # Whatever follows the body (a smuggled request) would arrive within this window.
        with contextlib.suppress(TimeoutError):
            state.received += await asyncio.wait_for(reader.read(65536), 0.3)

    async with upstream(origin) as origin_server:
        running = await start_proxy([f"registry.test:{origin_server.port}"])
        head = (
            f"POST http://registry.test:{origin_server.port}/upload?x=1 HTTP/1.1\r\n"
            "Host: evil.test\r\n"
            f"Proxy-Authorization: {basic(GOOD)}\r\n"
            "Proxy-Connection: keep-alive\r\n"
            "Connection: keep-alive, X-Hop, Content-Length\r\n"
            "X-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: websocket\r\n"
            "Content-Length: 5\r\nX-Kept: yes\r\n\r\n"
            "hello"
            "GET http://registry.test/second HTTP/1.1\r\nHost: registry.test\r\n\r\n"
        ).encode()
        answer = await send(running.port, head)
    assert answer.endswith(b"\r\n\r\nok")
    assert origin_server.received.decode() == (
        "POST /upload?x=1 HTTP/1.1\r\n"
        f"Host: registry.test:{origin_server.port}\r\n"
        "Content-Length: 5\r\nX-Kept: yes\r\nConnection: close\r\n\r\nhello"
    )


async def test_plain_http_default_port_host_header(start_proxy: Any) -> None:
    running = await start_proxy(["registry.test"])
    request = egress._Request(
        "GET", egress.hosts.parse_absolute_url("http://registry.test/x"), "HTTP/1.1", ()
    )
    assert egress._upstream_head(request).startswith(b"GET /x HTTP/1.1\r\nHost: registry.test\r\n")
    assert status(await send(running.port, b"GET /x HTTP/1.1\r\n\r\n")) == 400


# --- volume, back-pressure, timeouts ---------------------------------------------------------

MIB = 1024 * 1024


async def test_large_transfer_counts_every_byte(start_proxy: Any) -> None:
    size = 20 * MIB
    block = bytes(range(256)) * 256  # 64 KiB
    async with upstream() as echo:
        running = await start_proxy([f"registry.test:{echo.port}"])
        reader, writer, head = await tunnel(running.port, f"registry.test:{echo.port}")
        assert status(head) == 200

        async def write_all() -> None:
            for _ in range(size // len(block)):
                writer.write(block)
                await writer.drain()
            writer.write_eof()

        async def read_all() -> int:
            digest, total = hashlib.sha256(), 0
            while data := await reader.read(1 << 20):
                digest.update(data)
                total += len(data)
            assert digest.hexdigest() == hashlib.sha256(block * (size // len(block))).hexdigest()
            return total

        _, received = await asyncio.wait_for(asyncio.gather(write_all(), read_all()), 20)
        writer.close()
        [event] = await events(running.audit)
    assert received == size
    assert (event["bytes_up"], event["bytes_down"]) == (size, size)


async def test_slow_reader_stalls_the_upstream(start_proxy: Any) -> None:
    size = 48 * MIB
    block = b"x" * 65536
    sent = 0

    async def flood(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Upstream
    ) -> None:
        nonlocal sent
        for _ in range(size // len(block)):
            writer.write(block)
            await writer.drain()
            sent += len(block)

    async with upstream(flood) as origin:
        running = await start_proxy([f"registry.test:{origin.port}"])
        reader, writer, head = await tunnel(running.port, f"registry.test:{origin.port}")
        assert status(head) == 200
        await asyncio.sleep(0.5)  # the client reads nothing: the proxy must not either
        stalled_at = sent
        received = 0
        while data := await asyncio.wait_for(reader.read(1 << 20), ANSWER_TIMEOUT):
            received += len(data)
        writer.close()
    # Only socket buffers (a few MiB each on loopback) may fill, never the proxy's memory.
    assert stalled_at < size // 2, stalled_at
    assert received == size


async def test_idle_tunnel_is_closed(start_proxy: Any) -> None:
    async with upstream() as echo:
        running = await start_proxy([f"registry.test:{echo.port}"], idle_timeout=0.3)
        reader, writer, head = await tunnel(running.port, f"registry.test:{echo.port}")
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT) == b""
        writer.close()
        [event] = await events(running.audit)
    assert 0.25 < time.monotonic() - started < 3
    assert event["verdict"] == "allowed"


async def test_close_ends_open_tunnels_and_audits_them(start_proxy: Any) -> None:
    async with upstream() as echo:
        running = await start_proxy([f"registry.test:{echo.port}"])
        reader, writer, head = await tunnel(running.port, f"registry.test:{echo.port}")
        assert status(head) == 200
        await running.proxy.close()
        assert await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT) == b""
        writer.close()
        [event] = await events(running.audit)
    assert event["verdict"] == "allowed"


# --- fuzzing ---------------------------------------------------------------------------------

_FUZZ_METHODS = st.sampled_from(["CONNECT", "GET", "POST", "PUT", "OPTIONS", "BREW", "get", ""])
_FUZZ_AUTHORITIES = [
    "allowed.test:443", "other.test:443", "x.wild.test:443", "wild.test:443", "127.0.0.1:443",
    "[::1]:443", "[::ffff:10.0.0.1]:80", "allowed.test", "allowed.test:99999",
]
_FUZZ_URLS = [
    "http://allowed.test/", "http://x.wild.test:80/p?q", "http://other.test/",
    "http://ALLOWED.test./x", "http://u@allowed.test/", "https://allowed.test/", "/", "*",
]
_FUZZ_KNOWN_TARGETS = st.sampled_from(_FUZZ_AUTHORITIES + _FUZZ_URLS)
_FUZZ_TARGETS = _FUZZ_KNOWN_TARGETS | st.text(max_size=40)
_FUZZ_VALID_LINES = st.builds(
    "CONNECT {} {}".format, st.sampled_from(_FUZZ_AUTHORITIES), st.sampled_from(["HTTP/1.1"])
) | st.builds(
    "{} {} {}".format, st.sampled_from(sorted(egress.FORWARD_METHODS)),
    st.sampled_from(_FUZZ_URLS), st.sampled_from(["HTTP/1.1", "HTTP/1.0"]),
)
_FUZZ_VERSIONS = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "http/1.1", ""])
_FUZZ_KNOWN_HEADERS = st.sampled_from([
    f"Proxy-Authorization: {basic(FUZZ)}", f"Proxy-Authorization: Bearer {FUZZ}",
    "Proxy-Authorization: Basic !!", "Content-Length: 3", "Content-Length: x",
    "Transfer-Encoding: chunked", "Host: x", "Connection: close", "Content-Length: 0",
    " folded", "Bad Name: x", "X:", "",
])
_FUZZ_HEADERS = _FUZZ_KNOWN_HEADERS | st.text(max_size=60)


def _head(line: str, headers: list[str], newline: str, tail: bytes) -> bytes:
    return newline.join([line, *headers]).encode("utf-8", "surrogatepass") + b"\r\n\r\n" + tail


# Near-valid heads, which reach the credential and allowlist checks, drawn twice as often as
# noisy ones (bad separators, random text) and raw bytes.
_FUZZ_NEAR_VALID = st.builds(
    _head,
    _FUZZ_VALID_LINES,
    st.lists(_FUZZ_KNOWN_HEADERS, max_size=3).map(
        lambda headers: [f"Proxy-Authorization: {basic(FUZZ)}", *headers]
    ) | st.lists(_FUZZ_KNOWN_HEADERS, max_size=3),
    st.just("\r\n"),
    st.binary(max_size=20),
)
_FUZZ_NOISY = st.builds(
    _head,
    st.builds(
        lambda method, target, version, gap: gap.join([method, target, version]),
        _FUZZ_METHODS | st.text(max_size=8), _FUZZ_TARGETS, _FUZZ_VERSIONS,
        st.sampled_from([" ", "  ", "\t"]),
    ) | st.text(max_size=80),
    st.lists(_FUZZ_HEADERS, max_size=6),
    st.sampled_from(["\r\n", "\n", "\r"]),
    st.binary(max_size=20),
)
_FUZZ_HEADS = st.sampled_from(
    [_FUZZ_NEAR_VALID, _FUZZ_NEAR_VALID, _FUZZ_NOISY, st.binary(max_size=300)]
).flatmap(lambda strategy: strategy)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=_FUZZ_HEADS)
async def test_fuzzed_heads_get_4xx_and_the_proxy_keeps_serving(
    fuzz_proxy: tuple[Running, Upstream], raw: bytes
) -> None:
    running, echo = fuzz_proxy
    answer = await send(running.port, raw)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:100]
    event(answer[:12].decode() or "closed")
    if answer:
        assert answer.count(b"\r\n\r\n") >= 1
    reader, writer, head = await tunnel(running.port, f"registry.test:{echo.port}")
    writer.write(b"still here")
    assert await asyncio.wait_for(reader.readexactly(10), ANSWER_TIMEOUT) == b"still here"
    writer.close()
    assert head == egress.ESTABLISHED


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
async def fuzz_proxy() -> AsyncIterator[tuple[Running, Upstream]]:
    """One proxy for every example: the fuzzing checks it keeps serving, not a fresh one."""
    fuzz_grant = Grant(run_id=RUN_ID, installation_id=1, repo_full_name="o/r",
                       allowed_hosts=("allowed.test", "*.wild.test"))
    warnings = _Warnings()
    logger = logging.getLogger("bot.gateway.egress")
    logger.addHandler(warnings)
    async with upstream() as echo:
        good_grant = Grant(run_id=RUN_ID, installation_id=1, repo_full_name="o/r",
                           allowed_hosts=(f"registry.test:{echo.port}",))
        audit = Audit()

        class AnyName(Resolver):
            async def __call__(self, host: str, port: int) -> list[str]:
                # Every name but the echo's resolves somewhere private, so nothing but the
                # well-formed check ever connects.
                return [LOOPBACK] if host == "registry.test" else ["10.0.0.1"]

        proxy = EgressProxy(StaticGrants({GOOD: good_grant, FUZZ: fuzz_grant}), audit,
                            resolver=AnyName({}), address_ok=loopback_only, header_timeout=2)
        port = await proxy.start(LOOPBACK, 0)
        try:
            yield Running(proxy, port, audit, AnyName({})), echo
        finally:
            await proxy.close()
            logger.removeHandler(warnings)
    assert warnings.records == []  # no connection ever failed inside the proxy
