"""The end-to-end scenario's pure parts: the fake GitHub's state, the webhook, the chart values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fakes import payloads
from tests.fakes.github import FakeGitHub
from tests.fakes.github_state import Installation, Issue, Repo

ROOT = Path(__file__).resolve().parents[2]
VALUES = Path(__file__).with_name("values.yaml")

OWNER, NAME = "octo-org", "kind-e2e"
MAINTAINER = "octocat"
ISSUE_TITLE = "Write down what the agent was asked"
# The generic `command` agent copies its prompt into the checkout: the PR then proves the
# prompt reached the sandbox, the change came back, and the bot committed it.
AGENT_COMMAND = "cp {prompt_file} AGENT_PROMPT.md"
AGENT_OUTPUT = "AGENT_PROMPT.md"


@dataclass(frozen=True)
class Scenario:
    """What the run is about: the installation, the repository and the labelled issue."""

    installation: Installation
    repo: Repo
    issue: Issue


def seed(fake: FakeGitHub) -> Scenario:
    """An installed repository with one file, a maintainer with write access, and an issue."""
    installation = fake.add_installation(account=OWNER, repositories=[f"{OWNER}/{NAME}"])
    repo = fake.add_repo(OWNER, NAME, files={
        "README.md": b"# kind-e2e\n\nA repository for agentbot's end-to-end test.\n",
    })
    fake.add_collaborator(repo, MAINTAINER, "write")
    issue = fake.add_issue(repo, title=ISSUE_TITLE, user=MAINTAINER,
                           body="Copy the prompt you were given into AGENT_PROMPT.md.")
    return Scenario(installation, repo, issue)


def labeled_payload(fake: FakeGitHub, scenario: Scenario, clone_url: str,
                    label: str = "agent") -> dict[str, Any]:
    """`issues.labeled` for the scenario's issue, cloning from `clone_url`."""
    repo, issue = scenario.repo, scenario.issue
    data = payloads.issues_labeled(
        label, login=MAINTAINER, number=issue.number, title=issue.title, body=issue.body,
        owner=repo.owner.login, repo=repo.name, repo_id=repo.id,
        installation_id=scenario.installation.id,
    )
    # The sandbox clones what the payload names; pods reach the fake's git server, not GitHub.
    data["repository"]["clone_url"] = clone_url
    data["repository"]["default_branch"] = repo.default_branch
    return data


def image_values(image: str) -> dict[str, str]:
    """`name:tag` (a kind-loaded image) as the chart's repository and tag."""
    repository, _, tag = image.rpartition(":")
    if not repository or "/" in tag:
        raise ValueError(f"{image!r} is not name:tag")
    return {"repository": repository, "tag": tag}


def chart_values(*, bot_image: str, sandbox_image: str, host: str, api_port: int,
                 secret_name: str) -> dict[str, Any]:
    """Values layered over tests/e2e/values.yaml: images and the fake's address. Sandboxes
    reach only the gateway, which reaches the fake GitHub and its git server on its own."""
    return {
        "image": image_values(bot_image),
        "github": {"existingSecret": secret_name, "apiUrl": f"http://{host}:{api_port}"},
        "config": {"agentCommand": AGENT_COMMAND},
        "sandbox": {"image": image_values(sandbox_image)},
    }
