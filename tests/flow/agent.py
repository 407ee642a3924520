"""A scripted coding agent for end-to-end tests: it does what the test's plan file says.

argv: <prompt file> <plan file> <log dir>. The plan (JSON) may hold `write` {path: text},
`write_b64` {path: base64}, `delete` [paths], `chmod_x` [paths], `todo` [texts],
`summary`, `wait_for` (a path that must exist before the agent edits), `sleep` (seconds),
`fail` (exit 1) and `model_turns` (that many Messages requests to ANTHROPIC_BASE_URL, each
followed by writing `turn-<n>.txt` unless `turn_files` is false; a refused request ends the
agent with the error, exit 1); `by_model` {model: plan} replaces keys for a run of that
model (AGENTBOT_MODEL), as variants of a group need. The prompt is copied to
<log dir>/prompt-<n>.txt for the test to read.
"""

import base64
import json
import os
import pathlib
import sys
import time
import urllib.error
import urllib.request


def emit(kind: str, data: dict) -> None:
    print(json.dumps({"kind": kind, "data": data}), flush=True)


def ask_model(turn: int) -> str | None:
    """One Messages request through the gateway, as a CLI sends it; None, or the error."""
    request = urllib.request.Request(  # noqa: S310 - the gateway's http URL
        os.environ["ANTHROPIC_BASE_URL"].rstrip("/") + "/v1/messages",
        data=json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [
            {"role": "user", "content": f"turn {turn}"}]}).encode(),
        headers={"x-api-key": os.environ["ANTHROPIC_API_KEY"],
                 "anthropic-version": "2023-06-01", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - a test
            json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return f"API Error: {exc.code} {exc.read().decode()}"
    return None


def main() -> int:
    prompt_file, plan_file, log_dir = sys.argv[1:4]
    plan = json.loads(pathlib.Path(plan_file).read_text())
    # Variants of a group differ by model: each may get a plan of its own.
    plan.update((plan.pop("by_model", None) or {}).get(os.environ.get("AGENTBOT_MODEL", ""), {}))
    logs = pathlib.Path(log_dir)
    count = len(list(logs.glob("prompt-*.txt")))
    (logs / f"prompt-{count}.txt").write_text(pathlib.Path(prompt_file).read_text())
    (logs / f"pid-{count}").write_text(str(os.getpid()))
    todo = plan.get("todo") or []
    if todo:
        emit("todo", {"items": [{"text": t, "status": "in_progress" if i == 0 else "pending"}
                                for i, t in enumerate(todo)]})
    emit("tool", {"name": "edit", "status": "started", "input": "the files"})
    if plan.get("wait_for"):
        while not pathlib.Path(plan["wait_for"]).exists():
            time.sleep(0.05)
    if plan.get("sleep"):
        time.sleep(float(plan["sleep"]))
    for path, text in (plan.get("write") or {}).items():
        target = pathlib.Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    for path, data in (plan.get("write_b64") or {}).items():
        pathlib.Path(path).write_bytes(base64.b64decode(data))
    for path in plan.get("chmod_x") or []:
        os.chmod(path, 0o755)  # noqa: S103 - the test wants an executable file
    for path in plan.get("delete") or []:
        pathlib.Path(path).unlink()
    for turn in range(int(plan.get("model_turns") or 0)):
        error = ask_model(turn)
        if error:
            emit("message", {"text": error})
            print(error, file=sys.stderr)
            return 1
        if plan.get("turn_files", True):
            pathlib.Path(f"turn-{turn}.txt").write_text(f"turn {turn}\n")
    if todo:
        emit("todo", {"items": [{"text": t, "status": "completed"} for t in todo]})
    if plan.get("fail"):
        emit("message", {"text": plan.get("summary") or "I could not do it."})
        return 1
    emit("message", {"text": plan.get("summary") or "Done."})
    return 0


if __name__ == "__main__":
    sys.exit(main())
