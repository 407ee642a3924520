"""Start, pin, probe and stop the servers under test (agentbot and the Probot peer)."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROBOT_DIR = Path(__file__).resolve().parent / "probot"
VENV_BIN = REPO / ".venv" / "bin"

# Environment variables of the parent that must not leak into a server under test: the
# servers read their whole configuration from what the benchmark hands them.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")


class ServerError(RuntimeError):
    """A server under test did not start or stop as expected."""


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rsa_private_key_pem() -> str:
    """A fresh 2048-bit RSA key in PEM, as GitHub hands an App (made per run, never kept)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    """One server process pinned to a CPU, with its output kept in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    cpu: str
    log_path: Path
    ready_path: str = "/healthz"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        """Start the process and wait until `ready_path` answers 200."""
        env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
        env.update(self.env)
        argv = ["taskset", "-c", self.cpu, *self.argv]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(argv, cwd=self.cwd, env=env, stdout=log,
                                            stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.process.returncode} at "
                                  f"start; see {self.log_path}")
            if self._ready():
                return
            time.sleep(0.2)
        self.stop()
        raise ServerError(f"{self.name} was not ready within {timeout:.0f} s; "
                          f"see {self.log_path}")

    def _ready(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", self.ready_path)
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServerError(f"{self.name} is not running")
        return self.process.pid

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it lingers; only this server's own process group."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)


def agentbot(workdir: Path, *, database_url: str, secret: str, private_key: str,
             cpu: str, experiments: tuple[str, ...] = ()) -> Server:
    """A real `agentbot serve` with a configured App; GitHub points at a closed port.

    With `experiments`, the same serve with bench/experiments.py's switches patched in.
    """
    port = free_port()
    env = {
        "GITHUB_APP_ID": "902117",
        "GITHUB_PRIVATE_KEY": private_key,
        "GITHUB_WEBHOOK_SECRET": secret,
        # Nothing listens there: any call the dispatch worker makes fails fast, locally.
        "GITHUB_API_URL": f"http://127.0.0.1:{free_port()}",
        "AGENTBOT_DATABASE_URL": database_url,
        "AGENTBOT_EXECUTOR": "local",
        "AGENTBOT_HOST": "127.0.0.1",
        "AGENTBOT_PORT": str(port),
        "AGENTBOT_INTERNAL_PORT": str(free_port()),
        "AGENTBOT_LOG_LEVEL": "warning",
        # The checkout under test first, whatever an editable install may have recorded.
        "PYTHONPATH": str(REPO),
    }
    # Run from the work directory so that no developer's `.env` is picked up.
    argv = [str(VENV_BIN / "agentbot"), "serve"]
    if experiments:
        argv = [str(VENV_BIN / "python"), "-m", "bench.experiments", ",".join(experiments)]
    return Server("agentbot", argv, env, workdir, port, cpu, workdir / "agentbot.log",
                  ready_path="/readyz")


def probot(workdir: Path, *, secret: str, private_key: str, cpu: str) -> Server:
    """The minimal Probot app of bench/probot, on a plain node:http server."""
    node = shutil.which("node")
    if node is None:
        raise ServerError("node is not installed; the Probot peer needs Node.js 20.18+")
    if not (PROBOT_DIR / "node_modules" / "probot").is_dir():
        raise ServerError(f"run `npm ci` in {PROBOT_DIR} first")
    port = free_port()
    env = {
        "APP_ID": "902117",
        "PRIVATE_KEY": private_key,
        "WEBHOOK_SECRET": secret,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "LOG_LEVEL": "warn",
        "NODE_ENV": "production",
    }
    return Server("probot", [node, "server.js"], env, PROBOT_DIR, port, cpu,
                  workdir / "probot.log")


def aiohttp_baseline(workdir: Path, *, secret: str, cpu: str) -> Server:
    """bench/baseline.py: aiohttp on uvloop that checks the signature and stores nothing."""
    port = free_port()
    env = {"WEBHOOK_SECRET": secret, "PORT": str(port), "PYTHONPATH": str(REPO)}
    return Server("aiohttp-baseline", [str(VENV_BIN / "python"), "-m", "bench.baseline"], env,
                  workdir, port, cpu, workdir / "baseline.log")
