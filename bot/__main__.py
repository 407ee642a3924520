"""The `agentbot` command line: serve, receive, migrate."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from bot.settings import Settings, load_settings

log = logging.getLogger("bot")

EXIT_CONFIG = 2


def _settings_or_exit(*, allow_problems: bool = False) -> Settings:
    settings, problems = load_settings()
    if problems and not allow_problems:
        for problem in problems:
            print(f"agentbot: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)
    if settings is None:  # malformed optional settings: never silently defaulted
        for problem in problems:
            print(f"agentbot: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)
    return settings


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _configure_logging(settings: Settings) -> None:
    from bot.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)


async def serve(settings: Settings) -> None:
    """Run the public and internal servers until interrupted."""
    from aiohttp import web

    from bot.app import create_app, internal_app

    public = create_app(settings)
    runner = web.AppRunner(public, access_log=None)
    await runner.setup()
    sites = [web.TCPSite(runner, settings.host, settings.port, backlog=1024)]
    internal_runner = None
    if not settings.setup_mode:
        internal_runner = web.AppRunner(internal_app(public), access_log=None)
        await internal_runner.setup()
        sites.append(web.TCPSite(internal_runner, settings.host, settings.internal_port))
    for site in sites:
        await site.start()
    # What start-up built lives as long as the process; left to the cyclic collector, every
    # full pass walks it and stalls the webhooks waiting on the loop (bench/README.md).
    gc.collect()
    gc.freeze()
    log.info("listening", extra={"port": settings.port, "internal_port": settings.internal_port,
                                 "executor": settings.executor_name})
    try:
        await asyncio.Event().wait()
    finally:
        if internal_runner is not None:
            await internal_runner.cleanup()
        await runner.cleanup()


async def migrate(settings: Settings) -> str | None:
    from bot import migrate as migrations
    from bot.store import create_engine

    engine = create_engine(settings.database_url)
    try:
        await migrations.upgrade(engine)
        return await migrations.current(engine)
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentbot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the webhook server, internal API and workers")
    receiving = commands.add_parser("receive", help="put one payload through the pipeline")
    receiving.add_argument("--event", required=True, help="the X-GitHub-Event name, e.g. issues")
    receiving.add_argument("--payload", required=True, type=Path, help="a JSON payload file")
    receiving.add_argument("--dry-run", action="store_true",
                         help="make no call; print decisions and the requests it would send")
    commands.add_parser("migrate", help="apply database migrations")
    args = parser.parse_args(argv)

    if args.command == "serve":
        settings = _settings_or_exit()
        _configure_logging(settings)
        try:
            _run(serve(settings))
        except KeyboardInterrupt:
            pass
        return 0
    if args.command == "migrate":
        settings = _settings_or_exit(allow_problems=True)
        _configure_logging(settings)
        revision = _run(migrate(settings))
        print(f"database at revision {revision}")
        return 0
    if args.command == "receive":
        from bot.receive import ReceiveError, receive

        settings = _settings_or_exit(allow_problems=args.dry_run)
        _configure_logging(settings)
        try:
            report = _run(receive(settings, args.event, args.payload, dry_run=args.dry_run,
                                  delivery_id=f"receive-{uuid.uuid4()}"))
        except ReceiveError as exc:
            print(f"agentbot: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        print(report)
        return 0
    parser.error(f"unknown command {args.command}")
    return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
