"""The launch's guard: a run whose agent cannot reach its model fails before its sandbox."""

from __future__ import annotations

from bot.runs.ledger import get_run
from tests.runs import test_scheduler
from tests.runs.test_scheduler import World

world = test_scheduler.world  # the scheduler tests' fixture


async def test_a_run_without_its_providers_key_fails_before_the_sandbox(world: World) -> None:
    # The key went away while the run was queued (or a retry button came after it did).
    world.settings = world.settings.model_copy(update={
        "model_providers": None, "executor": "local", "anthropic_api_key": "sk-ant-api03-x"})
    world.scheduler = world.make_scheduler()
    codex = await world.queue(agent="codex")
    claude = await world.queue(installation_id=8, agent="claude")
    await world.tick()

    run = await get_run(world.engine, codex)
    assert run.state == "failed"
    assert run.error.startswith("could not start the sandbox: CredentialsMissing: the `codex` "
                                "agent needs a key for OpenAI")
    assert "`OPENAI_API_KEY` or `CODEX_API_KEY`" in run.error
    assert [spec.run_id for spec, _ in world.executor.started.values()] == [claude]
