"""A scripted stand-in for a coding agent: the prompt's first line picks what it does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

BINARY = bytes(range(256)) + b"\x00\xff\x00PNG\r\n\x1a\n" * 3


def report(extra: dict[str, object]) -> None:
    path = os.environ.get("SCRIPTED_AGENT_REPORT")
    if not path:
        return
    data = {"argv": sys.argv, "env": dict(os.environ), "cwd": os.getcwd(), "pid": os.getpid(),
            "pgid": os.getpgid(0), **extra}
    Path(path).write_text(json.dumps(data), encoding="utf-8")


def event(kind: str, data: dict[str, object]) -> None:
    print(json.dumps({"kind": kind, "data": data}), flush=True)


def edit() -> None:
    event("todo", {"items": [{"text": "Edit the README", "status": "in_progress"},
                             {"text": "Tidy up", "status": "pending"}]})
    print("plain progress line", flush=True)
    print("a warning on stderr", file=sys.stderr, flush=True)
    Path("README.md").write_text("# Demo\n\nHello, edited.\n", encoding="utf-8")
    Path("src").mkdir(exist_ok=True)
    Path("src/new_module.py").write_text("VALUE = 42\n", encoding="utf-8")
    Path("old.txt").unlink()
    os.chmod("scripts/run.sh", 0o755)  # noqa: S103 - the change under test
    Path("assets").mkdir(exist_ok=True)
    Path("assets/blob.bin").write_bytes(BINARY)
    os.symlink("README.md", "link-to-readme")
    os.rename("docs/a.md", "docs/b.md")
    Path("notes.log").write_text("ignored by .gitignore\n", encoding="utf-8")
    event("tool", {"name": "edit", "status": "completed", "input": "README.md"})
    event("todo", {"items": [{"text": "Edit the README", "status": "completed"},
                             {"text": "Tidy up", "status": "completed"}]})
    event("message", {"text": "Update the README and add a module\n\nAlso moved docs/a.md."})


def probe() -> str | None:
    """Try to write where SCRIPTED_AGENT_PROBE points (outside the sandbox's writable paths)."""
    target = os.environ.get("SCRIPTED_AGENT_PROBE")
    if not target:
        return None
    try:
        Path(target).write_text("escaped\n", encoding="utf-8")
    except OSError as exc:
        return f"refused: {exc.strerror}"
    return "written"


def watched_alive() -> bool | None:
    """Whether the process in the pid file SCRIPTED_AGENT_WATCH names is running."""
    pid_file = os.environ.get("SCRIPTED_AGENT_WATCH")
    if not pid_file:
        return None
    try:
        os.kill(int(Path(pid_file).read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def main() -> int:
    prompt = Path(sys.argv[1]).read_text(encoding="utf-8")
    stdin = sys.stdin.read()
    mode = prompt.splitlines()[0].removeprefix("mode:").strip()
    report({"mode": mode, "prompt": prompt, "stdin": stdin, "probe": probe(),
            "watched_alive": watched_alive()})
    if mode == "edit":
        edit()
    elif mode == "fail":
        print("working on it", flush=True)
        print("boom: the agent could not finish", file=sys.stderr, flush=True)
        return 3
    elif mode == "edit-then-fail":
        Path("README.md").write_text("# Demo\n\nHalf done.\n", encoding="utf-8")
        print("API Error: 402 billing_error", file=sys.stderr, flush=True)
        return 1
    elif mode == "sleep":
        child = subprocess.Popen(["sleep", "300"])
        report({"mode": mode, "child_pid": child.pid})
        print("sleeping", flush=True)
        time.sleep(300)
    elif mode == "noop":
        event("message", {"text": "Nothing needed changing."})
    elif mode == "submodule":
        subprocess.run(["git", "init", "-q", "vendored"], check=True)
        Path("vendored/file.txt").write_text("x\n", encoding="utf-8")
        git = ["git", "-C", "vendored", "-c", "user.name=a", "-c", "user.email=a@b"]
        subprocess.run([*git, "add", "."], check=True)
        subprocess.run([*git, "commit", "-qm", "nested"], check=True)
    elif mode == "worktree-trick":
        # Point git's work tree one level up, at the run's directory: a changeset that trusted
        # .git/config would now pick up files from outside the repository.
        subprocess.run(["git", "config", "core.worktree", str(Path.cwd().parent)], check=True)
        Path("README.md").write_text("# Demo\n\nHello, edited.\n", encoding="utf-8")
    elif mode == "escape-symlink":
        os.symlink("../../outside", "sneaky")
    elif mode == "wait":
        go = Path(os.environ["SCRIPTED_AGENT_GO"])
        print("waiting for the go file", flush=True)
        while not go.exists():
            time.sleep(0.05)
        edit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
