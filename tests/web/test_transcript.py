"""Events as HTML: secrets masked, markup escaped, long outputs folded and capped, the page's
placement of fragments (log blocks, a call's result inside it) the same at once and live."""

from __future__ import annotations

import re

from bot.redact import register_secret
from bot.web.transcript import (
    FOLD_LINES,
    OUTPUT_CAP,
    assemble,
    clean,
    folded,
    plan_html,
    render,
)

TOKEN = "ghs_" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8"


def test_every_kind_masks_secrets_and_escapes_markup() -> None:
    register_secret("hunter2-but-longer")
    events = [
        ("message", {"text": f"token {TOKEN} and <img src=x onerror=alert(1)>"}),
        ("log", {"source": "setup", "stream": "stderr", "text": "pw=hunter2-but-longer"}),
        ("tool", {"name": "<b>Bash</b>", "status": "started", "id": "t\"1",
                  "input": f"curl -H 'Authorization: Bearer {TOKEN}'"}),
        ("tool", {"name": "Bash", "status": "failed", "id": "t\"1", "output": TOKEN}),
        ("phase", {"phase": "setup", "status": "failed", "reason": f"bad {TOKEN}"}),
        ("todo", {"items": [{"text": f"<i>{TOKEN}</i>", "status": "pending"}]}),
    ]
    for seq, (kind, data) in enumerate(events, 1):
        html = render(seq, kind, data).html
        assert TOKEN not in html and "hunter2-but-longer" not in html, kind
        assert "<img" not in html and "<b>Bash" not in html and "<i>" not in html, kind
        if kind == "tool":  # the call's id keeps to characters that cannot leave the attribute
            assert 'data-tool="t1"' in html


def test_short_output_is_shown_and_long_output_folded_and_capped() -> None:
    assert folded("ok\n", "Output") == '<pre class="out">ok\n</pre>'
    long = "\n".join(f"line {i}" for i in range(FOLD_LINES + 5))
    shown = folded(long, "Output")
    assert shown.startswith('<details class="out"><summary>Output · 17 lines')
    assert "line 16" in shown
    huge = "x" * (OUTPUT_CAP + 1234)
    capped = clean(huge, OUTPUT_CAP)
    assert len(capped) < OUTPUT_CAP + 100
    assert capped.endswith("… 1,234 more characters not shown")


def test_a_plan_shows_each_state_and_what_is_left_out() -> None:
    items = [{"text": f"step {i}", "status": "completed" if i < 2 else "pending"}
             for i in range(105)]
    html = plan_html(items, more=3)
    assert html.count('<li class="completed">') == 2
    assert "and 8 more" in html  # 5 over the cap, and 3 the runner left out
    assert plan_html([]) == '<p class="muted">No plan yet.</p>'


def test_assemble_gathers_logs_and_puts_results_inside_their_calls() -> None:
    fragments = [
        render(1, "log", {"source": "setup", "text": "a"}),
        render(2, "log", {"source": "setup", "text": "b"}),
        render(3, "log", {"source": "agent", "text": "c"}),
        render(4, "tool", {"name": "Read", "status": "started", "id": "r1", "input": "x.py"}),
        render(5, "message", {"text": "meanwhile"}),
        render(6, "tool", {"name": "Read", "status": "completed", "id": "r1", "output": "1"}),
        render(7, "tool", {"name": "Edit", "status": "completed", "id": "gone", "output": "2"}),
        render(8, "log", {"source": "setup", "text": "d"}),
    ]
    html = assemble(fragments)
    blocks = re.findall(r'<details class="logs" data-source="(\w+)">.*?<span class="n">(\d+)',
                        html)
    assert blocks == [("setup", "2"), ("agent", "1"), ("setup", "1")]
    card = html[html.index('data-tool="r1"') - 30:html.index('id="e-5"')]
    assert 'class="ev tool ok"' in card and 'id="e-6"' in card  # the result, inside its call
    assert '<span class="state">completed</span>' in card
    assert '<div class="result ok" id="e-7" data-tool="gone"' in html  # no call: on its own
    assert all(f'id="e-{n}"' in html for n in range(1, 9))  # every event, once
    assert all(html.count(f'id="e-{n}"') == 1 for n in range(1, 9))
