"""Who may read what, cached; sealed cookies that cannot be read, forged or kept past their age."""

from __future__ import annotations

import asyncio

import pytest

from bot.web.oauth import Access, TokenRevoked
from bot.web.session import SESSION_SECONDS, Sealer, Session

MONA = Session("mona", 11, "ghu_" + "m" * 36, 10_000.0)
OCTOCAT = Session("octocat", 12, "ghu_" + "o" * 36, 10_000.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class GitHub:
    """Answers "may this token read that repository?" and counts the questions."""

    def __init__(self, readable: dict[str, set[str]]) -> None:
        self.readable = readable
        self.asked: list[tuple[str, str]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def can_read(self, token: str, repo: str) -> bool:
        self.asked.append((token, repo))
        await self.gate.wait()
        if token == "revoked":
            raise TokenRevoked()
        return repo in self.readable.get(token, set())


async def test_answers_are_kept_per_person_and_repository_for_a_while() -> None:
    github = GitHub({MONA.token: {"octo-org/vault"}})
    clock = Clock()
    access = Access(github.can_read, ttl=300, clock=clock)
    assert await access.can_read(MONA, "octo-org/vault")
    assert await access.can_read(MONA, "Octo-Org/Vault")  # GitHub's names ignore case
    assert not await access.can_read(OCTOCAT, "octo-org/vault")
    assert not await access.can_read(OCTOCAT, "octo-org/vault")  # a no is kept too
    assert len(github.asked) == 2
    clock.now += 301
    github.readable[OCTOCAT.token] = {"octo-org/vault"}  # added as a collaborator since
    assert await access.can_read(OCTOCAT, "octo-org/vault")
    assert len(github.asked) == 3


async def test_concurrent_pages_share_one_question() -> None:
    github = GitHub({MONA.token: {"octo-org/vault"}})
    github.gate.clear()
    access = Access(github.can_read)
    waiting = [asyncio.create_task(access.can_read(MONA, "octo-org/vault")) for _ in range(20)]
    await asyncio.sleep(0)
    github.gate.set()
    assert await asyncio.gather(*waiting) == [True] * 20
    assert len(github.asked) == 1


async def test_a_failed_question_is_not_kept_and_forget_drops_a_person() -> None:
    github = GitHub({MONA.token: {"octo-org/vault"}})
    access = Access(github.can_read)
    revoked = Session("mona", 11, "revoked", 10_000.0)
    with pytest.raises(TokenRevoked):
        await access.can_read(revoked, "octo-org/vault")
    assert await access.can_read(MONA, "octo-org/vault")  # asked again, not a cached failure
    access.forget(MONA.user_id)
    assert await access.can_read(MONA, "octo-org/vault")
    assert len(github.asked) == 3


def test_sealed_values_resist_reading_forging_and_age() -> None:
    clock = Clock()
    sealer = Sealer("client-secret", clock)
    sealed = sealer.seal({"login": "mona", "token": MONA.token})
    assert MONA.token not in sealed and "mona" not in sealed
    assert sealer.open(sealed, 60) == {"login": "mona", "token": MONA.token}
    assert Sealer("another-secret", clock).open(sealed, 60) is None  # rotated secret
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    assert sealer.open(tampered, 60) is None
    assert sealer.open("not a cookie", 60) is None and sealer.open("é" * 10, 60) is None
    clock.now += 61
    assert sealer.open(sealed, 60) is None  # too old
    assert repr(MONA) == "Session(login='mona', user_id=11)"  # no token in a log line
    assert SESSION_SECONDS == 8 * 3600
