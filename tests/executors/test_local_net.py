"""The local executor's network relay: loopback endpoints only, bytes both ways, restartable."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

from bot.executors.base import RunSpec, SandboxLimits
from bot.executors.local import bwrap_argv
from bot.executors.local_net import Relay, endpoints

BWRAP = shutil.which("bwrap")
ROOT = Path(__file__).resolve().parents[2]


def spec(**urls: str) -> RunSpec:
    values = {"clone_url": "http://127.0.0.1:8082/git/o/r.git",
              "callback_url": "http://127.0.0.1:8081/internal/runs/3",
              "gateway_url": "http://127.0.0.1:8082", "proxy_url": "http://127.0.0.1:8083",
              **urls}
    return RunSpec(run_id=3, repository="o/r", base_ref="main", base_sha="0" * 40,
                   branch="agentbot/3", prompt="p", agent="command", model=None, setup=[],
                   limits=SandboxLimits(60, 60, 10, 1000), **values)


def test_the_endpoints_are_the_loopback_ports_the_spec_names_once_each() -> None:
    assert endpoints(spec()) == [("127.0.0.1", 8081), ("127.0.0.1", 8082), ("127.0.0.1", 8083)]


def test_a_url_off_loopback_means_no_private_network() -> None:
    assert endpoints(spec(callback_url="http://bot.internal:8081/internal/runs/3")) is None


def test_bwrap_unshares_the_network_only_when_asked(tmp_path: Path) -> None:
    assert "--unshare-net" not in bwrap_argv("/usr/bin/bwrap", tmp_path)
    assert "--unshare-net" in bwrap_argv("/usr/bin/bwrap", tmp_path, private_network=True)


def test_what_the_runner_needs_under_tmp_is_bound_again_read_only(tmp_path: Path) -> None:
    venv, code = Path("/tmp/ci/venv"), Path("/opt/agentbot")  # noqa: S108
    argv = bwrap_argv("/usr/bin/bwrap", tmp_path, keep=(venv, code, venv))
    # After the private /tmp (which would hide it), once; a path outside /tmp needs nothing.
    assert argv.count(str(venv)) == 2 and str(code) not in argv
    assert argv.index("--tmpfs") < argv.index(str(venv))
    assert argv[argv.index(str(venv)) - 1] == "--ro-bind"


async def _echo_server() -> tuple[asyncio.AbstractServer, int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the client's half-close
        writer.write(b"echo:" + data)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.skipif(not BWRAP, reason="bubblewrap is not installed")
async def test_inside_a_private_network_only_the_relayed_port_answers(tmp_path: Path) -> None:
    server, port = await _echo_server()
    other, other_port = await _echo_server()
    relay = Relay(tmp_path, [("127.0.0.1", port)])
    await relay.start()
    # The sandbox's side of the relay, then a client of each port, in a network namespace.
    code = (
        "import socket, pathlib, sys\n"
        "from sandbox import relay\n"
        f"relay.start(pathlib.Path({str(tmp_path / 'net')!r}))\n"
        "def talk(port):\n"
        "    try:\n"
        "        s = socket.create_connection(('127.0.0.1', port), timeout=5)\n"
        "    except OSError as exc:\n"
        "        return type(exc).__name__\n"
        "    s.sendall(b'x' * 200000); s.shutdown(socket.SHUT_WR)\n"
        "    data = b''\n"
        "    while chunk := s.recv(65536):\n"
        "        data += chunk\n"
        "    return f'{data[:5].decode()}{len(data)}'\n"
        f"print(talk({port}), talk({other_port}))\n")
    process = await asyncio.create_subprocess_exec(
        *bwrap_argv(BWRAP or "", tmp_path, private_network=True,
                    keep=(ROOT, Path(sys.prefix), Path(sys.base_prefix))),
        sys.executable, "-c", code,
        env={"PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    await relay.close()
    server.close()
    other.close()
    assert out.decode().split() == ["echo:200005", "ConnectionRefusedError"], err.decode()


async def test_a_restarted_relay_replaces_its_stale_sockets(tmp_path: Path) -> None:
    server, port = await _echo_server()
    first = Relay(tmp_path, [("127.0.0.1", port)])
    await first.start()
    await first.close()  # the bot stopped; the socket file stays behind
    assert (tmp_path / "net" / "0.sock").exists()
    second = Relay(tmp_path, [("127.0.0.1", port)])
    await second.start()
    reader, writer = await asyncio.open_unix_connection(str(tmp_path / "net" / "0.sock"))
    writer.write(b"hello")
    writer.write_eof()
    assert await reader.read() == b"echo:hello"
    writer.close()
    await writer.wait_closed()
    await second.close()
    server.close()
    await server.wait_closed()
