"""A real Chromium through playwright-core (scripts/install-playwright), driven from a test."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VERSION_LINE = "version="
SCREENSHOTS = Path(os.environ.get("AGENTBOT_SCREENSHOTS", ROOT / "build" / "screenshots"))


def playwright_dir() -> Path | None:
    """Where scripts/install-playwright put playwright-core, if it did."""
    script = (ROOT / "scripts" / "install-playwright").read_text()
    version = next(line.split("=", 1)[1] for line in script.splitlines()
                   if line.startswith(VERSION_LINE))
    cache = os.environ.get("AGENTBOT_BROWSER_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "agentbot" / "browser")
    found = Path(cache) / f"playwright-core-{version}"
    return found if (found / ".installed").exists() else None


def missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    if shutil.which("chromium") is None:
        return "chromium is not installed (Debian: apt-get install chromium chromium-driver)"
    if playwright_dir() is None:
        return "playwright-core is not installed (scripts/install-playwright)"
    return None


class Browser:
    """One Chromium; pages by name, each in its own context (its own cookies)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._lock = asyncio.Lock()

    @classmethod
    async def launch(cls) -> Browser:
        directory, chromium = playwright_dir(), shutil.which("chromium")
        assert directory is not None and chromium is not None
        process = await asyncio.create_subprocess_exec(
            "node", str(Path(__file__).with_name("browser.js")), str(directory), chromium,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=16 * 1024 * 1024)
        return cls(process)

    async def send(self, op: str, **fields: Any) -> Any:
        assert self._process.stdin is not None and self._process.stdout is not None
        async with self._lock:
            self._process.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())
            await self._process.stdin.drain()
            line = await asyncio.wait_for(self._process.stdout.readline(), 60)
        if not line:
            raise RuntimeError("the browser driver exited")
        answer = json.loads(line)
        if not answer["ok"]:
            raise AssertionError(f"{op}: {answer['error']}")
        return answer["value"]

    async def close(self) -> None:
        if self._process.returncode is None:
            try:
                await self.send("close")
            finally:
                try:
                    await asyncio.wait_for(self._process.wait(), 20)
                except TimeoutError:
                    self._process.kill()
                    await self._process.wait()
