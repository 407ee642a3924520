"""The fake GitHub's App endpoints: installations, tokens, deliveries, manifests, rate limit."""

from __future__ import annotations

import secrets
import string
from typing import Any
from urllib.parse import urlencode

from tests.fakes import github_shapes as shapes
from tests.fakes.github_hooks import NO_ANSWER
from tests.fakes.github_http import ApiError, Call, Reply, int_param, not_found, route
from tests.fakes.github_state import HookDelivery, IssuedToken, iso

TOKEN_LIFETIME = 3600
_RANK = {"read": 1, "write": 2, "admin": 3}
_ALPHABET = string.ascii_letters + string.digits


@route("apps/get-authenticated")
def get_app(call: Call) -> Reply:
    return Reply(200, shapes.app(call.fake))


@route("apps/get-installation")
def get_installation(call: Call) -> Reply:
    found = call.fake.state.installations.get(int_param(call, "installation_id"))
    if found is None:
        raise not_found()
    return Reply(200, shapes.installation(call.fake, found))


@route("apps/get-repo-installation")
def get_repo_installation(call: Call) -> Reply:
    found = call.fake.state.installation_for(call.need_repo())
    if found is None:
        raise not_found()
    return Reply(200, shapes.installation(call.fake, found))


@route("apps/create-installation-access-token")
def create_token(call: Call) -> Reply:
    state = call.fake.state
    installation = state.installations.get(int_param(call, "installation_id"))
    if installation is None:
        raise not_found()
    body = call.body()
    available = state.installation_repos(installation)
    chosen = None
    if "repositories" in body or "repository_ids" in body:
        by_name = {r.name: r for r in available}
        by_id = {r.id: r for r in available}
        chosen = []
        for key, table in (("repositories", by_name), ("repository_ids", by_id)):
            for wanted in body.get(key, []):
                if wanted not in table:
                    raise ApiError(422, "There is at least one repository that does not exist "
                                        "or is not accessible to the parent installation.")
                chosen.append(table[wanted])
    permissions = dict(installation.permissions)
    if "permissions" in body:
        for name, level in body["permissions"].items():
            granted = installation.permissions.get(name)
            if granted is None or _RANK[level] > _RANK[granted]:
                raise ApiError(422, "The permissions requested are not granted to this "
                                    "installation.")
        # GitHub adds read access to metadata to every scoped token.
        permissions = {"metadata": "read", **body["permissions"]}
    value = "ghs_" + "".join(secrets.choice(_ALPHABET) for _ in range(36))
    issued = IssuedToken(
        token=value, installation_id=installation.id,
        repository_ids=None if chosen is None else frozenset(r.id for r in chosen),
        permissions=permissions, expires_at=state.now() + TOKEN_LIFETIME,
    )
    state.tokens[value] = issued
    out: dict[str, Any] = {
        "token": value, "expires_at": iso(issued.expires_at), "permissions": permissions,
        "repository_selection": "selected" if chosen is not None
        else installation.repository_selection,
    }
    if chosen is not None:
        out["repositories"] = [shapes.repository(call.fake, r) for r in chosen]
    return Reply(201, out)


@route("apps/revoke-installation-access-token")
def revoke_token(call: Call) -> Reply:
    assert call.token is not None
    call.token.revoked = True
    return Reply(204)


@route("apps/list-repos-accessible-to-installation")
def list_installation_repos(call: Call) -> Reply:
    assert call.token is not None
    installation = call.fake.state.installations[call.token.installation_id]
    repos = [r for r in call.fake.state.installation_repos(installation)
             if call.token.repository_ids is None or r.id in call.token.repository_ids]
    selection = "selected" if call.token.repository_ids is not None \
        else installation.repository_selection
    return Reply(200, {"total_count": len(repos),
                       "repositories": [shapes.repository(call.fake, r) for r in repos],
                       "repository_selection": selection})


@route("rate-limit/get")
def rate_limit(call: Call) -> Reply:
    key = call.token.installation_id if call.token else "app"
    core = call.fake.rate_limit(key)
    search = {"limit": 30, "remaining": 30, "reset": core["reset"], "used": 0}
    graphql = {"limit": 5000, "remaining": 5000, "reset": core["reset"], "used": 0}
    return Reply(200, {"resources": {"core": core, "search": search, "graphql": graphql},
                       "rate": core})


@route("apps/list-webhook-deliveries")
def list_deliveries(call: Call) -> Reply:
    deliveries = sorted(call.fake.state.deliveries, key=lambda d: -d.id)
    wanted = call.query.get("status")
    if wanted:
        deliveries = [d for d in deliveries if _status(d)[0] == wanted]
    if "cursor" in call.query:
        deliveries = [d for d in deliveries if d.id < int(call.query["cursor"])]
    per_page = min(int(call.query.get("per_page", 30)), 100)
    page, rest = deliveries[:per_page], deliveries[per_page:]
    headers = {}
    if rest:
        query = urlencode({**call.query, "per_page": per_page, "cursor": page[-1].id})
        headers["Link"] = f'<{call.fake.url}/app/hook/deliveries?{query}>; rel="next"'
    return Reply(200, [_delivery(d) for d in page], headers)


def _status(delivery: HookDelivery) -> tuple[str, str]:
    if 200 <= delivery.status_code < 300:
        return "success", "OK"
    if delivery.status_code == NO_ANSWER:
        return "failure", "failed to connect to host"
    return "failure", f"Invalid HTTP Response: {delivery.status_code}"


def _delivery(d: HookDelivery) -> dict[str, Any]:
    return {"id": d.id, "guid": d.guid, "delivered_at": iso(d.delivered_at),
            "redelivery": d.redelivery, "duration": 0.31, "status": _status(d)[1],
            "status_code": d.status_code, "event": d.event, "action": d.action,
            "installation_id": d.installation_id, "repository_id": d.repository_id,
            "throttled_at": None}


@route("apps/redeliver-webhook-delivery")
def redeliver(call: Call) -> Reply:
    state = call.fake.state
    wanted = int_param(call, "delivery_id")
    original = next((d for d in state.deliveries if d.id == wanted), None)
    if original is None:
        raise not_found()
    state.redelivered.append(wanted)
    # GitHub answers at once and sends the stored payload again afterwards, under the same
    # GUID, as a new attempt in the log.
    call.fake.redeliver_soon(original)
    return Reply(202, {})


@route("apps/create-from-manifest")
def create_from_manifest(call: Call) -> Reply:
    code = call.params["code"]
    if code not in call.fake.state.manifest_codes:
        raise not_found()
    call.fake.state.manifest_codes.discard(code)  # a code converts once, as on GitHub
    created = shapes.app(call.fake)
    created.update(client_secret=call.fake.oauth_client_secret,
                   webhook_secret=call.fake.manifest_webhook_secret,
                   pem=call.fake.private_key_pem)
    return Reply(201, created)
