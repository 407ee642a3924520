"""`/runs`: the runs of the repositories you can read, newest first, filtered, paged."""

from __future__ import annotations

import re

from bot.store.tables import RunState
from bot.web import routes
from tests.web.harness import OPEN, OTHER, SECRET, Pages


def listed(text: str) -> list[int]:
    return [int(n) for n in re.findall(r'<a class="row" href="/runs/(\d+)">', text)]


async def test_only_readable_runs_newest_first_with_filters(pages: Pages) -> None:
    first = await pages.add_run(OPEN)
    hidden = await pages.add_run(OTHER)
    secret = await pages.add_run(SECRET)
    done = await pages.add_run(OPEN, state=RunState.QUEUED)
    await pages.finish(done, RunState.CANCELLED)
    assert pages.client is not None

    await pages.sign_in("octocat")
    text = await (await pages.client.get("/runs")).text()
    assert listed(text) == [done, first]  # neither the private vault nor someone else's
    assert OTHER not in text and SECRET not in text  # not even in the repository filter

    await pages.client.post("/logout")
    await pages.sign_in("mona")  # a collaborator of the vault
    assert listed(await (await pages.client.get("/runs")).text()) == [done, secret, first]
    only = await pages.client.get("/runs", params={"repo": SECRET})
    assert listed(await only.text()) == [secret]
    active = await pages.client.get("/runs", params={"state": "active"})
    active_text = await active.text()
    assert listed(active_text) == [secret, first]
    assert 'data-refresh="5"' in active_text  # the states follow the runs
    cancelled = await pages.client.get("/runs", params={"state": "cancelled", "repo": OPEN})
    cancelled_text = await cancelled.text()
    assert listed(cancelled_text) == [done]
    assert "data-refresh" not in cancelled_text  # nothing left to follow
    # A repository they cannot read lists nothing, the same as one without runs.
    assert listed(await (await pages.client.get("/runs", params={"repo": OTHER})).text()) == []
    assert hidden not in listed(await (await pages.client.get("/runs")).text())


async def test_pages_of_older_runs(pages: Pages, monkeypatch: object) -> None:
    monkeypatch.setattr(routes, "PAGE_SIZE", 2)  # type: ignore[attr-defined]
    ids = [await pages.add_run(OPEN, state=RunState.QUEUED) for _ in range(5)]
    for run_id in ids:
        await pages.finish(run_id, RunState.CANCELLED)
    await pages.sign_in("octocat")
    assert pages.client is not None
    text = await (await pages.client.get("/runs", params={"state": "cancelled"})).text()
    assert listed(text) == [ids[4], ids[3]]
    older = re.search(r'href="(/runs\?[^"]+)">Older runs', text)
    assert older is not None
    nxt = await pages.client.get(older.group(1).replace("&amp;", "&"))
    assert listed(await nxt.text()) == [ids[2], ids[1]]


async def test_bad_filters_are_a_400_and_signed_out_is_the_sign_in_page(pages: Pages) -> None:
    assert pages.client is not None
    signed_out = await pages.client.get("/runs")
    assert signed_out.status == 200 and "Sign in with GitHub" in await signed_out.text()
    await pages.sign_in("octocat")
    assert (await pages.client.get("/runs", params={"state": "exploded"})).status == 400
    assert (await pages.client.get("/runs", params={"before": "-1"})).status == 400
    assert (await pages.client.get("/runs", params={"before": "\u00b2"})).status == 400
