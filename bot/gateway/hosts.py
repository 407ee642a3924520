"""Egress host rules: allowlist patterns, strict proxy request targets and public addresses."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

# Ports a pattern without `:port` allows: HTTPS and plain HTTP.
DEFAULT_PORTS = frozenset({443, 80})

# The package registries a run reaches unless its repository says otherwise: exact hosts only,
# so a registry's other subdomains (user content, docs, uploads) stay out.
DEFAULT_ALLOWED: tuple[str, ...] = (
    # Python
    "pypi.org",
    "files.pythonhosted.org",
    # Node
    "registry.npmjs.org",
    "registry.yarnpkg.com",
    # Go
    "proxy.golang.org",
    "sum.golang.org",
    # Rust
    "crates.io",
    "index.crates.io",
    "static.crates.io",
    # Java
    "repo.maven.apache.org",
    "repo1.maven.org",
    "plugins.gradle.org",
    "services.gradle.org",
    # Ruby
    "rubygems.org",
    "index.rubygems.org",
)

MAX_HOST_LENGTH = 253  # a DNS name in text form, without the trailing dot
MAX_CONNECT_TARGET_LENGTH = MAX_HOST_LENGTH + 2 + 1 + 5  # brackets, colon, port
MAX_URL_LENGTH = 8192

# Why a request target was refused, as the client reads it (never echoing the target back, so
# nothing the client sent lands verbatim in a response or a log).
REASON_TARGET_TOO_LONG = "request target is too long"
REASON_TARGET_NOT_ASCII = "request target must be ASCII"
REASON_TARGET_CONTROL = "request target has spaces or control characters"
REASON_CONNECT_FORM = "CONNECT needs host:port (or [IPv6]:port)"
REASON_URL_SCHEME = "a proxied request needs an absolute http:// URL (use CONNECT for https)"
REASON_USERINFO = "user:password@ in a request target is not allowed"
REASON_EMPTY_HOST = "request target has no host"
REASON_BAD_PORT = "port must be a number from 1 to 65535"
REASON_BAD_HOST = "host is not a valid DNS name"
REASON_NUMERIC_HOST = "a host name must not end in a number (write an IP address in full)"
REASON_BAD_IPV6 = "bracketed host is not a valid IPv6 address"
REASON_BAD_PATH = "URL path has characters that are not allowed"
REASON_FRAGMENT = "a request target must not carry a #fragment"

# Letters, digits and inner hyphens, 63 at most (RFC 1035 and 1123).
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Resolvers read a name whose last label is a number (decimal or 0x hex) as an IPv4 address:
# `2130706433` and `0x7f.1` are 127.0.0.1 to getaddrinfo.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
# Path and query: RFC 3986 pchar, `/` and `?`, with percent-escapes kept as they are.
_PATH = re.compile(r"/[A-Za-z0-9\-._~%!$&'()*+,;=:@/?]*")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetError(ValueError):
    """A request target the proxy refuses; the message is a reason meant for the client."""


@dataclass(frozen=True)
class Target:
    """Where a proxy request goes: a normalized host (ASCII, lowercase, no trailing dot; an IPv6
    address without brackets), its port, and for plain HTTP the origin-form path."""

    host: str
    port: int
    path: str = ""

    @property
    def is_ip(self) -> bool:
        """Whether the host is an IP literal rather than a name."""
        return _ip_literal(self.host) is not None

    @property
    def hostport(self) -> str:
        """`host:port`, with an IPv6 host in brackets."""
        return f"{_bracketed(self.host)}:{self.port}"


@dataclass(frozen=True)
class HostPattern:
    """One parsed allowlist entry."""

    host: str  # normalized as Target.host; for a wildcard, the suffix after `*.`
    wildcard: bool = False
    port: int | None = None  # None: any of DEFAULT_PORTS

    def matches(self, host: str, port: int) -> bool:
        """Whether a normalized host and a port fall under this pattern."""
        allowed_ports = DEFAULT_PORTS if self.port is None else {self.port}
        if port not in allowed_ports:
            return False
        if self.wildcard:
            # Strictly under the suffix: `a.example.org`, never `example.org` or `badexample.org`.
            return host.endswith("." + self.host)
        return host == self.host


@dataclass(frozen=True)
class HostRules:
    """A compiled allowlist."""

    patterns: tuple[HostPattern, ...] = ()

    def allows(self, host: str, port: int) -> bool:
        """Whether any pattern admits this normalized host and port."""
        return any(pattern.matches(host, port) for pattern in self.patterns)


def parse_pattern(text: str) -> HostPattern:
    """Parse an allowlist entry (`pypi.org`, `*.pythonhosted.org`, either with `:port`, or an
    IP literal); ValueError names the entry and what is wrong with it."""
    try:
        return _parse_pattern(text)
    except ValueError as error:
        raise ValueError(f"invalid host pattern {text!r}: {error}") from None


def compile_patterns(patterns: Iterable[str]) -> HostRules:
    """Parse every entry into rules; ValueError on the first invalid one."""
    return HostRules(tuple(parse_pattern(text) for text in patterns))


def parse_connect_target(text: str) -> Target:
    """Parse a CONNECT request target (`host:port` or `[v6]:port`); TargetError if invalid."""
    _check_ascii(text, MAX_CONNECT_TARGET_LENGTH)
    if "@" in text:
        raise TargetError(REASON_USERINFO)
    host, port = _split_port(text)
    if port is None:
        raise TargetError(REASON_CONNECT_FORM)
    return Target(_normalize_host(host), port)


def parse_absolute_url(text: str) -> Target:
    """Parse an absolute-form target (`http://host[:port]/path?query`); TargetError if invalid.
    The path of the result is the origin-form to send upstream (`/` when the URL has none)."""
    _check_ascii(text, MAX_URL_LENGTH)
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() != "http":
        raise TargetError(REASON_URL_SCHEME)
    if "#" in rest:
        raise TargetError(REASON_FRAGMENT)
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path = rest[:end], rest[end:]
    if "@" in authority:
        raise TargetError(REASON_USERINFO)
    host, port = _split_port(authority)
    if path.startswith("?") or not path:
        path = "/" + path
    if not _PATH.fullmatch(path):
        raise TargetError(REASON_BAD_PATH)
    return Target(_normalize_host(host), 80 if port is None else port, path)


def is_public(address: str | Address) -> bool:
    """Whether an IP address is one the proxy may connect to: globally routable, and no
    loopback, private, link-local, multicast, reserved, unspecified, shared (100.64/10) or
    site-local address, nor an IPv6 form that embeds a non-public IPv4 address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4-mapped or NAT64 address is the IPv4 address it carries, whatever the Python
        # version's flags say of the IPv6 range (3.11 calls all of ::ffff:0:0/96 private).
        translated = ip.ipv4_mapped or (_nat64_ipv4(ip) if ip in _NAT64 else None)
        if translated is not None:
            return is_public(translated)
        # 6to4 and Teredo tunnel to the IPv4 address they embed: both have to be public.
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not is_public(embedded):
            return False
        if ip.is_site_local:
            return False
    if (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or ip in _SHARED
    ):
        return False
    # is_global also leaves out what the flags above miss (benchmarking, documentation, ...).
    return ip.is_global


_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _nat64_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)


def _parse_pattern(text: str) -> HostPattern:
    text = text.strip()
    if not text:
        raise ValueError("it is empty")
    if "://" in text or "/" in text:
        raise ValueError("give a host name (optionally with :port), not a URL or a path")
    if "@" in text:
        raise ValueError("user:password@ is not allowed")
    wildcard = text.startswith("*.")
    if wildcard:
        text = text[2:]
    if "*" in text:
        raise ValueError("a wildcard may only be a whole first label, as in *.example.org")
    if text.count(":") > 1 and not text.startswith("["):
        host, port = f"[{text}]", None  # a bare IPv6 address cannot carry a port
    else:
        host, port = _split_port(text)
    host = _normalize_host(host, allow_unicode=True)
    if wildcard and _ip_literal(host) is not None:
        raise ValueError("a wildcard cannot cover an IP address")
    if wildcard and "." not in host:
        raise ValueError("a wildcard must sit under a domain, not a top-level domain")
    return HostPattern(host, wildcard, port)


def _check_ascii(text: str, limit: int) -> None:
    if len(text) > limit:
        raise TargetError(REASON_TARGET_TOO_LONG)
    if not text.isascii():
        raise TargetError(REASON_TARGET_NOT_ASCII)
    if not text.isprintable() or " " in text:
        raise TargetError(REASON_TARGET_CONTROL)


def _split_port(text: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` into the host (brackets kept) and port."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise TargetError(REASON_BAD_IPV6)
        host, rest = text[: close + 1], text[close + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise TargetError(REASON_BAD_IPV6)
        return host, _parse_port(rest[1:])
    host, sep, port = text.partition(":")
    return host, _parse_port(port) if sep else None


def _parse_port(text: str) -> int:
    if not _PORT.fullmatch(text) or int(text) > 65535:
        raise TargetError(REASON_BAD_PORT)
    return int(text)


def _normalize_host(text: str, *, allow_unicode: bool = False) -> str:
    """The canonical form of a host: an IP literal as ipaddress writes it, a name in lowercase
    ASCII (IDNA punycode) without the trailing dot."""
    if not text:
        raise TargetError(REASON_EMPTY_HOST)
    if text.startswith("["):
        inner = text[1:-1] if text.endswith("]") else ""
        # A zone (`%eth0`) names a local interface: meaningless, and refused, for egress.
        if "%" in inner or not isinstance(_ip_literal(inner), ipaddress.IPv6Address):
            raise TargetError(REASON_BAD_IPV6)
        return str(ipaddress.IPv6Address(inner))
    ip = _ip_literal(text)
    if ip is not None:
        if isinstance(ip, ipaddress.IPv6Address):
            raise TargetError(REASON_BAD_IPV6)  # unbracketed IPv6 only reaches here in patterns
        return str(ip)
    name = text
    if not name.isascii():
        if not allow_unicode:
            raise TargetError(REASON_TARGET_NOT_ASCII)
        try:
            # The stdlib codec (IDNA 2003) also maps the other full stops (`。`) to `.`.
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise TargetError(REASON_BAD_HOST) from None
    name = name.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > MAX_HOST_LENGTH:
        raise TargetError(REASON_BAD_HOST)
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise TargetError(REASON_BAD_HOST)
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        raise TargetError(REASON_NUMERIC_HOST)
    return name


def _ip_literal(text: str) -> Address | None:
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
