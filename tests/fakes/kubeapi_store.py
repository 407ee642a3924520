"""The Kubernetes API double's storage: objects, resource versions, watch history, selectors."""

from __future__ import annotations

import asyncio
import copy
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
Selector = Callable[[Obj], bool]


@dataclass(frozen=True)
class Resource:
    """One collection the double serves."""

    plural: str
    kind: str
    api_version: str
    group: str  # "" for the core group

    @property
    def qualified(self) -> str:
        """The name Status messages use: `jobs.batch`, `secrets`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES = {
    "jobs": Resource("jobs", "Job", "batch/v1", "batch"),
    "secrets": Resource("secrets", "Secret", "v1", ""),
    "pods": Resource("pods", "Pod", "v1", ""),
    "events": Resource("events", "Event", "v1", ""),
}


class Conflict(Exception):
    """The object exists already."""


class NotFound(Exception):
    """The object does not exist."""


class Expired(Exception):
    """The resourceVersion asked for is older than the history kept."""


def rfc3339(at: float | None = None) -> str:
    """A time as the API server writes it: whole seconds, UTC, `Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if at is None else at))


_REQUIREMENT = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9._/-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9._-]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)


def _split_requirements(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


def parse_label_selector(text: str | None) -> Selector:
    """A predicate over objects for a label selector (=, ==, !=, in, notin, exists, !exists)."""
    tests: list[Callable[[dict[str, str]], bool]] = []
    for part in _split_requirements(text or ""):
        match = _REQUIREMENT.match(part)
        if match is None or (match["neg"] and (match["op"] or match["setop"])):
            raise ValueError(f"unable to parse requirement: {part!r}")
        key, op, value = match["key"], match["op"], match["value"]
        if match["setop"]:
            values = {v.strip() for v in match["values"].split(",")}
            negate = match["setop"] == "notin"
            tests.append(lambda labels, k=key, vs=values, n=negate: (labels.get(k) in vs) != n)
        elif op in ("=", "=="):
            tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif op == "!=":
            tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif match["neg"]:
            tests.append(lambda labels, k=key: k not in labels)
        else:
            tests.append(lambda labels, k=key: k in labels)

    def select(obj: Obj) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(test(labels) for test in tests)

    return select


def parse_field_selector(text: str | None) -> Selector:
    """A predicate for a field selector of `path=value` and `path!=value` terms."""
    tests: list[Callable[[Obj], bool]] = []
    for part in _split_requirements(text or ""):
        match = re.match(r"^\s*([A-Za-z.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if match is None:
            raise ValueError(f"invalid field selector: {part!r}")
        path, op, value = match.groups()

        def test(obj: Obj, p: str = path, o: str = op, v: str = value) -> bool:
            current: Any = obj
            for step in p.split("."):
                current = current.get(step) if isinstance(current, dict) else None
            equal = (current if current is not None else "") == v
            return equal if o != "!=" else not equal

        tests.append(test)
    return lambda obj: all(test(obj) for test in tests)


@dataclass(eq=False)
class Watcher:
    """One open watch connection; the HTTP handler drains `queue`."""

    plural: str
    namespace: str
    selector: Selector
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)


@dataclass
class Store:
    """Objects by (plural, namespace, name), one resourceVersion counter, bounded history."""

    history_size: int = 200
    objects: dict[tuple[str, str, str], Obj] = field(default_factory=dict)
    rv: int = 1000
    compacted_rv: int = 1000  # watches from before this version get 410 Gone
    history: deque[tuple[int, str, str, str, Obj]] = field(default_factory=deque)
    watchers: set[Watcher] = field(default_factory=set)

    def get(self, plural: str, namespace: str, name: str) -> Obj:
        """A copy of one object; raises NotFound."""
        try:
            return copy.deepcopy(self.objects[(plural, namespace, name)])
        except KeyError:
            raise NotFound(name) from None

    def list(self, plural: str, namespace: str, selector: Selector) -> list[Obj]:
        """Copies of the matching objects, oldest first."""
        found = [o for (p, ns, _), o in self.objects.items()
                 if p == plural and ns == namespace and selector(o)]
        return copy.deepcopy(found)

    def by_uid(self, uid: str) -> tuple[str, Obj] | None:
        """The plural and object with this uid, if it exists."""
        for (plural, _, _), obj in self.objects.items():
            if obj["metadata"].get("uid") == uid:
                return plural, obj
        return None

    def dependents(self, uid: str) -> list[tuple[str, Obj]]:
        """Objects with an ownerReference to this uid."""
        return [(plural, obj) for (plural, _, _), obj in self.objects.items()
                if any(o.get("uid") == uid for o in obj["metadata"].get("ownerReferences", []))]

    def create(self, plural: str, namespace: str, obj: Obj,
               prepare: Callable[[Obj], None] | None = None) -> Obj:
        """Store a new object with uid, resourceVersion and creationTimestamp filled in;
        `prepare` applies the server's defaults before it is stored."""
        name = obj["metadata"]["name"]
        if (plural, namespace, name) in self.objects:
            raise Conflict(name)
        meta = obj["metadata"]
        meta.update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=rfc3339())
        meta.setdefault("generation", 1)
        if prepare is not None:
            prepare(obj)
        self.objects[(plural, namespace, name)] = obj
        return self._record("ADDED", plural, namespace, obj)

    def update(self, plural: str, namespace: str, name: str,
               mutate: Callable[[Obj], None]) -> Obj:
        """Apply `mutate` to the stored object and publish a MODIFIED event."""
        try:
            obj = self.objects[(plural, namespace, name)]
        except KeyError:
            raise NotFound(name) from None
        mutate(obj)
        return self._record("MODIFIED", plural, namespace, obj)

    def delete(self, plural: str, namespace: str, name: str) -> Obj:
        """Remove the object and publish a DELETED event carrying its last state."""
        try:
            obj = self.objects.pop((plural, namespace, name))
        except KeyError:
            raise NotFound(name) from None
        return self._record("DELETED", plural, namespace, obj)

    def _record(self, kind: str, plural: str, namespace: str, obj: Obj) -> Obj:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        snapshot = copy.deepcopy(obj)
        if len(self.history) >= self.history_size:
            self.compacted_rv = self.history.popleft()[0]
        self.history.append((self.rv, kind, plural, namespace, snapshot))
        for watcher in list(self.watchers):
            if watcher.plural == plural and watcher.namespace == namespace \
                    and watcher.selector(snapshot):
                watcher.queue.put_nowait((kind, copy.deepcopy(snapshot)))
        return copy.deepcopy(obj)

    def events_since(self, rv: int, watcher: Watcher) -> list[tuple[str, Obj]]:
        """The events after `rv` this watcher would have seen; raises Expired if forgotten."""
        if rv < self.compacted_rv:
            raise Expired(f"too old resource version: {rv} ({self.compacted_rv})")
        return [(kind, copy.deepcopy(obj)) for version, kind, plural, ns, obj in self.history
                if version > rv and plural == watcher.plural and ns == watcher.namespace
                and watcher.selector(obj)]

    def compact(self) -> None:
        """Forget all history, as etcd compaction does: older watches will get 410 Gone."""
        self.history.clear()
        self.compacted_rv = self.rv
