"""Checks requests (and the fake's own answers) against the committed slice of GitHub's REST API."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft202012Validator, ValidationError

SCHEMAS = Path(__file__).parent / "schemas"


@dataclass(frozen=True)
class Operation:
    """One documented REST operation: `key` is "METHOD /template"."""

    key: str
    method: str
    template: str
    operation_id: str
    pattern: re.Pattern[str]
    spec: dict[str, Any]

    @property
    def literal_length(self) -> int:
        return len(re.sub(r"\{[^}]+\}", "", self.template))


@dataclass(frozen=True)
class Match:
    """A request's operation and its decoded path parameters."""

    operation: Operation
    params: dict[str, Any]


class RestDescription:
    """The documented operations, and validators for their parameters and bodies."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.source: str = document["source"]
        self._components = document["components"]
        self._validators: dict[str, Draft202012Validator] = {}
        self.operations: list[Operation] = []
        for key, spec in document["operations"].items():
            method, template = key.split(" ", 1)
            regex = re.sub(
                r"\{([^}]+)\}",
                partial(_group, set(spec["parameters"]["multi_segment"])),
                re.escape(template).replace(r"\{", "{").replace(r"\}", "}"),
            )
            self.operations.append(Operation(key, method, template, spec["operationId"],
                                             re.compile(f"^{regex}$"), spec))
        # The most literal template wins where two could match one path.
        self.operations.sort(key=lambda op: -op.literal_length)

    @classmethod
    @cache
    def load(cls) -> RestDescription:
        """The committed slice (parsed once per process)."""
        return cls(json.loads((SCHEMAS / "rest.json").read_text()))

    def match(self, method: str, path: str) -> Match | None:
        """The documented operation for a method and raw path, or None."""
        for op in self.operations:
            if op.method != method:
                continue
            found = op.pattern.match(path)
            if found:
                return Match(op, {k: unquote(v) for k, v in found.groupdict().items()})
        return None

    def validator(self, name: str, schema: Any) -> Draft202012Validator:
        """A cached validator whose `#/components/...` references resolve in the slice."""
        if name not in self._validators:
            self._validators[name] = Draft202012Validator(
                {"allOf": [schema], "components": self._components}
            )
        return self._validators[name]

    def check_request(self, match: Match, query: Mapping[str, str],
                      body: bytes, content_type: str) -> tuple[list[str], Any]:
        """Problems with a request's parameters and body, and the parsed JSON body."""
        op, problems = match.operation, []
        params = op.spec["parameters"]
        for name, value in match.params.items():
            problems += self._param(op, "path", name, value, params["path"][name])
        for name, value in query.items():
            if name not in params["query"]:
                problems.append(f"query parameter {name!r} is not documented")
            else:
                problems += self._param(op, "query", name, value, params["query"][name])
        problems += [f"query parameter {name!r} is required"
                     for name in params["required_query"] if name not in query]
        data, spec = None, op.spec["requestBody"]
        if body:
            if spec is None:
                problems.append("a body was sent to an operation that takes none")
            elif not content_type.startswith("application/json"):
                problems.append(f"body content type {content_type!r} is not application/json")
            else:
                try:
                    data = json.loads(body)
                except ValueError:
                    problems.append("body is not valid JSON")
                else:
                    problems += _errors(self.validator(f"{op.key} body", spec["schema"]), data,
                                        "body")
                    problems += self._unknown_properties(spec["schema"], data, "body")
        elif spec is not None and spec["required"]:
            problems.append("the operation requires a JSON body and none was sent")
        return problems, data

    def _unknown_properties(self, schema: Any, data: Any, where: str) -> list[str]:
        # GitHub ignores a misspelt field silently; the bot would never notice, so we do.
        schema = self._resolve(schema)
        if not isinstance(schema, dict):
            return []
        problems = []
        if isinstance(data, dict) and "properties" in schema:
            known = dict(schema["properties"])
            for part in schema.get("allOf", []):
                known.update(self._resolve(part).get("properties", {}))
            open_ended = "additionalProperties" in schema or "patternProperties" in schema
            for name, value in data.items():
                if name in known:
                    problems += self._unknown_properties(known[name], value, f"{where}/{name}")
                elif not open_ended:
                    problems.append(f"{where}: property {name!r} is not documented")
        elif isinstance(data, list) and "items" in schema:
            for index, value in enumerate(data):
                problems += self._unknown_properties(schema["items"], value, f"{where}/{index}")
        return problems

    def _resolve(self, schema: Any) -> Any:
        while isinstance(schema, dict) and "$ref" in schema:
            schema = self._components["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def _param(self, op: Operation, where: str, name: str, raw: str, schema: Any) -> list[str]:
        value = _coerce(raw, schema)
        return _errors(self.validator(f"{op.key} {where} {name}", schema), value,
                       f"{where} parameter {name!r}")

    def check_response(self, match: Match, status: int, data: Any) -> list[str]:
        """Problems with a success response the fake produced (a bug in the fake)."""
        responses = match.operation.spec["responses"]
        if str(status) not in responses:
            documented = ", ".join(responses) or "none"
            return [f"status {status} is not a documented success (documented: {documented})"]
        schema = responses[str(status)]
        if schema is None:
            return [] if data is None else ["a body on a response documented without one"]
        name = f"{match.operation.key} response {status}"
        return _errors(self.validator(name, schema), data, "response")


def _group(multi_segment: set[str], found: re.Match[str]) -> str:
    # A multi-segment parameter (a file path, a ref like heads/feature/x) may hold slashes.
    name = found[1]
    return f"(?P<{name}>.+)" if name in multi_segment else f"(?P<{name}>[^/]+)"


def _coerce(raw: str, schema: Any) -> Any:
    # Path and query values arrive as text; compare them as the type the schema declares.
    kind = schema.get("type") if isinstance(schema, dict) else None
    kinds = kind if isinstance(kind, list) else [kind]
    if "integer" in kinds and re.fullmatch(r"-?\d+", raw):
        return int(raw)
    if "boolean" in kinds and raw in ("true", "false"):
        return raw == "true"
    return raw


def _errors(validator: Draft202012Validator, value: Any, where: str) -> list[str]:
    found = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    out = []
    for error in found[:5]:
        at = "/".join(str(p) for p in error.absolute_path)
        out.append(f"{where}{'/' + at if at else ''}: {_message(error)}")
    return out


def _message(error: ValidationError) -> str:
    # jsonschema quotes whole instances; a 60 KB body in an assertion message helps no one.
    if error.validator in ("maxLength", "maxItems", "minLength", "minItems"):
        unit = "characters" if error.validator.endswith("Length") else "items"
        bound = "at most" if error.validator.startswith("max") else "at least"
        return (f"has {len(error.instance)} {unit}, GitHub allows {bound} "
                f"{error.validator_value} (is too {'long' if bound == 'at most' else 'short'})")
    text = error.message
    return text if len(text) <= 300 else text[:150] + " ... " + text[-140:]
