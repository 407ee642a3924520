"""Stands in for an agent CLI: records how it was called, edits a file, replays a transcript."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "transcripts"
REPLAYS = {"claude": "claude-stream.jsonl", "codex": "codex-captured-edits.jsonl",
           "opencode": "opencode-captured-edits.jsonl", "aider": "aider-captured-edits.txt"}


def main() -> int:
    name = os.environ["FAKE_CLI_NAME"]
    args = sys.argv[1:]
    if name == "aider":
        prompt = Path(args[args.index("--message-file") + 1]).read_text(encoding="utf-8")
        Path(".aider.chat.history.md").write_text("# aider chat\n", encoding="utf-8")
    else:
        prompt = sys.stdin.read()
    Path(os.environ["SCRIPTED_AGENT_REPORT"]).write_text(json.dumps(
        {"name": name, "argv": args, "prompt": prompt, "env": dict(os.environ)}),
        encoding="utf-8")
    Path("CHANGELOG.md").write_text(f"- a change made by {name}\n", encoding="utf-8")
    sys.stdout.write((TRANSCRIPTS / REPLAYS[name]).read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
