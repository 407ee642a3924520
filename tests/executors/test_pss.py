"""The sandbox pod passes Pod Security Standards `restricted`, checked rule by rule."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from bot.executors import manifests
from bot.executors.base import RunSpec, SandboxLimits
from tests.executors import pss

Spec = dict[str, Any]


def sandbox_pod(runtime_class: str | None = "runsc") -> Spec:
    spec = RunSpec(run_id=9, repository="o/r", clone_url="https://github.com/o/r.git",
                   base_ref="main", base_sha="0" * 40, branch="agentbot/9", prompt="p",
                   agent="codex", model=None, setup=[], limits=SandboxLimits(600, 60, 10, 1000),
                   callback_url="http://bot:8081/internal/runs/9")
    job = manifests.job_manifest(spec, namespace="ns", image="img:1",
                                 runtime_class=runtime_class)
    return job["spec"]["template"]["spec"]


def ctx(spec: Spec) -> Spec:
    return spec["containers"][0]["securityContext"]


@pytest.mark.parametrize("runtime_class", ["runsc", None])
def test_the_sandbox_pod_passes_restricted(runtime_class: str | None) -> None:
    assert pss.check_restricted(sandbox_pod(runtime_class)) == []


def _set(path: str, value: Any) -> Callable[[Spec], None]:
    def mutate(spec: Spec) -> None:
        *parents, last = path.split(".")
        target = spec
        for key in parents:
            target = target[int(key)] if key.isdigit() else target.setdefault(key, {})
        target[last] = value

    return mutate


def _delete(*paths: str) -> Callable[[Spec], None]:
    def mutate(spec: Spec) -> None:
        for path in paths:
            *parents, last = path.split(".")
            target = spec
            for key in parents:
                target = target[int(key)] if key.isdigit() else target[key]
            target.pop(last)

    return mutate


def _add_volume(volume: Spec) -> Callable[[Spec], None]:
    return lambda spec: spec["volumes"].append(volume)


def _add_privileged_init(spec: Spec) -> None:
    init = copy.deepcopy(spec["containers"][0])
    init["name"] = "init"
    init["securityContext"]["privileged"] = True
    spec["initContainers"] = [init]


C = "containers.0.securityContext"
VIOLATIONS: list[tuple[str, str, Callable[[Spec], None]]] = [
    ("hostProcess", "pod windows hostProcess", _set("securityContext.windowsOptions",
                                                    {"hostProcess": True})),
    ("hostNamespaces", "hostNetwork", _set("hostNetwork", True)),
    ("hostNamespaces", "hostPID", _set("hostPID", True)),
    ("hostNamespaces", "hostIPC", _set("hostIPC", True)),
    ("privileged", "privileged container", _set(f"{C}.privileged", True)),
    ("privileged", "privileged init container", _add_privileged_init),
    ("baselineCapabilities", "adds SYS_ADMIN", _set(f"{C}.capabilities.add", ["SYS_ADMIN"])),
    ("hostPathVolumes", "hostPath volume", _add_volume({"name": "h", "hostPath": {"path": "/"}})),
    ("hostPorts", "hostPort", _set("containers.0.ports",
                                   [{"containerPort": 80, "hostPort": 8080}])),
    ("seLinux", "SELinux type spc_t", _set(f"{C}.seLinuxOptions", {"type": "spc_t"})),
    ("seLinux", "SELinux user", _set("securityContext.seLinuxOptions", {"user": "system_u"})),
    ("procMount", "unmasked /proc", _set(f"{C}.procMount", "Unmasked")),
    ("baselineSeccomp", "pod seccomp Unconfined",
     _set("securityContext.seccompProfile", {"type": "Unconfined"})),
    ("sysctls", "unsafe sysctl", _set("securityContext.sysctls",
                                      [{"name": "kernel.msgmax", "value": "1"}])),
    ("volumeTypes", "nfs volume", _add_volume({"name": "n", "nfs": {"server": "x", "path": "/"}})),
    ("volumeTypes", "hostPath volume", _add_volume({"name": "h", "hostPath": {"path": "/"}})),
    ("allowPrivilegeEscalation", "unset", _delete(f"{C}.allowPrivilegeEscalation")),
    ("allowPrivilegeEscalation", "true", _set(f"{C}.allowPrivilegeEscalation", True)),
    ("runAsNonRoot", "unset everywhere",
     _delete("securityContext.runAsNonRoot", f"{C}.runAsNonRoot")),
    ("runAsNonRoot", "container overrides to false", _set(f"{C}.runAsNonRoot", False)),
    ("runAsUser", "container uid 0", _set(f"{C}.runAsUser", 0)),
    ("runAsUser", "pod uid 0", _set("securityContext.runAsUser", 0)),
    ("restrictedSeccomp", "unset everywhere",
     _delete("securityContext.seccompProfile", f"{C}.seccompProfile")),
    ("restrictedSeccomp", "container Unconfined", _set(f"{C}.seccompProfile",
                                                       {"type": "Unconfined"})),
    ("restrictedCapabilities", "does not drop ALL",
     _set(f"{C}.capabilities", {"drop": ["NET_RAW"]})),
    ("restrictedCapabilities", "adds CHOWN", _set(f"{C}.capabilities",
                                                  {"drop": ["ALL"], "add": ["CHOWN"]})),
]


@pytest.mark.parametrize(("rule", "mutate"), [(r, m) for r, _, m in VIOLATIONS],
                         ids=[f"{r}-{d}" for r, d, _ in VIOLATIONS])
def test_each_rule_catches_its_violation(rule: str, mutate: Callable[[Spec], None]) -> None:
    spec = sandbox_pod()
    assert pss.RULES[rule](spec) == []
    mutate(spec)
    found = pss.RULES[rule](spec)
    assert found, f"{rule} missed the violation"
    assert set(found) <= set(pss.check_restricted(spec))


def test_every_rule_has_a_violation_case() -> None:
    assert {rule for rule, _, _ in VIOLATIONS} == set(pss.RULES)


def test_allowed_variants_pass() -> None:
    spec = sandbox_pod()
    ctx(spec)["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    ctx(spec)["seccompProfile"] = {"type": "Localhost", "localhostProfile": "agent.json"}
    spec["securityContext"]["sysctls"] = [{"name": "net.ipv4.ping_group_range", "value": "0 1"}]
    spec["volumes"].append({"name": "p", "persistentVolumeClaim": {"claimName": "cache"}})
    ctx(spec)["seLinuxOptions"] = {"type": "container_t", "level": "s0:c1,c2"}
    assert pss.check_restricted(spec) == []


def test_run_as_non_root_may_be_set_per_container_only() -> None:
    spec = sandbox_pod()
    del spec["securityContext"]["runAsNonRoot"]
    assert pss.check_restricted(spec) == []


def test_apparmor_profile_and_annotation() -> None:
    spec = sandbox_pod()
    ctx(spec)["appArmorProfile"] = {"type": "RuntimeDefault"}
    assert pss.check_restricted(spec) == []
    ctx(spec)["appArmorProfile"] = {"type": "Unconfined"}
    assert any("appArmorProfile" in p for p in pss.check_restricted(spec))
    clean = sandbox_pod()
    key = pss.APPARMOR_ANNOTATION + "sandbox"
    assert pss.check_restricted(clean, annotations={key: "runtime/default"}) == []
    assert pss.check_restricted(clean, annotations={key: "unconfined"})
