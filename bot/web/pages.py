"""The run pages' HTML and how it is served: the shell, sign-in, a run's header and outcome,
the run list, and the headers every page carries."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from bot.config.budget import Budget, format_dollars
from bot.redact import redact
from bot.report.text import Usage, duration
from bot.store.tables import ACTIVE_STATES, RunState, aware
from bot.web.session import Session

CSS_PATH = "/assets/run.css"
JS_PATH = "/assets/run.js"
ICON_PATH = "/assets/favicon.svg"

STATE_LABELS = {
    RunState.AWAITING_APPROVAL: "Awaiting approval", RunState.QUEUED: "Queued",
    RunState.STARTING: "Starting", RunState.RUNNING: "Running",
    RunState.SUCCEEDED: "Succeeded", RunState.FAILED: "Failed",
    RunState.CANCELLED: "Cancelled", RunState.TIMED_OUT: "Timed out",
    RunState.BUDGET_EXCEEDED: "Budget reached",
}
LIST_REFRESH_SECONDS = 5  # how often a list with active runs fetches their states again
SIGN_IN_TITLE = "Sign in to see agentbot runs"
SIGN_IN_TEXT = ("agentbot shows a run to the people who can read its repository on GitHub. "
                "Sign in with your GitHub account to continue.")
NOT_FOUND_TEXT = "There is no run here, or you cannot read its repository on GitHub."
EXPIRED_TEXT = ("The transcript of this run has expired: agentbot keeps a run's events for "
                "{retention}, and this run ended on {ended}.")
UNAVAILABLE_TEXT = ("GitHub could not be asked whether you may read this repository. Try "
                    "again in a moment.")
NO_EVENTS_TEXT = "No events yet: the transcript appears here as the sandbox reports."


# The CSP forbids everything the pages do not use: no external asset, no inline script or
# style, no framing; forms post only to us.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class Answer(Exception):
    """A page that ends a request early (a sign-in that ended, GitHub away)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def respond(html_text: str, status: int) -> web.Response:
    """A page, never cached (it is one person's), with the headers every page carries."""
    response = web.Response(text=html_text, status=status, content_type="text/html",
                            charset="utf-8")
    response.headers["Cache-Control"] = "no-store"
    secure_headers(response)
    return response


def secure_headers(response: web.StreamResponse) -> None:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"


def e(value: object) -> str:
    """Escaped text, secrets masked."""
    return html.escape(redact(str(value)), quote=True)


def shell(title: str, body: str, session: Session | None, *, live: str = "") -> str:
    """A whole page: GitHub-like header, the body, our one stylesheet and script."""
    who = ""
    if session is not None:
        who = (f'<form method="post" action="/logout" class="who"><span>@{e(session.login)}'
               f'</span><button type="submit" class="btn-link">Sign out</button></form>')
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="same-origin">'
        f'<title>{e(title)} · agentbot</title>'
        f'<link rel="icon" href="{ICON_PATH}" type="image/svg+xml">'
        f'<link rel="stylesheet" href="{CSS_PATH}"><script src="{JS_PATH}" defer></script>'
        f'</head><body{live}><header class="top"><a class="brand" href="/runs">agentbot</a>'
        f'<a href="/runs">Runs</a>{who}</header><main>{body}</main></body></html>')


def sign_in_page(next_path: str, message: str | None = None) -> str:
    note = f'<p class="flash">{e(message)}</p>' if message else ""
    href = "/login?" + urlencode({"next": next_path})
    return shell("Sign in", (
        f'<div class="box narrow">{note}<h1>{SIGN_IN_TITLE}</h1><p>{SIGN_IN_TEXT}</p>'
        f'<a class="btn primary" href="{e(href)}">Sign in with GitHub</a></div>'), None)


def message_page(title: str, text: str, session: Session | None) -> str:
    return shell(title, f'<div class="box narrow"><h1>{e(title)}</h1><p>{e(text)}</p>'
                        f'<p><a href="/runs">All runs</a></p></div>', session)


def state_label(state: str) -> str:
    label = STATE_LABELS.get(state, state.replace("_", " ").capitalize())  # type: ignore[call-overload]
    return f'<span class="state s-{e(state)}">{e(label)}</span>'


def _when(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    text = aware(value).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f'<time datetime="{aware(value).isoformat()}">{text}</time>'


def elapsed(run: Any, now: dt.datetime) -> str:
    """How long the run has run; live ones tick in the browser from `data-since`."""
    if run.started_at is None:
        return "not started"
    if run.finished_at is not None:
        return "ran " + duration((aware(run.finished_at) - aware(run.started_at)).total_seconds())
    seconds = (now - aware(run.started_at)).total_seconds()
    return (f'running for <span data-since="{aware(run.started_at).isoformat()}">'
            f'{duration(seconds)}</span>')


def usage_text(usage: Usage | None, run: Any) -> str:
    budget = Budget.from_json((run.config or {}).get("budget"))
    parts = []
    if usage is not None:
        tokens = usage.input + usage.output + usage.cache_read + usage.cache_write
        cost = format_dollars(usage.cost) if usage.cost else ""
        if usage.unpriced:
            cost = (cost + " and unpriced models") if cost else "no price known"
        parts.append(f"{tokens:,} tokens ({usage.input:,} in, {usage.output:,} out, "
                     f"{usage.cache_read:,} cache read)" + (f" · {cost}" if cost else ""))
    if budget:
        parts.append(f"budget {budget.describe()}")
    return " · ".join(parts) if parts else "no model usage yet"


def run_header(run: Any, usage: Usage | None, web_url: str, now: dt.datetime) -> str:
    """The run's header: where, who, what and how far; replaced whole when the run changes."""
    repo_url = f"{web_url}/{quote(run.repo_full_name)}"
    kind = "pull" if run.is_pull_request else "issues"
    item_url = f"{repo_url}/{kind}/{int(run.number)}"
    title = run.title or ("pull request" if run.is_pull_request else "issue")
    model = f' · <span class="mono">{e(run.model)}</span>' if run.model else ""
    pr = ""
    if run.pr_url:
        pr = f' · <a href="{e(run.pr_url)}">pull request #{int(run.pr_number or 0)}</a>'
    return (
        f'<div id="hdr" class="hdr" data-state="{e(run.state)}">'
        f'<div class="crumbs"><a href="{e(repo_url)}">{e(run.repo_full_name)}</a></div>'
        f'<h1>{e(title)} <a class="num" href="{e(item_url)}">#{int(run.number)}</a></h1>'
        f'<div class="meta">{state_label(run.state)}<span>Run #{int(run.id)}{variant_of(run)} · '
        f'{e(run.trigger)} by <a href="{e(web_url)}/{quote(run.sender_login)}">'
        f'@{e(run.sender_login)}</a> · {_when(run.created_at)}</span></div>'
        f'<dl class="facts"><div><dt>Agent</dt><dd><span class="mono">{e(run.agent)}</span>'
        f'{model}</dd></div><div><dt>Time</dt><dd>{elapsed(run, now)}</dd></div>'
        f'<div><dt>Usage</dt><dd>{e(usage_text(usage, run))}</dd></div>'
        f'<div><dt>Outcome</dt><dd>{e(outcome_line(run))}{pr}</dd></div></dl></div>')


def variant_of(run: Any) -> str:
    """` · variant K of N` for a variant of a group, else nothing."""
    variant = getattr(run, "variant", None)
    if variant is None:
        return ""
    size = len((run.config or {}).get("variants") or []) or int(variant)
    return f" · variant {int(variant)} of {size}"


def outcome_line(run: Any) -> str:
    state = RunState(run.state)
    if state in ACTIVE_STATES:
        return "in progress"
    result = run.result or {}
    if state is RunState.SUCCEEDED:
        if result.get("status") == "no_changes":
            return "no changes"
        return "published" if run.pr_url or run.commit_sha else "succeeded"
    if state is RunState.BUDGET_EXCEEDED:
        return f"budget of {run.budget_reached or 'the run'} reached"
    return STATE_LABELS.get(state, state.value).lower()


def policy_verdict(run: Any) -> tuple[str, str]:
    """(css, text) of what the policy and publishing made of the result."""
    result = run.result or {}
    publish = run.publish_state
    if publish == "done":
        return "good", "The policy accepted the changes; agentbot published them."
    if publish == "refused":
        return "bad", "The policy refused the changes: " + (run.error or "no reason given")
    if publish == "failed":
        return "bad", "Publishing failed: " + (run.error or "no reason given")
    if publish == "pending":
        return "", "Waiting to be checked by the policy and published."
    if result.get("status") == "no_changes":
        return "", "The agent changed no file: nothing to publish."
    if RunState(run.state) in ACTIVE_STATES:
        return "", "The agent has not finished."
    return "bad", "Not published: " + (run.error or "the run did not succeed")


def final_section(run: Any, files_html: str) -> str:
    """The end of the transcript: the agent's summary, the verdict, the PR and the diff."""
    result = run.result or {}
    css, verdict = policy_verdict(run)
    summary = (result.get("summary") or "").strip()
    parts = ['<section id="final" class="final"><h2>Outcome</h2>',
             f'<p class="verdict {css}">{e(verdict)}</p>']
    if run.pr_url:
        parts.append(f'<p><a class="btn" href="{e(run.pr_url)}">View pull request '
                     f'#{int(run.pr_number or 0)}</a></p>')
    if summary:
        parts.append(f'<div class="summary"><h3>The agent\'s summary</h3>'
                     f'<div class="text">{e(summary[:20_000])}</div></div>')
    if files_html:
        parts.append(files_html)
    parts.append("</section>")
    return "".join(parts)


def run_page(run: Any, session: Session, header: str, plan: str, transcript: str,
             final: str, last_seq: int, live: bool, note: str = "") -> str:
    status = ' <span id="live" class="live off">Connecting…</span>' if live else ""
    body = (
        f'{header}<div class="cols"><aside class="side"><section id="plan" class="plan">'
        f'<h2>Plan</h2><div class="body">{plan}</div></section></aside>'
        f'<div class="main"><h2>Transcript{status}</h2>{note}'
        f'<div id="transcript" class="transcript">{transcript}</div>{final}</div></div>')
    attrs = (f' data-run="{int(run.id)}" data-last="{int(last_seq)}"'
             f' data-live="{"1" if live else "0"}"')
    return shell(f"Run #{run.id} · {run.repo_full_name}", body, session, live=attrs)


def runs_list(rows: Iterable[Any], session: Session, repos: list[str], repo: str | None,
              state: str | None, older: str | None, now: dt.datetime) -> str:
    options = ['<option value="">All repositories</option>'] + [
        f'<option{" selected" if r == repo else ""}>{e(r)}</option>' for r in repos]
    states = ['<option value="">Any state</option>',
              f'<option value="active"{" selected" if state == "active" else ""}>Active'
              f'</option>'] + [
        f'<option value="{s.value}"{" selected" if state == s.value else ""}>'
        f'{STATE_LABELS.get(s, s.value)}</option>' for s in RunState]
    items = []
    rows = list(rows)
    for run in rows:
        kind = "PR" if run.is_pull_request else "issue"
        items.append(
            f'<li><a class="row" href="/runs/{int(run.id)}">{state_label(run.state)}'
            f'<span class="what"><strong>{e(run.title or run.repo_full_name)}</strong>'
            f'<span class="muted">{e(run.repo_full_name)} {kind} #{int(run.number)} · run '
            f'#{int(run.id)}{variant_of(run)} · {e(run.agent)} · @{e(run.sender_login)} · '
            f'{_when(run.created_at)}</span></span>'
            f'<span class="muted when">{elapsed(run, now)}</span></a></li>')
    listing = ("<ul class=\"runs\">" + "".join(items) + "</ul>" if items else
               '<p class="muted box">No runs of the repositories you can read match.</p>')
    more = f'<p><a class="btn" href="{e(older)}">Older runs</a></p>' if older else ""
    body = (f'<h1>Runs</h1><form class="filters" method="get" action="/runs">'
            f'<select name="repo">{"".join(options)}</select>'
            f'<select name="state">{"".join(states)}</select>'
            f'<button class="btn" type="submit">Filter</button></form>{listing}{more}')
    active = any(RunState(run.state) in ACTIVE_STATES for run in rows)
    return shell("Runs", body, session,
                 live=f' data-refresh="{LIST_REFRESH_SECONDS}"' if active else "")
