"""A run's stored events as HTML fragments: redacted, escaped, long outputs folded and capped.

Each event becomes one fragment, rendered once and sent as is, both in the page and over the
live stream. `assemble` places fragments the way the page's script does (log lines gathered
into one folded block per source, a tool's result inside its call), so a page rendered at
once and a page that grew event by event look the same.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bot.redact import redact

FOLD_LINES = 12  # longer outputs are folded: a summary line, the text behind a click
FOLD_CHARS = 1_200
OUTPUT_CAP = 20_000  # characters of one output shown at all
MESSAGE_CAP = 20_000
INPUT_CAP = 2_000
LINE_CAP = 2_000
PLAN_CAP = 100

PHASES = {"checkout": "Checkout", "setup": "Setup", "agent": "Agent",
          "changeset": "Collecting the changes", "upload": "Upload", "runner": "Runner"}
PHASE_STATUS = {"started": "started", "succeeded": "done", "failed": "failed",
                "timed_out": "timed out"}
LOG_SOURCES = {"checkout": "Checkout output", "setup": "Setup output",
               "agent": "Agent output"}
PLAN_MARKS = {"completed": "✓", "cancelled": "✕", "in_progress": "●", "pending": "○"}

_TOOL_ID = re.compile(r"[^A-Za-z0-9_.:-]")


@dataclass(frozen=True)
class Fragment:
    """One event as HTML: `seq` is its SSE id, `kind` what the page does with it."""

    seq: int
    kind: str  # log | tool | result | message | phase | plan
    html: str
    group: str = ""  # log: its source; tool and result: the call's id

    @functools.cached_property
    def event(self) -> bytes:
        """The fragment as a server-sent event, encoded once for every viewer."""
        return sse(self.html, "ev", self.seq)


def sse(data: str, event: str, seq: int | None = None) -> bytes:
    """One server-sent event; `seq` (the run's event number) is what a browser resumes from."""
    lines = [f"id: {seq}"] if seq is not None else []
    lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def clean(text: object, cap: int) -> str:
    """Text as shown: secrets masked, capped with a note of what was left out, escaped."""
    value = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False, indent=1)
    value = redact(value)
    if len(value) > cap:
        value = value[:cap] + f"\n… {len(value) - cap:,} more characters not shown"
    return html.escape(value, quote=True)


def folded(text: object, label: str) -> str:
    """A short output as it is; a long one behind a summary saying how long it is."""
    raw = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False, indent=1)
    lines = raw.count("\n") + 1
    body = clean(raw, OUTPUT_CAP)
    if lines <= FOLD_LINES and len(raw) <= FOLD_CHARS:
        return f'<pre class="out">{body}</pre>'
    first = html.escape(redact(raw.strip().split("\n", 1)[0])[:120])
    return (f'<details class="out"><summary>{html.escape(label)} · {lines:,} lines'
            f'<span class="peek">{first}</span></summary><pre>{body}</pre></details>')


def plan_html(items: list[Any], more: int = 0) -> str:
    """The plan as a list of its items with their state."""
    rows = []
    for item in items[:PLAN_CAP]:
        if not isinstance(item, dict):
            continue
        status = str(item.get("status") or "pending")
        status = status if status in PLAN_MARKS else "pending"
        rows.append(f'<li class="{status}"><span class="mark">{PLAN_MARKS[status]}</span>'
                    f'{clean(item.get("text") or "", 500)}</li>')
    extra = len(items) - PLAN_CAP + max(int(more or 0), 0)
    if extra > 0:
        rows.append(f'<li class="pending"><span class="mark">…</span>and {extra} more</li>')
    return "<ol>" + "".join(rows) + "</ol>" if rows else '<p class="muted">No plan yet.</p>'


def render(seq: int, kind: str, data: dict[str, Any]) -> Fragment:
    """One stored event as its fragment."""
    eid = f'id="e-{seq}"'
    if kind == "log":
        source = str(data.get("source") or "agent")
        source = source if source in LOG_SOURCES else "agent"
        stream = "err" if data.get("stream") == "stderr" else "out"
        return Fragment(seq, "log", f'<div class="ln {stream}" {eid} data-source="{source}">'
                                    f'{clean(data.get("text") or "", LINE_CAP)}</div>', source)
    if kind == "message":
        return Fragment(seq, "message", f'<div class="ev msg" {eid}><div class="who">agent</div>'
                                        f'<div class="text">'
                                        f'{clean(data.get("text") or "", MESSAGE_CAP)}'
                                        f'</div></div>')
    if kind == "phase":
        phase = str(data.get("phase") or "")
        status = str(data.get("status") or "")
        text = f"{PHASES.get(phase, phase.capitalize() or 'Phase')} " \
               f"{PHASE_STATUS.get(status, status)}".strip()
        extra = ""
        if data.get("reason"):
            extra = f'<div class="reason">{clean(data["reason"], LINE_CAP)}</div>'
        css = "bad" if status in ("failed", "timed_out") else "good" if status == "succeeded" \
            else ""
        return Fragment(seq, "phase", f'<div class="ev phase {css}" {eid}><span class="dot">'
                                      f'</span>{html.escape(text)}{extra}</div>')
    if kind == "todo":
        found = data.get("items")
        items: list[Any] = found if isinstance(found, list) else []
        done = sum(1 for i in items if isinstance(i, dict) and i.get("status") == "completed")
        body = plan_html(items, _int(data.get("more")))
        return Fragment(seq, "plan", f'<div class="ev note" {eid}>Plan updated: {done} of '
                                     f'{len(items)} done<template class="plan-body">{body}'
                                     f'</template></div>')
    if kind == "tool":
        return _tool(seq, data)
    return Fragment(seq, "phase", f'<div class="ev note" {eid}>{html.escape(kind)} event</div>')


def _tool(seq: int, data: dict[str, Any]) -> Fragment:
    name = clean(data.get("name") or "tool", 100)
    status = str(data.get("status") or "started")
    tool_id = _TOOL_ID.sub("", str(data.get("id") or ""))[:100] or f"seq-{seq}"
    css = {"completed": "ok", "failed": "bad"}.get(status, "running")
    parts = []
    if data.get("exit_code") is not None:
        parts.append(f'<span class="exit">exit {_int(data["exit_code"])}</span>')
    if data.get("output"):
        parts.append(folded(data["output"], "Output"))
    if status == "started" or (data.get("input") and not data.get("output")):
        head = (f'<div class="tool-head"><span class="tool-name">{name}</span>'
                f'<span class="state">{html.escape(status)}</span></div>')
        body = f'<pre class="in">{clean(data["input"], INPUT_CAP)}</pre>' \
            if data.get("input") else ""
        return Fragment(seq, "tool", f'<div class="ev tool {css}" id="e-{seq}" '
                                     f'data-tool="{tool_id}">{head}{body}'
                                     f'<div class="res">{"".join(parts)}</div></div>', tool_id)
    return Fragment(seq, "result", f'<div class="result {css}" id="e-{seq}" '
                                   f'data-tool="{tool_id}" data-name="{name}">'
                                   f'<span class="state">{html.escape(status)}</span>'
                                   f'{"".join(parts)}</div>', tool_id)


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def log_group(source: str, lines: list[str]) -> str:
    """Consecutive log lines of one source: folded, with their count."""
    return (f'<details class="logs" data-source="{source}"><summary>'
            f'{LOG_SOURCES.get(source, "Output")} · <span class="n">{len(lines)}</span> lines'
            f'</summary><div class="lines">{"".join(lines)}</div></details>')


def assemble(fragments: Iterable[Fragment]) -> str:
    """The transcript's HTML, placed as static/run.js places fragments one by one."""
    blocks: list[str] = []
    group: tuple[str, list[str]] | None = None  # the open log block
    tools: dict[str, int] = {}  # a call's id -> its block, waiting for the result
    for fragment in fragments:
        if fragment.kind == "log":
            if group is not None and group[0] == fragment.group:
                group[1].append(fragment.html)
                continue
            _close(blocks, group)
            group = (fragment.group, [fragment.html])
            blocks.append("")  # filled when the group closes
            continue
        _close(blocks, group)
        group = None
        if fragment.kind == "result" and fragment.group in tools:
            index = tools.pop(fragment.group)
            blocks[index] = _with_result(blocks[index], fragment.html)
            continue
        if fragment.kind == "tool":
            tools[fragment.group] = len(blocks)
        blocks.append(fragment.html)
    _close(blocks, group)
    return "".join(blocks)


def _close(blocks: list[str], group: tuple[str, list[str]] | None) -> None:
    if group is not None:
        blocks[-1] = log_group(group[0], group[1])


def _with_result(card: str, result: str) -> str:
    """A call's block with its result inside and the result's state on it (as run.js does)."""
    css = "bad" if result.startswith('<div class="result bad') else \
        "ok" if result.startswith('<div class="result ok') else "running"
    card = card.replace('class="ev tool running"', f'class="ev tool {css}"', 1)
    state = re.search(r'<span class="state">([^<]*)</span>', result)
    if state:
        card = re.sub(r'(<div class="tool-head">.*?<span class="state">)[^<]*(</span>)',
                      lambda m: m.group(1) + state.group(1) + m.group(2), card, count=1)
    return card[:-len("</div></div>")] + result + "</div></div>"
