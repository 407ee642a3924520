"""The publisher: a successful result -> policy -> one commit -> branch -> draft PR."""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gidgethub

from bot.config.settings import Settings
from bot.github import effects
from bot.markdown import clip
from bot.publish import policy
from bot.runs.callbacks import Result
from bot.runs.refs import resolve_base

log = logging.getLogger(__name__)

# Files smaller than this that are valid UTF-8 go into the tree request itself; anything
# else becomes a blob first. Most changesets are a few text files: one request, not one each.
INLINE_MAX_BYTES = 512 * 1024
PR_BODY_MAX = 65_536
DEFAULT_PROTECTED = (".github/workflows/**",)

REFUSED = "the result was refused by policy:\n\n{violations}"
BRANCH_MOVED = (
    "the branch `{branch}` moved while the agent worked (it was at {base}, it is now at "
    "{current}). agentbot does not overwrite it: comment `/agent retry` to run again on the "
    "new head."
)
BRANCH_TAKEN = (
    "the branches `{branch}` and `{fallback}` exist already and point elsewhere; delete "
    "one of them and comment `/agent retry`."
)
GITHUB_REFUSED = "GitHub refused the {step}: {message}"
VARIANT_MOVED = (
    "the branch `{branch}` is no longer at the variant's commit {sha} (it was pushed to or "
    "deleted since), so agentbot does not open a pull request from it"
)
DEFAULT_COMMIT_MESSAGE = "{title} (#{number})"
PR_BODY = (
    "{summary}\n\n"
    "Closes #{number}\n\n"
    "---\n"
    "Made by agentbot run #{run_id} ({agent}) for @{login}.{check}\n"
)
PR_BODY_PULL_FROM_FORK = (
    "{summary}\n\n"
    "Builds on #{number} (from a fork), with the changes @{login} asked for.\n\n"
    "---\n"
    "Made by agentbot run #{run_id} ({agent}).{check}\n"
)
PR_BODY_PARTIAL_HEAD = (
    "**Partial work.** agentbot stopped run #{run_id} when it reached its model budget "
    "({limit}). These are the changes the agent had made by then, checked by the same policy "
    "as any result: review them as unfinished work.\n\n"
)
# "Part of", not "Closes": merging unfinished work must not close the issue.
PR_BODY_PARTIAL_TAIL = (
    "\n\nPart of #{number}\n\n"
    "---\n"
    "Made by agentbot run #{run_id} ({agent}) for @{login}.{check}\n"
)
PARTIAL_TITLE = "[partial] {title}"
PARTIAL_COMMIT_MESSAGE = (
    "Partial work of agentbot run {run_id}: {title}\n\n"
    "agentbot stopped the agent when the run reached its model budget ({limit}).\n\n"
    "Agentbot-Run: {run_id}\n"
)
STOPPED_AT = "<details><summary>Where the agent stopped</summary>\n\n{summary}\n\n</details>"
CHECK_LINK = " Details: [check run]({url})."
DRAFT_UNSUPPORTED = "draft pull requests are not supported"


class Refused(Exception):
    """The result may not be published, or GitHub will not take it: the run fails with this."""


@dataclass(frozen=True)
class Published:
    branch: str
    commit_sha: str
    pr_number: int | None = None
    pr_url: str | None = None


def is_partial(run: Any) -> bool:
    """The run's budget ran out: its result is the work so far, published as partial."""
    return getattr(run, "budget_reached_at", None) is not None


def limits_for(run: Any, settings: Settings) -> policy.Limits:
    """The policy limits of a run: its repo config, capped by the operator's settings."""
    config = run.config or {}
    files = min(int(config.get("max_changed_files") or settings.max_changed_files),
                settings.max_changed_files)
    protected = config.get("protected_paths")
    return policy.Limits(
        max_changed_files=files, max_result_bytes=settings.max_result_bytes,
        protected_paths=tuple(protected) if protected is not None else DEFAULT_PROTECTED)


class Publisher:
    """Writes a run's changeset through the Git Data API; every step is done at most once."""

    def __init__(self, engine: Any, github: Any, settings: Settings) -> None:
        self._engine = engine
        self._github = github
        self._settings = settings

    async def publish(self, run: Any) -> Published:
        """Policy, then commit, then branch (or fast-forward of the PR's), then PR.

        Raises Refused for what retrying cannot fix; any other error is worth a retry,
        and a retry redoes nothing that was done (each step is an effect of bot.github.effects).
        """
        result = Result.model_validate(run.result)
        violations = policy.check(result, limits_for(run, self._settings))
        if violations:
            raise Refused(REFUSED.format(violations=policy.explain(violations)))
        gh = self._github.installation(run.installation_id)
        with _refusals("change"):
            base_sha, base_tree = await resolve_base(self._engine, gh, run)
            commit_sha = await self._commit(gh, run, result, base_sha, base_tree)
            if is_variant(run):
                # A variant stops at its own branch; `/agent pick` takes one further.
                return Published(await self._branch(gh, run, commit_sha), commit_sha)
            return await self._deliver(gh, run, result, base_sha, commit_sha)

    async def _deliver(self, gh: Any, run: Any, result: Result, base_sha: str,
                       commit_sha: str, branch: str | None = None) -> Published:
        """What a run's commit becomes: the PR's branch moved to it, or a branch and a PR."""
        # Partial work on a pull request goes beside it (a PR into its branch), never
        # onto it: the maintainer decides whether the unfinished changes join.
        if run.is_pull_request and run.head_ref and not is_partial(run):
            moved = await self._fast_forward(gh, run, base_sha, commit_sha)
            return Published(moved, commit_sha)
        if branch is None:
            branch = await self._branch(gh, run, commit_sha)
        pull = await self._pull(gh, run, result, branch)
        await self._request_review(gh, run, pull["number"])
        return Published(branch, commit_sha, pull["number"], pull.get("html_url"))

    async def pick(self, run: Any) -> Published:
        """Variant `run` was picked: its commit goes on exactly as a single run's would (the
        PR's branch moved to it, or a PR from the variant's branch). Every step is an effect
        of the variant's run, so that a pick redone after a crash repeats none."""
        result = Result.model_validate(run.result)
        gh = self._github.installation(run.installation_id)
        with _refusals("pick"):
            base_sha, _ = await resolve_base(self._engine, gh, run)
            if await effects.recorded(self._engine, f"pull:{run.id}") is None and \
                    await self._ref_sha(gh, run, str(run.branch)) != run.commit_sha:
                # The PR would carry what is on the branch now, not the variant's commit.
                raise Refused(VARIANT_MOVED.format(branch=run.branch,
                                                   sha=str(run.commit_sha)[:12]))
            return await self._deliver(gh, run, result, base_sha, str(run.commit_sha),
                                       branch=str(run.branch))

    async def delete_branch(self, run: Any) -> bool:
        """Delete a variant's branch, unless it moved since (someone pushed to it: their
        work stays). True when it is gone."""
        gh = self._github.installation(run.installation_id)
        branch = str(run.branch)

        async def create() -> dict[str, Any]:
            current = await self._ref_sha(gh, run, branch)
            if current is None:
                return {"deleted": True}
            if current != run.commit_sha:
                log.info("not deleting the moved branch %s", branch, extra={"run_id": run.id})
                return {"deleted": False}
            try:
                await gh.delete("/repos/{owner}/{repo}/git/refs/{ref}",
                                {**_repo_vars(run), "ref": f"heads/{branch}"})
            except gidgethub.BadRequest as exc:
                if exc.status_code not in (404, 422):  # gone already
                    raise
            return {"deleted": True}

        with _refusals("branch deletion"):
            done = await effects.once(self._engine, f"delete_branch:{run.id}", create)
        return bool(done.get("deleted"))

    # --- steps -----------------------------------------------------------------------------

    async def _commit(self, gh: Any, run: Any, result: Result, base_sha: str,
                      base_tree: str) -> str:
        vars_ = _repo_vars(run)

        async def create() -> dict[str, Any]:
            entries = [await self._entry(gh, vars_, change) for change in result.changes]
            tree = await gh.post("/repos/{owner}/{repo}/git/trees", vars_,
                                 data={"base_tree": base_tree, "tree": entries})
            title = run.title or "agentbot changes"
            if is_partial(run):
                message = PARTIAL_COMMIT_MESSAGE.format(run_id=run.id, title=title,
                                                        limit=run.budget_reached or "its limit")
            else:
                message = (result.commit_message.strip()
                           or DEFAULT_COMMIT_MESSAGE.format(title=title, number=run.number))
            commit = await gh.post("/repos/{owner}/{repo}/git/commits", vars_, data={
                "message": message, "tree": tree["sha"], "parents": [base_sha]})
            return {"sha": commit["sha"]}

        # A commit lost to a crash is an unreachable object GitHub collects; no need to find it.
        made = await effects.once(self._engine, f"commit:{run.id}", create)
        return str(made["sha"])

    async def _entry(self, gh: Any, vars_: dict[str, Any], change: Any) -> dict[str, Any]:
        if getattr(change, "deleted", False):
            return {"path": change.path, "mode": "100644", "type": "blob", "sha": None}
        data = base64.b64decode(change.content_b64)
        entry = {"path": change.path, "mode": change.mode, "type": "blob"}
        if len(data) <= INLINE_MAX_BYTES:
            try:
                return {**entry, "content": data.decode("utf-8")}
            except UnicodeDecodeError:
                pass  # binary: as a blob, base64 keeps every byte
        blob = await gh.post("/repos/{owner}/{repo}/git/blobs", vars_,
                             data={"content": change.content_b64, "encoding": "base64"})
        return {**entry, "sha": blob["sha"]}

    async def _ref_sha(self, gh: Any, run: Any, branch: str) -> str | None:
        try:
            ref = await gh.getitem("/repos/{owner}/{repo}/git/ref/{ref}",
                                   {**_repo_vars(run), "ref": f"heads/{branch}"})
        except gidgethub.BadRequest as exc:
            if exc.status_code == 404:
                return None
            raise
        return str(ref["object"]["sha"])

    async def _branch(self, gh: Any, run: Any, commit_sha: str) -> str:
        """A new branch at the commit: agentbot/<n>-<slug>, or with -<run id> if taken."""
        preferred = str(run.branch)
        if run.is_pull_request and is_partial(run):
            preferred = f"agentbot/{run.number}-partial"
        names = (preferred, f"{preferred}-{run.id}")

        async def create() -> dict[str, Any]:
            for name in names:
                try:
                    await gh.post("/repos/{owner}/{repo}/git/refs", _repo_vars(run),
                                  data={"ref": f"refs/heads/{name}", "sha": commit_sha})
                    return {"branch": name}
                except gidgethub.BadRequest as exc:
                    if exc.status_code != 422:
                        raise
                    if await self._ref_sha(gh, run, name) == commit_sha:
                        return {"branch": name}  # made by an attempt that then died
            raise Refused(BRANCH_TAKEN.format(branch=names[0], fallback=names[1]))

        async def find() -> dict[str, Any] | None:
            for name in names:
                if await self._ref_sha(gh, run, name) == commit_sha:
                    return {"branch": name}
            return None

        made = await effects.once(self._engine, f"branch:{run.id}", create, find)
        return str(made["branch"])

    async def _fast_forward(self, gh: Any, run: Any, base_sha: str, commit_sha: str) -> str:
        """Move the PR's branch to the commit, only if it is still where the run started."""
        branch = str(run.head_ref)

        async def create() -> dict[str, Any]:
            try:
                await gh.patch("/repos/{owner}/{repo}/git/refs/{ref}",
                               {**_repo_vars(run), "ref": f"heads/{branch}"},
                               data={"sha": commit_sha, "force": False})
            except gidgethub.BadRequest as exc:
                if exc.status_code != 422:
                    raise
                current = await self._ref_sha(gh, run, branch)
                if current == commit_sha:
                    return {"branch": branch}
                raise Refused(BRANCH_MOVED.format(
                    branch=branch, base=base_sha[:12],
                    current=(current or "nowhere (deleted)")[:18])) from exc
            return {"branch": branch}

        async def find() -> dict[str, Any] | None:
            if await self._ref_sha(gh, run, branch) == commit_sha:
                return {"branch": branch}
            return None

        await effects.once(self._engine, f"push:{run.id}", create, find)
        return branch

    async def _pull(self, gh: Any, run: Any, result: Result, branch: str) -> dict[str, Any]:
        owner = run.repo_full_name.partition("/")[0]
        draft = bool((run.config or {}).get("draft", True))
        title = run.title or f"agentbot changes for #{run.number}"
        base = run.base_ref
        if is_partial(run):
            # Unfinished work is always a draft, says so in its title, and on a pull request
            # asks to join that pull request's branch.
            draft, title = True, PARTIAL_TITLE.format(title=title)
            if run.is_pull_request and run.head_ref:
                base = run.head_ref
        data = {"title": title, "head": branch, "base": base,
                "body": await self._pull_body(run, result), "draft": draft}

        async def find() -> dict[str, Any] | None:
            async for pull in gh.getiter("/repos/{owner}/{repo}/pulls{?head,state,per_page}",
                                         {**_repo_vars(run), "head": f"{owner}:{branch}",
                                          "state": "all", "per_page": 10}):
                return {"number": pull["number"], "html_url": pull.get("html_url")}
            return None

        async def create() -> dict[str, Any]:
            try:
                pull = await gh.post("/repos/{owner}/{repo}/pulls", _repo_vars(run), data=data)
            except gidgethub.BadRequest as exc:
                if exc.status_code != 422:
                    raise
                if data["draft"] and DRAFT_UNSUPPORTED in _message(exc).lower():
                    # Private repositories on some plans have no drafts: a normal PR it is.
                    pull = await gh.post("/repos/{owner}/{repo}/pulls", _repo_vars(run),
                                         data={**data, "draft": False})
                else:
                    found = await find()  # "A pull request already exists"
                    if found is None:
                        raise
                    return found
            return {"number": pull["number"], "html_url": pull.get("html_url")}

        return await effects.once(self._engine, f"pull:{run.id}", create, find)

    async def _pull_body(self, run: Any, result: Result) -> str:
        check = await effects.recorded(self._engine, f"check_run:{run.id}")
        link = CHECK_LINK.format(url=check["html_url"]) if check and check.get(
            "html_url") else ""
        summary = result.summary.strip() or "The agent left no summary."
        if is_partial(run):
            if result.status == "failed":
                summary = STOPPED_AT.format(summary=clip(summary, 20_000))
            head = PR_BODY_PARTIAL_HEAD.format(run_id=run.id,
                                               limit=run.budget_reached or "its limit")
            end = PR_BODY_PARTIAL_TAIL.format(number=run.number, run_id=run.id,
                                              agent=run.agent, login=run.sender_login,
                                              check=link)
            return head + clip(summary, PR_BODY_MAX - len(head) - len(end) - 1) + end
        template = PR_BODY_PULL_FROM_FORK if run.is_pull_request else PR_BODY
        tail = template.format(summary="", number=run.number, run_id=run.id, agent=run.agent,
                               login=run.sender_login, check=link)
        return clip(summary, PR_BODY_MAX - len(tail) - 1) + tail

    async def _request_review(self, gh: Any, run: Any, number: int) -> None:
        """Ask the person who triggered the run to review; a refusal does not fail the run."""
        login = str(run.sender_login)
        if login.endswith("[bot]"):
            return  # bots cannot be reviewers

        async def create() -> dict[str, Any]:
            try:
                await gh.post("/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers",
                              {**_repo_vars(run), "pull_number": number},
                              data={"reviewers": [login]})
            except gidgethub.BadRequest as exc:
                if exc.status_code != 422:
                    raise
                log.warning("could not request a review from @%s: %s", login, _message(exc),
                            extra={"run_id": run.id})
                return {"requested": False}
            return {"requested": True}

        # Asking twice is harmless (GitHub keeps one request), so no lookup is needed.
        await effects.once(self._engine, f"review:{run.id}", create)


def is_variant(run: Any) -> bool:
    """One of a group's variants: published to its own branch only, until it is picked."""
    return getattr(run, "group_id", None) is not None


@contextlib.contextmanager
def _refusals(step: str) -> Iterator[None]:
    """GitHub's refusals of a step as Refused (rate limits arrive as
    bot.github.client.RateLimited, not here); other errors are worth a retry."""
    try:
        yield
    except gidgethub.BadRequest as exc:
        if exc.status_code in (403, 404, 409, 422):
            raise Refused(GITHUB_REFUSED.format(step=step, message=_message(exc))) from exc
        raise


def _repo_vars(run: Any) -> dict[str, Any]:
    owner, _, repo = run.repo_full_name.partition("/")
    return {"owner": owner, "repo": repo}


def _message(exc: gidgethub.HTTPException) -> str:
    parts = [str(exc.args[0]) if exc.args else str(exc.status_code)]
    errors = getattr(exc, "errors", None) or []
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, dict) and error.get("message"):
            parts.append(str(error["message"]))
    return "; ".join(p for p in parts if p)[:1000]
