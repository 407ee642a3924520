"""The `agentbot` command line: serve, receive, migrate, setup."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import socket
import sys
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config.settings import Settings, load_settings

if TYPE_CHECKING:
    from bot.connections import Listener

log = logging.getLogger("bot")

EXIT_CONFIG = 2
# A sandbox's result is up to AGENTBOT_MAX_RESULT_BYTES (20 MB, a third more in base64): time
# for a slow link, while a sender that stalls still lets go of its connection.
INTERNAL_BODY_SECONDS = 120.0

SETUP_OPEN = "Open {url} in a browser to create the GitHub App."
SETUP_WROTE = ("Wrote the GitHub App {slug} to {env} (mode 0600). Install it on repositories: "
               "{install}\nThen start agentbot with: agentbot serve")
SETUP_CONFIGURED = ("a GitHub App is configured already (GITHUB_APP_ID, its key and webhook "
                    "secret are set); remove them from the environment and .env to create "
                    "another")
GATEWAY_NEEDS_APP = ("the gateway needs GITHUB_APP_ID and GITHUB_PRIVATE_KEY(_PATH): it mints "
                     "the runs' read tokens and checks their credentials with the App's key")
SETUP_NO_PUBLIC_URL = ("setup needs the address GitHub delivers webhooks to: pass --public-url "
                       "https://agentbot.example.com or set AGENTBOT_PUBLIC_URL")


def _settings_or_exit(*, allow_problems: bool = False, needless: str = "") -> Settings:
    """The settings, or exit naming each problem; `needless` starts problems the command does
    not care about (the gateway verifies no webhook)."""
    settings, problems = load_settings()
    if needless:
        problems = [p for p in problems if not p.startswith(needless)]
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


async def _created_app_settings(settings: Settings) -> Settings:
    """Serve the setup page until the App is created, then the settings it wrote to .env.

    The bot then starts in this same process, as Probot does: nothing outside (a supervisor,
    a second command) has to notice that setup finished.
    """
    from bot.app import create_app
    from bot.setup.page import run_until_created

    def announce(url: str) -> None:
        log.warning("setup mode: open %s to create the GitHub App", settings.public_url or url)

    credentials = await run_until_created(create_app(settings), settings.host, settings.port,
                                          announce)
    created, problems = load_settings()
    if created is None or problems or created.setup_mode:
        for problem in problems or ["the settings written to .env did not load"]:
            print(f"agentbot: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)
    log.info("the GitHub App %s is created; starting", credentials.slug)
    return created


async def serve(settings: Settings) -> None:
    """Run the public and internal servers until interrupted (after setup, in setup mode)."""
    from aiohttp import web

    from bot.app import create_app, gateway_app, internal_app
    from bot.connections import GuardedSite, guarded_runner

    if settings.setup_mode:
        settings = await _created_app_settings(settings)
    # The ports first, before anything touches the database: a second `serve` started by
    # mistake (on the same SQLite file, say) stops here, having taken no work from the first.
    # The internal port and the gateway serve sandboxes only: with the local executor they
    # are on this machine, and loopback is all those ports need.
    listen = [(settings.host, settings.port),
              (settings.sandbox_listen_host, settings.internal_port)]
    if settings.executor_name == "local":
        listen.append((settings.sandbox_listen_host, settings.gateway_port))
    sockets = [_listen(host, port) for host, port in listen]
    public = create_app(settings)
    runners: list[web.AppRunner] = []
    try:
        apps = [public, internal_app(public)]
        if settings.executor_name == "local":
            # One machine, one command: the sandboxes' gateway runs here too (in a cluster it
            # is its own Deployment, `agentbot gateway`).
            apps.append(gateway_app(public))
        listeners = _listeners(settings)
        for app, sock, listener in zip(apps, sockets, [*listeners, None], strict=False):
            runner = (web.AppRunner(app, access_log=None) if listener is None
                      else guarded_runner(app, listener, access_log=None))
            runners.append(runner)
            await runner.setup()
            site = (web.SockSite(runner, sock, backlog=1024) if listener is None
                    else GuardedSite(runner, sock, listener, backlog=1024))
            await site.start()
        # What start-up built lives as long as the process; left to the cyclic collector,
        # every full pass walks it and stalls the webhooks waiting on the loop
        # (bench/README.md).
        gc.collect()
        gc.freeze()
        log.info("listening", extra={"port": settings.port,
                                     "internal_port": settings.internal_port,
                                     "executor": settings.executor_name})
        await asyncio.Event().wait()
    finally:
        for each in reversed(runners):
            await each.cleanup()
        for sock in sockets:
            sock.close()


def _listeners(settings: Settings) -> list[Listener]:
    """The limits of the public and the internal port (the gateway streams for minutes and
    keeps its own)."""
    from bot.connections import Limits, Listener, fit_to_file_limit
    from bot.intake.webhook import BODY_TIMEOUT_SECONDS

    cap, burst = fit_to_file_limit(settings.max_connections, ports=2)
    head = float(settings.header_timeout)
    return [
        # The webhook answers a crawling body 408 itself; this is the backstop for the rest.
        Listener("public", Limits(cap, head, BODY_TIMEOUT_SECONDS + 5,
                                  frozenset({"/healthz", "/readyz"}), burst)),
        Listener("internal", Limits(cap, head, INTERNAL_BODY_SECONDS,
                                    frozenset({"/healthz", "/metrics"}), burst)),
    ]


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or exit saying which port is taken."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        try:
            # Not SO_REUSEPORT: a second process must not share the port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(1024)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        print(f"agentbot: cannot listen on {host}:{port}: {exc.strerror or exc} "
              "(is another agentbot running?)", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    sock.setblocking(False)
    return sock


async def gateway(settings: Settings) -> None:
    """Run the gateway alone (its Deployment in a cluster) until interrupted."""
    from aiohttp import web

    from bot.gateway.app import gateway_app as standalone

    runner = web.AppRunner(standalone(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.gateway_port, backlog=1024).start()
    log.info("gateway listening", extra={"port": settings.gateway_port,
                                         "proxy_port": settings.gateway_proxy_port})
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


async def migrate(settings: Settings) -> str | None:
    from bot.store import migrate as migrations
    from bot.store.tables import create_engine

    engine = create_engine(settings.database_url)
    try:
        await migrations.upgrade(engine)
        return await migrations.current(engine)
    finally:
        await engine.dispose()


async def setup(settings: Settings, public_url: str, host: str, port: int,
                manifest: Path | None) -> int:
    """`agentbot setup`: the setup page on a local port until the App is created."""
    from bot.setup.flow import ENV_PATH, SetupError, check_public_url
    from bot.setup.page import DONE_COMMAND, SetupFlow, add_routes, run_until_created

    try:
        public_url = check_public_url(public_url)
    except SetupError as exc:
        print(f"agentbot: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    from aiohttp import web

    app = web.Application()
    add_routes(app, SetupFlow(api_url=settings.github_api_url, env_path=ENV_PATH,
                              manifest_path=manifest, public_url=public_url,
                              done_message=DONE_COMMAND))
    credentials = await run_until_created(
        app, host, port, lambda url: print(SETUP_OPEN.format(url=url), flush=True))
    print(SETUP_WROTE.format(slug=credentials.slug, env=ENV_PATH,
                             install=credentials.install_url), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentbot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the webhook server, internal API and workers")
    commands.add_parser("gateway", help="run the sandboxes' gateway (model APIs, git, egress)")
    receiving = commands.add_parser("receive", help="put one payload through the pipeline")
    receiving.add_argument("--event", required=True, help="the X-GitHub-Event name, e.g. issues")
    receiving.add_argument("--payload", required=True, type=Path, help="a JSON payload file")
    receiving.add_argument("--dry-run", action="store_true",
                         help="make no call; print decisions and the requests it would send")
    commands.add_parser("migrate", help="apply database migrations")
    creating = commands.add_parser(
        "setup", help="create the GitHub App from app-manifest.yml and write .env (mode 0600)")
    creating.add_argument("--public-url", help="where GitHub will deliver webhooks "
                                               "(default: AGENTBOT_PUBLIC_URL)")
    creating.add_argument("--host", default="127.0.0.1", help="address of the local page")
    creating.add_argument("--port", type=int, help="port of the local page (default: "
                                                   "AGENTBOT_PORT; 0 picks a free one)")
    creating.add_argument("--manifest", type=Path, help="the manifest (default: "
                                                        "app-manifest.yml)")
    args = parser.parse_args(argv)

    if args.command == "serve":
        settings = _settings_or_exit()
        _configure_logging(settings)
        from bot.runs.scheduler import StartRefused

        try:
            _run(serve(settings))
        except KeyboardInterrupt:
            pass
        except StartRefused as refused:
            print(f"agentbot: {refused}", file=sys.stderr)
            return EXIT_CONFIG
        return 0
    if args.command == "gateway":
        settings = _settings_or_exit(needless="GITHUB_WEBHOOK_SECRET")
        if settings.private_key_pem() is None or settings.github_app_id is None:
            print(f"agentbot: {GATEWAY_NEEDS_APP}", file=sys.stderr)
            return EXIT_CONFIG
        _configure_logging(settings)
        try:
            _run(gateway(settings))
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
        from bot.cli.receive import ReceiveError, receive

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
    if args.command == "setup":
        settings = _settings_or_exit(allow_problems=True)
        _configure_logging(settings)
        if not settings.setup_mode and not settings.app_problems():
            print(f"agentbot: {SETUP_CONFIGURED}", file=sys.stderr)
            return EXIT_CONFIG
        public_url = args.public_url or settings.public_url
        if not public_url:
            print(f"agentbot: {SETUP_NO_PUBLIC_URL}", file=sys.stderr)
            return EXIT_CONFIG
        port = settings.port if args.port is None else args.port
        try:
            return int(_run(setup(settings, public_url, args.host, port, args.manifest)))
        except KeyboardInterrupt:
            return 1
    parser.error(f"unknown command {args.command}")
    return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
