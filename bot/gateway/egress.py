"""Egress proxy: the sandbox's one way to the internet, open only to each run's allowed hosts."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from bot.gateway import hosts
from bot.gateway.grants import Audit, Grant, Grants

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[list[str]]]
AddressCheck = Callable[[str], bool]

CONNECT = "CONNECT"
FORWARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
# Python's http.client (so pip on 3.11) still sends `CONNECT host:port HTTP/1.0`.
HTTP_VERSIONS = frozenset({"HTTP/1.1", "HTTP/1.0"})
REALM = "agentbot"
ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
CHUNK = 64 * 1024
MAX_HEAD_LINES = 100
# How long a closing connection may take to flush its answer, and how much of a refused
# client's unread input is read away first (closing on unread input sends a reset, and the
# client could lose the answer).
FLUSH_SECONDS = 5.0
LINGER_SECONDS = 1.0
LINGER_BYTES = 256 * 1024

# What a refused client reads, one line each.
REASON_HEAD_TOO_LARGE = "request head is larger than {limit} bytes or {lines} lines"
REASON_HEAD_TIMEOUT = "request head not received within {seconds:g} seconds"
REASON_HEAD_CUT = "connection closed before the request head ended"
REASON_NO_CRLF = "request head lines must end with CRLF"
REASON_NOT_ASCII = "request head must be ASCII"
REASON_EMPTY_LINE = "request line is empty"
REASON_REQUEST_LINE = "request line must be `METHOD target HTTP/1.1`"
REASON_VERSION = "HTTP version must be HTTP/1.1 or HTTP/1.0"
REASON_METHOD = "method must be CONNECT, or GET, HEAD, POST, PUT, DELETE, PATCH or OPTIONS"
REASON_BAD_HEADER = "malformed header line"
REASON_DUPLICATE_HEADER = "header {name} is repeated"
REASON_BOTH_LENGTHS = "Content-Length and Transfer-Encoding together are not allowed"
REASON_TRANSFER_ENCODING = "only Transfer-Encoding: chunked is supported"
REASON_CONTENT_LENGTH = "Content-Length must be a decimal number"
REASON_NO_CREDENTIAL = "proxy credential required (Proxy-Authorization: Basic or Bearer)"
REASON_BAD_CREDENTIAL = "proxy credential is unknown, malformed, or its run has ended"
REASON_LOOKUP_FAILED = "proxy credential could not be checked; try again"
REASON_NOT_ALLOWED = (
    "{target} is not on this run's egress allowlist; add {pattern} to network.allow in "
    ".github/agentbot.yml to reach it"
)
REASON_NOT_PUBLIC = "{host} resolves to a non-public address, which egress never reaches"
REASON_IP_NOT_PUBLIC = "{host} is not a public address, which egress never reaches"
REASON_UNRESOLVED = "could not resolve {host}"
REASON_UNREACHABLE = "could not connect to {target}"
REASON_CONNECT_TIMEOUT = "connecting to {target} timed out"
REASON_PEER_GONE = "connection closed by the client or the host"
REASON_INTERNAL = "internal proxy error"

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e]*")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:;[\t\x20-\x7e]*)?\r\n")
# Headers that may appear once: two of a framing header is how requests get smuggled.
_SINGLE = ("host", "content-length", "transfer-encoding", "proxy-authorization")
# Never forwarded: they describe the hop to the proxy, or are set by it (Host, Connection).
_HOP_BY_HOP = frozenset({
    "connection", "proxy-connection", "keep-alive", "proxy-authorization", "proxy-authenticate",
    "te", "trailer", "upgrade", "host",
})
# Framing the proxy relays as it is: a client naming them in Connection must not unframe a body.
_FRAMING = frozenset({"content-length", "transfer-encoding"})


async def resolve(host: str, port: int) -> list[str]:
    """The default resolver: every TCP address the system resolver gives for host."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class EgressProxy:
    """An HTTP proxy (CONNECT tunnels, plain-HTTP forwarding) that lets each run's credential
    reach only the public addresses of the hosts its grant allows, and audits every connection.

    `address_ok` decides which resolved addresses may be connected to (default: public ones);
    tests pass one that admits their loopback upstream."""

    def __init__(
        self,
        grants: Grants,
        audit: Audit,
        *,
        resolver: Resolver | None = None,
        address_ok: AddressCheck = hosts.is_public,
        connect_timeout: float = 10.0,
        idle_timeout: float = 300.0,
        header_timeout: float = 10.0,
        max_header_bytes: int = 16384,
    ) -> None:
        self._grants = grants
        self._audit = audit
        self._resolver: Resolver = resolver or resolve
        self._address_ok = address_ok
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.header_timeout = header_timeout
        self.max_header_bytes = max_header_bytes
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    async def start(self, host: str, port: int = 0) -> int:
        """Listen on host:port (0 picks a free port); returns the bound port."""
        if self._server is not None:
            raise RuntimeError("egress proxy already started")
        # The stream limit caps one head line; _read_head caps the head as a whole.
        self._server = await asyncio.start_server(
            self._handle, host, port, limit=self.max_header_bytes
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and end every open connection (each still gets its audit event)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
        exchange = _Exchange(peer=_peer(writer))
        try:
            await self._serve(reader, writer, exchange)
        except _Refusal as refusal:
            exchange.reason = refusal.reason
            if refusal.status is not None:
                await _answer(reader, writer, refusal)
        except ConnectionError:
            # A peer that went away mid-exchange: routine for a proxy, nothing to warn about.
            exchange.reason = exchange.reason or REASON_PEER_GONE
        except Exception as error:  # noqa: BLE001 - one connection's failure ends only it
            exchange.reason = exchange.reason or REASON_INTERNAL
            # Only the type: an exception's text may quote what it choked on (a header value).
            log.warning("egress connection failed: %s", type(error).__name__)
        finally:
            await _close(writer)
            await self._report(exchange)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, exchange: _Exchange
    ) -> None:
        lines = await self._read_head(reader)
        method, raw_target, version = _request_line(lines[0])
        exchange.method = method
        target = _target(method, raw_target)
        exchange.host, exchange.port = target.host, target.port
        request = _Request(method, target, version, _headers(lines[1:]))
        framing = _framing(request) if method != CONNECT else _Framing("none")
        grant = await self._authenticate(request)
        exchange.run_id = grant.run_id
        if not _rules(tuple(grant.allowed_hosts)).allows(target.host, target.port):
            raise _Refusal(403, REASON_NOT_ALLOWED.format(
                target=target.hostport, pattern=_suggested_pattern(target)
            ))
        addresses = await self._addresses(target)
        address, upstream_reader, upstream_writer = await self._connect(addresses, target)
        exchange.address, exchange.verdict = address, "allowed"
        try:
            if method == CONNECT:
                writer.write(ESTABLISHED)
                await writer.drain()
                upload = _pipe(reader, upstream_writer, exchange, up=True, half_close=True)
            else:
                head = _upstream_head(request)
                upstream_writer.write(head)
                exchange.bytes_up += len(head)
                upload = _send_body(reader, upstream_writer, framing, exchange,
                                    self.max_header_bytes)
            download = _pipe(upstream_reader, writer, exchange, up=False, half_close=False)
            await self._relay(exchange, upload, download)
        finally:
            await _close(upstream_writer)

    async def _read_head(self, reader: asyncio.StreamReader) -> list[str]:
        """The request line and header lines, decoded, without their CRLFs."""
        lines: list[str] = []
        size = 0
        too_large = _Refusal(431, REASON_HEAD_TOO_LARGE.format(
            limit=self.max_header_bytes, lines=MAX_HEAD_LINES
        ))
        try:
            async with asyncio.timeout(self.header_timeout):
                while True:
                    line = await reader.readuntil(b"\n")
                    size += len(line)
                    if size > self.max_header_bytes or len(lines) >= MAX_HEAD_LINES:
                        raise too_large
                    if not line.endswith(b"\r\n"):
                        raise _Refusal(400, REASON_NO_CRLF)
                    if line == b"\r\n":
                        if not lines:
                            raise _Refusal(400, REASON_EMPTY_LINE)
                        return lines
                    try:
                        lines.append(line[:-2].decode("ascii"))
                    except UnicodeDecodeError:
                        raise _Refusal(400, REASON_NOT_ASCII) from None
        except TimeoutError:
            raise _Refusal(408, REASON_HEAD_TIMEOUT.format(seconds=self.header_timeout)) from None
        except asyncio.LimitOverrunError:
            raise too_large from None
        except asyncio.IncompleteReadError as error:
            # Nothing at all is a probe or a client that gave up: nobody to answer.
            status = 400 if lines or error.partial else None
            raise _Refusal(status, REASON_HEAD_CUT) from None

    async def _authenticate(self, request: _Request) -> Grant:
        value = request.header("proxy-authorization")
        if value is None:
            raise _Refusal(407, REASON_NO_CREDENTIAL, authenticate=True)
        credential = _credential(value)
        if not credential:
            raise _Refusal(407, REASON_BAD_CREDENTIAL, authenticate=True)
        try:
            grant = await self._grants.grant(credential)
        except Exception as error:  # noqa: BLE001 - the client gets a 503, not a dropped line
            # `from None` and only the type: a lookup error's text may hold the credential.
            log.warning("egress credential lookup failed: %s", type(error).__name__)
            raise _Refusal(503, REASON_LOOKUP_FAILED) from None
        if grant is None:
            raise _Refusal(407, REASON_BAD_CREDENTIAL, authenticate=True)
        return grant

    async def _addresses(self, target: hosts.Target) -> list[str]:
        """The addresses to connect to, once every one of them is acceptable: a name that also
        resolves to a private address is refused whole, against DNS rebinding."""
        if target.is_ip:
            if not self._address_ok(target.host):
                raise _Refusal(403, REASON_IP_NOT_PUBLIC.format(host=target.host))
            return [target.host]
        try:
            answers = await asyncio.wait_for(
                self._resolver(target.host, target.port), self.connect_timeout
            )
        except (OSError, TimeoutError, UnicodeError):
            raise _Refusal(502, REASON_UNRESOLVED.format(host=target.host)) from None
        if not answers:
            raise _Refusal(502, REASON_UNRESOLVED.format(host=target.host))
        if not all(self._address_ok(answer) for answer in answers):
            raise _Refusal(403, REASON_NOT_PUBLIC.format(host=target.host))
        return list(answers)

    async def _connect(
        self, addresses: list[str], target: hosts.Target
    ) -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect to the first address that answers, in the resolver's order (an IPv6 answer
        first on a node without IPv6 must not end the request), within connect_timeout."""
        # The checked addresses, never the name again: a second lookup could answer otherwise.
        try:
            async with asyncio.timeout(self.connect_timeout):
                for address in addresses:
                    try:
                        reader, writer = await asyncio.open_connection(address, target.port)
                    except OSError:
                        continue
                    return address, reader, writer
        except TimeoutError:
            raise _Refusal(504, REASON_CONNECT_TIMEOUT.format(target=target.hostport)) from None
        raise _Refusal(502, REASON_UNREACHABLE.format(target=target.hostport))

    async def _relay(
        self,
        exchange: _Exchange,
        upload: Coroutine[Any, Any, None],
        download: Coroutine[Any, Any, None],
    ) -> None:
        """Run both directions until the upstream side ends, the upload fails, or nothing moved
        either way for idle_timeout."""
        exchange.last_activity = time.monotonic()
        up = asyncio.create_task(upload)
        down = asyncio.create_task(download)
        pending: set[asyncio.Task[None]] = {up, down}
        try:
            while not down.done():
                left = exchange.last_activity + self.idle_timeout - time.monotonic()
                if left <= 0:
                    break
                done, _ = await asyncio.wait(
                    pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                if up in done:
                    pending.discard(up)
                    if up.exception() is not None:
                        break
        finally:
            up.cancel()
            down.cancel()
            await asyncio.gather(up, down, return_exceptions=True)

    async def _report(self, exchange: _Exchange) -> None:
        data: dict[str, Any] = {
            "host": exchange.host,
            "port": exchange.port,
            "method": exchange.method,
            "verdict": exchange.verdict,
            "bytes_up": exchange.bytes_up,
            "bytes_down": exchange.bytes_down,
            "seconds": round(time.monotonic() - exchange.started, 3),
        }
        if exchange.verdict == "refused":
            data["reason"] = exchange.reason
        if exchange.address is not None:
            data["address"] = exchange.address
        if exchange.run_id is None:
            # No credential, no run to book it under; the target is parsed, never a header.
            log.info(
                "egress refused before authentication",
                extra={"peer": exchange.peer, "method": exchange.method, "host": exchange.host,
                       "port": exchange.port, "reason": exchange.reason},
            )
            return
        try:
            await self._audit.record(exchange.run_id, "egress", data)
        except Exception as error:  # noqa: BLE001 - a lost audit event must not kill the server
            log.warning("egress audit record failed: %s", type(error).__name__)


@dataclass
class _Exchange:
    """What one connection did, for its audit event."""

    peer: str
    started: float = field(default_factory=time.monotonic)
    last_activity: float = field(default_factory=time.monotonic)
    method: str | None = None
    host: str | None = None
    port: int | None = None
    run_id: int | None = None
    address: str | None = None
    verdict: str = "refused"
    reason: str | None = None
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass(frozen=True)
class _Request:
    method: str
    target: hosts.Target
    version: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        """The value of the first header of that (lowercase) name."""
        return next((value for key, value in self.headers if key.lower() == name), None)


@dataclass(frozen=True)
class _Framing:
    kind: str  # "none", "length" or "chunked"
    length: int = 0


class _Refusal(Exception):
    """Ends a connection with an error answer (status None: no answer, the client is gone)."""

    def __init__(self, status: int | None, reason: str, *, authenticate: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.authenticate = authenticate


class _BodyError(Exception):
    """A plain-HTTP request body that breaks its own framing."""


def _request_line(line: str) -> tuple[str, str, str]:
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise _Refusal(400, REASON_REQUEST_LINE)
    method, target, version = parts
    if version not in HTTP_VERSIONS:
        raise _Refusal(400, REASON_VERSION)
    if method != CONNECT and method not in FORWARD_METHODS:
        raise _Refusal(400, REASON_METHOD)
    return method, target, version


def _target(method: str, text: str) -> hosts.Target:
    try:
        if method == CONNECT:
            return hosts.parse_connect_target(text)
        return hosts.parse_absolute_url(text)
    except hosts.TargetError as error:
        raise _Refusal(400, str(error)) from None


def _headers(lines: list[str]) -> tuple[tuple[str, str], ...]:
    headers = []
    for line in lines:
        # No whitespace before the colon, no obs-fold continuation lines (RFC 9112 5.1, 5.2).
        name, colon, value = line.partition(":")
        value = value.strip(" \t")
        if not colon or not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
            raise _Refusal(400, REASON_BAD_HEADER)
        headers.append((name, value))
    for single in _SINGLE:
        if sum(name.lower() == single for name, _ in headers) > 1:
            raise _Refusal(400, REASON_DUPLICATE_HEADER.format(name=single))
    return tuple(headers)


def _framing(request: _Request) -> _Framing:
    transfer_encoding = request.header("transfer-encoding")
    content_length = request.header("content-length")
    if transfer_encoding is not None and content_length is not None:
        raise _Refusal(400, REASON_BOTH_LENGTHS)
    if transfer_encoding is not None:
        if transfer_encoding.lower() != "chunked":
            raise _Refusal(400, REASON_TRANSFER_ENCODING)
        return _Framing("chunked")
    if content_length is not None:
        if not _CONTENT_LENGTH.fullmatch(content_length):
            raise _Refusal(400, REASON_CONTENT_LENGTH)
        return _Framing("length", int(content_length))
    return _Framing("none")


def _credential(value: str) -> str | None:
    """The credential in a Proxy-Authorization value: Basic's password, or a Bearer token."""
    scheme, _, param = value.partition(" ")
    param = param.strip(" ")
    if scheme.lower() == "bearer":
        return param or None
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(param, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, colon, password = decoded.partition(":")
    return password if colon and password else None


@functools.lru_cache(maxsize=1024)
def _rules(patterns: tuple[str, ...]) -> hosts.HostRules:
    """A grant's allowlist, compiled once per distinct list; invalid entries allow nothing."""
    compiled = []
    for text in patterns:
        try:
            compiled.append(hosts.parse_pattern(text))
        except ValueError as error:
            log.warning("egress allowlist entry ignored: %s", error)
    return hosts.HostRules(tuple(compiled))


def _suggested_pattern(target: hosts.Target) -> str:
    """The allowlist entry that would admit the target."""
    return target.host if target.port in hosts.DEFAULT_PORTS else target.hostport


def _upstream_head(request: _Request) -> bytes:
    """The request as the origin gets it: origin-form, its own Host, no hop-by-hop headers."""
    target = request.target
    named = {
        token.strip().lower()
        for key, value in request.headers
        if key.lower() in ("connection", "proxy-connection")
        for token in value.split(",")
    }
    dropped = _HOP_BY_HOP | (named - _FRAMING)
    host = target.hostport if target.port != 80 else target.hostport.rsplit(":", 1)[0]
    lines = [f"{request.method} {target.path} {request.version}", f"Host: {host}"]
    lines += [f"{key}: {value}" for key, value in request.headers if key.lower() not in dropped]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    exchange: _Exchange,
    *,
    up: bool,
    half_close: bool,
) -> None:
    """Copy until end of input, waiting for each write to drain so neither side's speed can
    pile data up in the proxy."""
    while True:
        try:
            data = await reader.read(CHUNK)
        except OSError:
            return
        if not data:
            break
        await _forward(writer, data, exchange, up=up)
    if half_close and writer.can_write_eof():
        with contextlib.suppress(OSError):
            writer.write_eof()


async def _forward(
    writer: asyncio.StreamWriter, data: bytes, exchange: _Exchange, *, up: bool
) -> None:
    writer.write(data)
    if up:
        exchange.bytes_up += len(data)
    else:
        exchange.bytes_down += len(data)
    exchange.last_activity = time.monotonic()
    await writer.drain()


async def _send_body(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    framing: _Framing,
    exchange: _Exchange,
    max_trailer_bytes: int,
) -> None:
    """Relay exactly the request's body, so nothing after it (a smuggled second request)
    reaches the origin."""
    if framing.kind == "length":
        await _copy_exact(reader, writer, framing.length, exchange)
    elif framing.kind == "chunked":
        while True:
            line = await reader.readuntil(b"\n")
            match = _CHUNK_SIZE.fullmatch(line)
            if match is None:
                raise _BodyError("bad chunk size line")
            size = int(match.group(1), 16)
            await _forward(writer, line, exchange, up=True)
            if size == 0:
                break
            await _copy_exact(reader, writer, size, exchange)
            if await reader.readexactly(2) != b"\r\n":
                raise _BodyError("chunk not followed by CRLF")
            await _forward(writer, b"\r\n", exchange, up=True)
        trailers = 0
        while True:
            line = await reader.readuntil(b"\n")
            trailers += len(line)
            if trailers > max_trailer_bytes or not line.endswith(b"\r\n"):
                raise _BodyError("bad trailer section")
            await _forward(writer, line, exchange, up=True)
            if line == b"\r\n":
                break


async def _copy_exact(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, size: int, exchange: _Exchange
) -> None:
    while size > 0:
        data = await reader.read(min(CHUNK, size))
        if not data:
            raise _BodyError("body shorter than announced")
        size -= len(data)
        await _forward(writer, data, exchange, up=True)


def _response(refusal: _Refusal) -> bytes:
    status = refusal.status or 400
    body = (refusal.reason + "\n").encode("ascii", "replace")
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if refusal.authenticate:
        lines.append(f'Proxy-Authenticate: Basic realm="{REALM}"')
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


async def _answer(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, refusal: _Refusal
) -> None:
    """Send the refusal, then read away what the client still sends for a moment: closing with
    unread input resets the connection, and the client may never see the answer."""
    with contextlib.suppress(OSError, TimeoutError):
        writer.write(_response(refusal))
        await asyncio.wait_for(writer.drain(), FLUSH_SECONDS)
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(LINGER_SECONDS):
            discarded = 0
            while discarded < LINGER_BYTES:
                data = await reader.read(CHUNK)
                if not data:
                    break
                discarded += len(data)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), FLUSH_SECONDS)
    except (OSError, TimeoutError):
        # A peer that stops reading would hold the close open for ever.
        writer.transport.abort()


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return "unknown"
