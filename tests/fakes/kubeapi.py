"""A small Kubernetes API double on loopback that the real `kubernetes` client talks to."""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from aiohttp import web
from kubernetes_validate import utils as schemas
from referencing import Registry
from referencing import Resource as SchemaResource

from tests.fakes.kubeapi_cluster import Cluster
from tests.fakes.kubeapi_store import (
    RESOURCES,
    Conflict,
    Expired,
    NotFound,
    Obj,
    Resource,
    Watcher,
    parse_field_selector,
    parse_label_selector,
)

# Every body a client creates is checked against this Kubernetes version's schemas, strictly.
K8S_VERSION = "1.33"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DROP, _EXPIRE, _END = "drop", "expire", "end"
_PREFIXES = ("/api/v1", "/apis/batch/v1")


def status_body(code: int, reason: str, message: str, **details: Any) -> Obj:
    """A `Status` object as the API server sends with every error."""
    body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                 "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


@functools.cache
def _schema_validator(kind: str, api_version: str) -> jsonschema.Draft202012Validator:
    """The strict schema of K8S_VERSION for one kind, as `kubernetes_validate.validate` picks
    it, made once: that function reads and parses its 4 MB of definitions again on every
    call, which was two thirds of the doubles' time in a burst of a thousand Jobs."""
    wanted = schemas.major_minor(K8S_VERSION)
    version = [v for v in schemas.all_versions() if schemas.major_minor(v) <= wanted][-1]
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = schemas.schema_contents(f"{folder}/{kind.lower()}-{group_version}.json",
                                         K8S_VERSION)
    except FileNotFoundError:
        raise kubernetes_validate.SchemaNotFoundError(
            version=wanted, kind=kind, api_version=api_version) from None
    definitions = schemas.schema_contents(f"{folder}/_definitions.json", K8S_VERSION)
    registry = SchemaResource.from_contents(definitions) @ (
        SchemaResource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validation_problems(body: Obj) -> list[str]:
    """Why the API server would refuse this body; empty when it is valid."""
    try:
        validator = _schema_validator(str(body.get("kind")), str(body.get("apiVersion")))
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [exc.message]
    # The first error, as the library's `validator.validate(...)` raises it.
    if (error := next(validator.iter_errors(body), None)) is not None:
        return [f"{'.'.join(str(p) for p in error.path) or '<root>'}: {error.message}"]
    meta = body.get("metadata") or {}
    problems = []
    name = meta.get("name") or ""
    if not _DNS_SUBDOMAIN.match(name) or len(name) > 253:
        problems.append(f"metadata.name: Invalid value: {name!r}")
    for key, value in (meta.get("labels") or {}).items():
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            problems.append(f"metadata.labels: Invalid value for {key}")
    return problems


@dataclass
class _Failure:
    count: int
    status: int
    method: str | None
    plural: str | None


class KubeAPI(Cluster):
    """Jobs, Secrets, Pods and Events of one namespace, over HTTP, with list and watch."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.url = ""
        self.invalid_bodies: list[tuple[str, list[str]]] = []
        self.received: list[tuple[str, Obj]] = []  # (plural, body) of every create, as sent
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.authorizations: list[str] = []  # the Authorization header of each request
        self.bookmarks = True  # end timed-out watches with a BOOKMARK when the client allows
        self._failures: list[_Failure] = []
        self.app = web.Application(middlewares=[self._middleware])
        for prefix in _PREFIXES:
            self.app.router.add_route("*", prefix + "/namespaces/{ns}/{plural}", self._collection)
            self.app.router.add_route("*", prefix + "/namespaces/{ns}/{plural}/{name}",
                                      self._item)

    # --- levers ----------------------------------------------------------------------

    def configuration(self) -> Any:
        """A `kubernetes.client.Configuration` pointing at this double."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        return configuration

    def fail_next(self, count: int = 1, *, status: int = 500, method: str | None = None,
                  plural: str | None = None) -> None:
        """Answer the next `count` matching requests with this error status."""
        self._failures.append(_Failure(count, status, method, plural))

    def drop_watches(self) -> None:
        """Cut every open watch connection mid-stream, as a load balancer does."""
        self._signal(_DROP)

    def expire_watches(self) -> None:
        """End every open watch with `410 Gone`, as a lagging watch cache does."""
        self._signal(_EXPIRE)

    def compact(self) -> None:
        """Forget the event history: a watch from an older resourceVersion gets 410."""
        self.store.compact()

    def open_watches(self, plural: str | None = None) -> int:
        """How many watch connections are open."""
        return sum(1 for w in self.store.watchers if plural in (None, w.plural))

    def rbac_calls(self) -> set[tuple[str, str, str]]:
        """Every request received, as RBAC would authorise it: (API group, resource, verb)."""
        return {call for method, path, query in self.requests
                if (call := rbac_call(method, path, query)) is not None}

    def _signal(self, signal: str) -> None:
        for watcher in list(self.store.watchers):
            watcher.queue.put_nowait((signal, None))

    async def close(self) -> None:
        """End open watches so the server can stop."""
        self._signal(_END)
        await asyncio.sleep(0.01)

    # --- HTTP -------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        plural = request.match_info.get("plural")
        self.requests.append((request.method, request.path, dict(request.query)))
        self.authorizations.append(request.headers.get("Authorization", ""))
        for failure in self._failures:
            if failure.count > 0 and failure.method in (None, request.method) \
                    and failure.plural in (None, plural):
                failure.count -= 1
                return _json(status_body(failure.status, "InternalError",
                                         "an error on the server has prevented the request"),
                             failure.status)
        return await handler(request)

    def _resource(self, request: web.Request) -> Resource:
        resource = RESOURCES.get(request.match_info["plural"])
        group = "" if request.path.startswith("/api/") else "batch"
        if resource is None or resource.group != group \
                or request.match_info["ns"] != self.namespace:
            raise web.HTTPNotFound(text="404 page not found")
        return resource

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        resource = self._resource(request)
        if request.method == "POST":
            return await self._create(request, resource)
        if request.method != "GET":
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
        try:
            label = parse_label_selector(request.query.get("labelSelector"))
            field = parse_field_selector(request.query.get("fieldSelector"))
        except ValueError as exc:
            return _json(status_body(400, "BadRequest", str(exc)), 400)

        def select(obj: Obj) -> bool:
            return label(obj) and field(obj)

        if request.query.get("watch") in ("true", "1"):
            return await self._watch(request, resource, select)
        items = self.store.list(resource.plural, self.namespace, select)
        return _json({"kind": resource.kind + "List", "apiVersion": resource.api_version,
                      "metadata": {"resourceVersion": str(self.store.rv)}, "items": items})

    async def _create(self, request: web.Request, resource: Resource) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _json(status_body(400, "BadRequest", "the body is not JSON"), 400)
        if not isinstance(body, dict) or body.get("kind") != resource.kind \
                or body.get("apiVersion") != resource.api_version:
            return _json(status_body(400, "BadRequest", "kind or apiVersion does not match"),
                         400)
        self.received.append((resource.plural, copy.deepcopy(body)))
        namespace = (body.get("metadata") or {}).get("namespace")
        if namespace not in (None, self.namespace):
            return _json(status_body(400, "BadRequest", "the namespace of the provided object "
                                     "does not match the namespace sent on the request"), 400)
        problems = validation_problems(body)
        name = (body.get("metadata") or {}).get("name", "")
        if problems:
            self.invalid_bodies.append((f"{resource.kind}/{name}", problems))
            return _json(status_body(422, "Invalid", f'{resource.kind} "{name}" is invalid: '
                                     + "; ".join(problems), name=name, kind=resource.plural), 422)
        if resource.plural == "secrets" and "stringData" in body:
            # The API server folds stringData into data and never returns it.
            data = body.setdefault("data", {})
            for key, value in body.pop("stringData").items():
                data[key] = base64.b64encode(value.encode()).decode()
        prepare = self.default_job if resource.plural == "jobs" else None
        try:
            created = self.store.create(resource.plural, self.namespace, body, prepare)
        except Conflict:
            return _json(status_body(409, "AlreadyExists",
                                     f'{resource.qualified} "{name}" already exists',
                                     name=name, group=resource.group, kind=resource.plural), 409)
        self.after_create(resource.plural, created)
        return _json(created, 201)

    async def _item(self, request: web.Request) -> web.Response:
        resource = self._resource(request)
        name = request.match_info["name"]
        try:
            if request.method == "GET":
                return _json(self.store.get(resource.plural, self.namespace, name))
            if request.method == "DELETE":
                options = await request.json() if request.can_read_body else {}
                policy = request.query.get("propagationPolicy") \
                    or (options or {}).get("propagationPolicy") \
                    or ("Orphan" if resource.plural == "jobs" else "Background")
                deleted = self.delete_object(resource.plural, self.namespace, name, policy)
                return _json({"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Success", "details": {
                                  "name": name, "group": resource.group,
                                  "kind": resource.plural, "uid": deleted["metadata"]["uid"]}})
        except NotFound:
            return _json(status_body(404, "NotFound", f'{resource.qualified} "{name}" not found',
                                     name=name, group=resource.group, kind=resource.plural), 404)
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "DELETE"])

    async def _watch(self, request: web.Request, resource: Resource,
                     select: Any) -> web.StreamResponse:
        watcher = Watcher(resource.plural, self.namespace, select)
        since = request.query.get("resourceVersion", "")
        try:
            if since in ("", "0"):
                backlog = [("ADDED", o) for o in
                           self.store.list(resource.plural, self.namespace, select)]
            else:
                backlog = self.store.events_since(int(since), watcher)
        except Expired as exc:
            backlog = [("ERROR", status_body(410, "Expired", str(exc)))]
        except ValueError:
            return _json(status_body(400, "BadRequest", "invalid resourceVersion"), 400)
        # Registered before the first await, so no change slips between backlog and live events.
        self.store.watchers.add(watcher)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            timeout = float(request.query.get("timeoutSeconds") or 1800)
            bookmark = self.bookmarks and request.query.get("allowWatchBookmarks") == "true"
            async for kind, obj in self._events(watcher, backlog, timeout, resource, bookmark):
                if kind == _DROP:
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                line = {"type": kind, "object": obj}
                await response.write(json.dumps(line).encode() + b"\n")
                if kind == "ERROR":
                    break
            await response.write_eof()
        except ConnectionResetError:
            pass
        finally:
            self.store.watchers.discard(watcher)
        return response

    async def _events(self, watcher: Watcher, backlog: list[tuple[str, Obj]], seconds: float,
                      resource: Resource, bookmark: bool) -> AsyncIterator[tuple[str, Any]]:
        for kind, obj in backlog:
            yield kind, _with_kind(obj, resource) if kind != "ERROR" else obj
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                kind, obj = await asyncio.wait_for(watcher.queue.get(), max(remaining, 0))
            except TimeoutError:
                if bookmark:  # as the API server's watch cache does before a timeout
                    yield "BOOKMARK", {"kind": resource.kind, "apiVersion": resource.api_version,
                                       "metadata": {"resourceVersion": str(self.store.rv)}}
                return
            if kind == _END:
                return
            if kind == _EXPIRE:
                yield "ERROR", status_body(410, "Expired", "too old resource version")
                return
            yield kind, (_with_kind(obj, resource) if obj is not None else None)


def rbac_call(method: str, path: str, query: dict[str, str]) -> tuple[str, str, str] | None:
    """A namespaced request as RBAC sees it: (group, resource[/subresource], verb)."""
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts[0] == "apis" and len(parts) > 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if len(rest) < 3 or rest[0] != "namespaces":
        return None
    resource, named = rest[2], len(rest) > 3
    if len(rest) > 4:
        resource += "/" + rest[4]
    if method == "GET":
        verb = "get" if named else ("watch" if query.get("watch") in ("true", "1") else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if named else "deletecollection"}.get(method, method.lower())
    return group, resource, verb


def _with_kind(obj: Obj, resource: Resource) -> Obj:
    return {"kind": resource.kind, "apiVersion": resource.api_version, **obj}


def _json(body: Obj, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


@pytest.fixture
async def kube_api(aiohttp_server: Any) -> AsyncIterator[KubeAPI]:
    """A fresh API double per test; the test fails if anything sent it an invalid body."""
    api = KubeAPI()
    server = await aiohttp_server(api.app)
    api.url = str(server.make_url("")).rstrip("/")
    yield api
    await api.close()
    if api.invalid_bodies:
        pytest.fail(f"the Kubernetes API double refused invalid bodies: {api.invalid_bodies}")
