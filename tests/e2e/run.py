"""Drive the kind end-to-end test: a fake GitHub on the host, the chart in the cluster, one run.

    python tests/e2e/run.py --bot-image agentbot:e2e --sandbox-image agentbot-sandbox:e2e

Needs a kind cluster (the current kubeconfig context) with both images loaded, `helm`,
`kubectl` and `docker` on PATH. The fake GitHub and its git server listen on the host; pods
reach them through the kind network's gateway. Exit code 0 when the labelled issue became a
completed Job and a draft pull request with the agent's file; 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script, import tests.*

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from kubernetes import client, config, watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

from bot.executors.manifests import SANDBOX_SELECTOR  # noqa: E402
from tests.e2e.gitserver import GitServer  # noqa: E402
from tests.e2e.scenario import (  # noqa: E402
    AGENT_OUTPUT,
    ISSUE_TITLE,
    ROOT,
    VALUES,
    chart_values,
    labeled_payload,
    seed,
)
from tests.fakes import payloads  # noqa: E402
from tests.fakes.github import FakeGitHub  # noqa: E402

NAMESPACE, RELEASE, SECRET = "agentbot-e2e", "agentbot", "agentbot-github"
T = TypeVar("T")


class E2EFailure(Exception):
    """The scenario did not get where it should; the message says where it stopped."""


def kind_gateway(network: str = "kind") -> str:
    """The host's IPv4 address on the kind network, which pods can reach."""
    out = subprocess.run(
        ["docker", "network", "inspect", network, "--format", "{{json .IPAM.Config}}"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout
    for entry in json.loads(out):
        gateway = entry.get("Gateway", "")
        if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", gateway):
            return str(gateway)
    raise E2EFailure(f"the {network} docker network has no IPv4 gateway: {out}")


async def serve(app: web.Application, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()  # noqa: S104 - pods connect from kind
    return runner, int(runner.addresses[0][1])


def create_app_secret(core: client.CoreV1Api, fake: FakeGitHub, webhook_secret: str) -> None:
    """The namespace and the App's Secret, as an operator would create them."""
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    except ApiException as exc:
        if exc.status != 409:
            raise
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=SECRET),
        string_data={"GITHUB_APP_ID": str(fake.app_id),
                     "GITHUB_PRIVATE_KEY": fake.private_key_pem,
                     "GITHUB_WEBHOOK_SECRET": webhook_secret},
    )
    try:
        core.create_namespaced_secret(NAMESPACE, body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        core.replace_namespaced_secret(SECRET, NAMESPACE, body)


def helm_install(values: list[Path]) -> None:
    command = ["helm", "upgrade", "--install", RELEASE, str(ROOT / "charts" / "agentbot"),
               "--namespace", NAMESPACE, "--wait", "--timeout", "5m"]
    for path in values:
        command += ["--values", str(path)]
    subprocess.run(command, check=True, timeout=360)


@asynccontextmanager
async def port_forward(service: str, port: int) -> AsyncIterator[int]:
    """`kubectl port-forward` to a Service; yields the local port."""
    proc = await asyncio.create_subprocess_exec(
        "kubectl", "port-forward", "--namespace", NAMESPACE, f"service/{service}", f":{port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        match = re.search(rb"127\.0\.0\.1:(\d+)", line)
        if match is None:
            raise E2EFailure(f"kubectl port-forward said: {line.decode(errors='replace')}")
        yield int(match.group(1))
    finally:
        proc.terminate()
        await proc.wait()


async def deliver(base: str, secret: str, event: str, payload: dict[str, Any]) -> int:
    """POST a signed webhook the way GitHub does; returns the status."""
    body = payloads.encode(payload)
    headers = payloads.webhook_headers(event, str(uuid.uuid4()), body, secret)
    async with aiohttp.ClientSession() as session:
        for _ in range(30):  # the port-forward may need a moment to accept connections
            try:
                async with session.post(f"{base}/webhook", data=body, headers=headers) as reply:
                    return reply.status
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(1)
    raise E2EFailure("the bot's webhook never answered through the port-forward")


def wait_for_job(batch: client.BatchV1Api, timeout: float) -> dict[str, Any]:
    """Watch the sandbox Jobs until one completes; E2EFailure when one fails or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stream = watch.Watch().stream(
            batch.list_namespaced_job, NAMESPACE, label_selector=SANDBOX_SELECTOR,
            timeout_seconds=max(1, int(deadline - time.monotonic())),
        )
        for event in stream:
            job = event["object"]
            for condition in job.status.conditions or []:
                if condition.status != "True":
                    continue
                if condition.type == "Complete":
                    return dict(client.ApiClient().sanitize_for_serialization(job))
                if condition.type == "Failed":
                    raise E2EFailure(f"Job {job.metadata.name} failed: {condition.reason}: "
                                     f"{condition.message}")
    raise E2EFailure("no sandbox Job completed in time")


async def wait_until(probe: Callable[[], T | None], seconds: int, what: str) -> T:
    """Poll the fake's state once a second: it changes only when the bot calls it."""
    for _ in range(seconds):
        found = probe()
        if found:
            return found
        await asyncio.sleep(1)
    raise E2EFailure(f"timed out waiting for {what}")


async def scenario(args: argparse.Namespace, work: Path) -> None:
    fake = FakeGitHub(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                      git_root=work / "git")
    git = GitServer(fake)
    host = args.host_ip or kind_gateway()
    api_runner, api_port = await serve(fake.app, args.api_port)
    git_runner, git_port = await serve(git.app(), args.git_port)
    fake.url = f"http://{host}:{api_port}"
    try:
        await _run(args, fake, git, host, api_port, git_port, work)
    except BaseException:
        print("fake GitHub requests:", file=sys.stderr)
        for record in fake.requests:  # Authorization headers are never recorded
            print(f"  {record.status} {record.method} {record.path}", file=sys.stderr)
        raise
    finally:
        await git_runner.cleanup()
        await api_runner.cleanup()


async def _run(args: argparse.Namespace, fake: FakeGitHub, git: GitServer, host: str,
               api_port: int, git_port: int, work: Path) -> None:
    setup = seed(fake)
    clone_url = f"http://{host}:{git_port}/{setup.repo.full_name}.git"
    webhook_secret = secrets.token_hex(20)
    config.load_kube_config(context=args.context)
    core, batch = client.CoreV1Api(), client.BatchV1Api()
    await asyncio.to_thread(create_app_secret, core, fake, webhook_secret)
    overrides = work / "values.json"
    overrides.write_text(json.dumps(chart_values(
        bot_image=args.bot_image, sandbox_image=args.sandbox_image, host=host,
        api_port=api_port, secret_name=SECRET)))
    print(f"installing the chart; fake GitHub at {fake.url}, git at {clone_url}")
    await asyncio.to_thread(helm_install, [VALUES, overrides])

    async with port_forward(RELEASE, 80) as local_port:
        status = await deliver(f"http://127.0.0.1:{local_port}", webhook_secret, "issues",
                               labeled_payload(fake, setup, clone_url))
    if status != 202:
        raise E2EFailure(f"the webhook was answered {status}, not 202")
    print("webhook accepted; watching for the sandbox Job")

    job = await asyncio.to_thread(wait_for_job, batch, args.timeout)
    print(f"Job {job['metadata']['name']} completed")

    pull = await wait_until(lambda: next(iter(fake.pulls(setup.repo)), None), 180,
                            "the draft pull request")
    assert pull.pull is not None
    files = fake.files(setup.repo, pull.pull.head_sha)
    if AGENT_OUTPUT not in files or ISSUE_TITLE.encode() not in files[AGENT_OUTPUT][1]:
        raise E2EFailure(f"the pull request lacks {AGENT_OUTPUT} with the issue's prompt")
    if not git.used_tokens:
        raise E2EFailure("the sandbox never cloned through the git server")
    for token in git.used_tokens:  # the sandbox's token: one repository, read-only contents
        if token.repository_ids != frozenset({setup.repo.id}) or any(
                level != "read" for level in token.permissions.values()):
            raise E2EFailure(f"the sandbox cloned with a token scoped {token.permissions} "
                             f"on {token.repository_ids}")
    if fake.violations:
        raise E2EFailure("the fake GitHub refused requests:\n" + "\n".join(fake.violations))
    print(f"pull request #{pull.number} opened (draft={pull.pull.draft}) "
          f"with {AGENT_OUTPUT}; the end-to-end run passed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bot-image", required=True, help="name:tag loaded into kind")
    parser.add_argument("--sandbox-image", required=True, help="name:tag loaded into kind")
    parser.add_argument("--context", default=None, help="kubeconfig context (default: current)")
    parser.add_argument("--host-ip", default=None, help="address pods reach the host at")
    parser.add_argument("--api-port", type=int, default=0)
    parser.add_argument("--git-port", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=480, help="seconds to wait for the Job")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="agentbot-e2e-") as work:
        try:
            asyncio.run(scenario(args, Path(work)))
        except E2EFailure as failure:
            print(f"e2e failed: {failure}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
