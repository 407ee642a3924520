"""Egress host rules: patterns, request targets and which addresses count as public."""

from __future__ import annotations

import pytest

from bot.gateway import hosts
from bot.gateway.hosts import HostPattern, Target, TargetError


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("pypi.org", HostPattern("pypi.org")),
        ("PyPI.ORG.", HostPattern("pypi.org")),
        ("  pypi.org ", HostPattern("pypi.org")),
        ("*.pythonhosted.org", HostPattern("pythonhosted.org", wildcard=True)),
        ("registry.test:8443", HostPattern("registry.test", port=8443)),
        ("*.pkg.test:8080", HostPattern("pkg.test", wildcard=True, port=8080)),
        ("bücher.example", HostPattern("xn--bcher-kva.example")),
        ("BÜCHER.example。", HostPattern("xn--bcher-kva.example")),
        ("xn--bcher-kva.example", HostPattern("xn--bcher-kva.example")),
        ("10.0.0.1", HostPattern("10.0.0.1")),
        ("10.0.0.1:22", HostPattern("10.0.0.1", port=22)),
        ("2001:DB8::1", HostPattern("2001:db8::1")),
        ("[2001:db8:0::1]:443", HostPattern("2001:db8::1", port=443)),
    ],
)
def test_patterns_parse_to_canonical_form(text: str, pattern: HostPattern) -> None:
    assert hosts.parse_pattern(text) == pattern


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("*", "wildcard"),
        ("*.org", "top-level"),
        ("a.*.org", "wildcard"),
        ("*foo.org", "wildcard"),
        ("*.10.0.0.1", "IP address"),
        ("https://pypi.org", "not a URL"),
        ("pypi.org/simple", "not a URL"),
        ("user@pypi.org", "user:password@"),
        ("pypi..org", "DNS name"),
        ("-pypi.org", "DNS name"),
        ("under_score.org", "DNS name"),
        ("a" * 64 + ".org", "DNS name"),
        (".".join(["a" * 60] * 5), "DNS name"),
        ("pypi.org:0", "port"),
        ("pypi.org:65536", "port"),
        ("pypi.org:http", "port"),
        ("pypi.org:", "port"),
        ("1.2.3", "number"),
        ("0x7f.1", "number"),
        ("2130706433", "number"),
        ("[::1%eth0]", "IPv6"),
        ("[not-v6]:443", "IPv6"),
    ],
)
def test_invalid_patterns_say_which_and_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match="invalid host pattern") as raised:
        hosts.parse_pattern(text)
    assert repr(text) in str(raised.value) and why in str(raised.value)


@pytest.mark.parametrize(
    ("pattern", "host", "port", "allowed"),
    [
        ("pypi.org", "pypi.org", 443, True),
        ("pypi.org", "pypi.org", 80, True),
        ("pypi.org", "pypi.org", 8443, False),
        ("pypi.org", "www.pypi.org", 443, False),
        ("pypi.org", "pypi.org.evil.test", 443, False),
        ("*.pythonhosted.org", "files.pythonhosted.org", 443, True),
        ("*.pythonhosted.org", "a.b.pythonhosted.org", 80, True),
        ("*.pythonhosted.org", "pythonhosted.org", 443, False),
        ("*.pythonhosted.org", "evilpythonhosted.org", 443, False),
        ("*.pythonhosted.org", "files.pythonhosted.org", 22, False),
        ("registry.test:8443", "registry.test", 8443, True),
        ("registry.test:8443", "registry.test", 443, False),
        ("10.0.0.1", "10.0.0.1", 443, True),
        ("10.0.0.1", "10.0.0.2", 443, False),
        ("[2001:db8::1]", "2001:db8::1", 443, True),
        ("pypi.org", "151.101.0.223", 443, False),
    ],
)
def test_pattern_matching(pattern: str, host: str, port: int, allowed: bool) -> None:
    assert hosts.parse_pattern(pattern).matches(host, port) is allowed
    assert hosts.compile_patterns(["other.test", pattern]).allows(host, port) is allowed


def test_targets_are_matched_in_their_normal_form() -> None:
    rules = hosts.compile_patterns(["*.Bücher.Example"])
    target = hosts.parse_connect_target("WWW.xn--bcher-kva.example.:443")
    assert rules.allows(target.host, target.port)


def test_compile_patterns_rejects_the_first_invalid_entry() -> None:
    with pytest.raises(ValueError, match="'bad host'"):
        hosts.compile_patterns(["pypi.org", "bad host"])


def test_default_allowlist_is_exact_valid_hosts() -> None:
    rules = hosts.compile_patterns(hosts.DEFAULT_ALLOWED)
    assert not any(pattern.wildcard or pattern.port for pattern in rules.patterns)
    assert len(set(hosts.DEFAULT_ALLOWED)) == len(hosts.DEFAULT_ALLOWED)
    for host in ("pypi.org", "files.pythonhosted.org", "registry.npmjs.org", "proxy.golang.org",
                 "index.crates.io", "repo1.maven.org", "rubygems.org"):
        assert rules.allows(host, 443)


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("pypi.org:443", Target("pypi.org", 443)),
        ("PyPI.org.:443", Target("pypi.org", 443)),
        ("10.0.0.1:8080", Target("10.0.0.1", 8080)),
        ("[2001:DB8::1]:443", Target("2001:db8::1", 443)),
        ("[::ffff:10.0.0.1]:443", Target("::ffff:a00:1", 443)),
    ],
)
def test_connect_targets(text: str, target: Target) -> None:
    assert hosts.parse_connect_target(text) == target


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("pypi.org", hosts.REASON_CONNECT_FORM),
        ("[::1]", hosts.REASON_CONNECT_FORM),
        ("pypi.org:", hosts.REASON_BAD_PORT),
        ("pypi.org:0", hosts.REASON_BAD_PORT),
        ("pypi.org:65536", hosts.REASON_BAD_PORT),
        ("pypi.org:0443", hosts.REASON_BAD_PORT),
        ("pypi.org:+443", hosts.REASON_BAD_PORT),
        ("pypi.org:443:1", hosts.REASON_BAD_PORT),
        (":443", hosts.REASON_EMPTY_HOST),
        ("user:pw@pypi.org:443", hosts.REASON_USERINFO),
        ("py_pi.org:443", hosts.REASON_BAD_HOST),
        ("pypi..org:443", hosts.REASON_BAD_HOST),
        ("bücher.example:443", hosts.REASON_TARGET_NOT_ASCII),
        ("pypi.org\t:443", hosts.REASON_TARGET_CONTROL),
        ("2130706433:443", hosts.REASON_NUMERIC_HOST),
        ("127.1:443", hosts.REASON_NUMERIC_HOST),
        ("010.0.0.1:443", hosts.REASON_NUMERIC_HOST),
        ("::1:443", hosts.REASON_BAD_PORT),
        ("[::1:443", hosts.REASON_BAD_IPV6),
        ("[::1]443", hosts.REASON_BAD_IPV6),
        ("[fe80::1%25eth0]:443", hosts.REASON_BAD_IPV6),
        ("[10.0.0.1]:443", hosts.REASON_BAD_IPV6),
        ("a" * 300 + ":443", hosts.REASON_TARGET_TOO_LONG),
    ],
)
def test_bad_connect_targets(text: str, reason: str) -> None:
    with pytest.raises(TargetError) as raised:
        hosts.parse_connect_target(text)
    assert str(raised.value) == reason
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("http://pypi.org/simple/", Target("pypi.org", 80, "/simple/")),
        ("HTTP://PyPI.org", Target("pypi.org", 80, "/")),
        ("http://pypi.org?q=1", Target("pypi.org", 80, "/?q=1")),
        ("http://pypi.org:8080/a%20b?x=1&y=@", Target("pypi.org", 8080, "/a%20b?x=1&y=@")),
        ("http://[2001:db8::1]:81/", Target("2001:db8::1", 81, "/")),
    ],
)
def test_absolute_urls(text: str, target: Target) -> None:
    assert hosts.parse_absolute_url(text) == target


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("/simple/", hosts.REASON_URL_SCHEME),
        ("https://pypi.org/", hosts.REASON_URL_SCHEME),
        ("ftp://pypi.org/", hosts.REASON_URL_SCHEME),
        ("pypi.org:80", hosts.REASON_URL_SCHEME),
        ("http:/pypi.org/", hosts.REASON_URL_SCHEME),
        ("http:///x", hosts.REASON_EMPTY_HOST),
        ("http://user:pw@pypi.org/", hosts.REASON_USERINFO),
        ("http://pypi.org/#frag", hosts.REASON_FRAGMENT),
        ("http://pypi.org:/", hosts.REASON_BAD_PORT),
        ("http://pypi.org/a\"b", hosts.REASON_BAD_PATH),
        ("http://pypi.org/a\\b", hosts.REASON_BAD_PATH),
        ("http://pypi.org/" + "a" * 9000, hosts.REASON_TARGET_TOO_LONG),
    ],
)
def test_bad_absolute_urls(text: str, reason: str) -> None:
    with pytest.raises(TargetError) as raised:
        hosts.parse_absolute_url(text)
    assert str(raised.value) == reason


def test_target_forms() -> None:
    assert Target("2001:db8::1", 443).hostport == "[2001:db8::1]:443"
    assert Target("pypi.org", 443).hostport == "pypi.org:443"
    assert Target("10.0.0.1", 80).is_ip and not Target("pypi.org", 80).is_ip


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("151.101.0.223", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),  # loopback
        ("127.8.9.10", False),
        ("10.1.2.3", False),  # private
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # link-local (cloud metadata)
        ("100.64.0.1", False),  # shared address space
        ("100.127.255.254", False),
        ("0.0.0.0", False),  # unspecified
        ("0.1.2.3", False),  # "this network"
        ("224.0.0.1", False),  # multicast
        ("240.0.0.1", False),  # reserved
        ("255.255.255.255", False),
        ("192.0.2.1", False),  # documentation
        ("198.18.0.1", False),  # benchmarking
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fe80::1%eth0", False),
        ("fc00::1", False),  # unique local
        ("fec0::1", False),  # site-local
        ("ff02::1", False),
        ("2001:db8::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("::ffff:10.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("::127.0.0.1", False),  # IPv4-compatible (deprecated)
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::", False),  # 6to4 of 169.254.169.254
        ("2002:808:808::", True),  # 6to4 of 8.8.8.8
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", False),
        ("64:ff9b::808:808", True),
        ("not an address", False),
        ("", False),
    ],
)
def test_is_public(address: str, public: bool) -> None:
    assert hosts.is_public(address) is public
