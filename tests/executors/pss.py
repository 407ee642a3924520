"""A checker for the Pod Security Standards `restricted` profile (which includes `baseline`).

Written from the rules the Kubernetes documentation lists for each profile, one function per
rule, so a test can name the rule a pod spec breaks. Shared by the manifest and Helm tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Spec = dict[str, Any]

BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
})
SELINUX_TYPES = frozenset({
    "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t",
})
RESTRICTED_VOLUME_TYPES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
})
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def _containers(spec: Spec) -> Iterator[tuple[str, Spec]]:
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(group) or []:
            yield f"{group}[{container.get('name', '?')}]", container


def _security_contexts(spec: Spec) -> Iterator[tuple[str, Spec]]:
    yield "spec.securityContext", spec.get("securityContext") or {}
    for where, container in _containers(spec):
        yield f"{where}.securityContext", container.get("securityContext") or {}


def host_process(spec: Spec) -> list[str]:
    """Baseline: Windows HostProcess containers are not allowed."""
    return [f"{where}.windowsOptions.hostProcess must not be true"
            for where, ctx in _security_contexts(spec)
            if (ctx.get("windowsOptions") or {}).get("hostProcess")]


def host_namespaces(spec: Spec) -> list[str]:
    """Baseline: no sharing of the host's network, PID or IPC namespace."""
    return [f"spec.{key} must not be true" for key in ("hostNetwork", "hostPID", "hostIPC")
            if spec.get(key)]


def privileged(spec: Spec) -> list[str]:
    """Baseline: privileged containers are not allowed."""
    return [f"{where}.securityContext.privileged must not be true"
            for where, c in _containers(spec) if (c.get("securityContext") or {}).get("privileged")]


def baseline_capabilities(spec: Spec) -> list[str]:
    """Baseline: only capabilities from the default set may be added."""
    problems = []
    for where, container in _containers(spec):
        added = ((container.get("securityContext") or {}).get("capabilities") or {}).get("add")
        for capability in added or []:
            if capability not in BASELINE_CAPABILITIES:
                problems.append(f"{where} adds capability {capability}")
    return problems


def host_path_volumes(spec: Spec) -> list[str]:
    """Baseline: hostPath volumes are not allowed."""
    return [f"volume {v.get('name')} is a hostPath" for v in spec.get("volumes") or []
            if "hostPath" in v]


def host_ports(spec: Spec) -> list[str]:
    """Baseline: no host ports."""
    return [f"{where} uses hostPort {p['hostPort']}" for where, c in _containers(spec)
            for p in c.get("ports") or [] if p.get("hostPort")]


def apparmor(spec: Spec, annotations: dict[str, str]) -> list[str]:
    """Baseline: the AppArmor profile may only be the runtime default or a localhost one."""
    problems = [f"{where}.appArmorProfile.type is {ctx['appArmorProfile'].get('type')}"
                for where, ctx in _security_contexts(spec)
                if ctx.get("appArmorProfile")
                and ctx["appArmorProfile"].get("type") not in ("RuntimeDefault", "Localhost")]
    for key, value in annotations.items():
        if key.startswith(APPARMOR_ANNOTATION) and value != "runtime/default" \
                and not value.startswith("localhost/"):
            problems.append(f"annotation {key} is {value}")
    return problems


def selinux(spec: Spec) -> list[str]:
    """Baseline: no custom SELinux user or role; only the container types."""
    problems = []
    for where, ctx in _security_contexts(spec):
        options = ctx.get("seLinuxOptions") or {}
        if options.get("type", "") not in SELINUX_TYPES:
            problems.append(f"{where}.seLinuxOptions.type is {options['type']}")
        for key in ("user", "role"):
            if options.get(key):
                problems.append(f"{where}.seLinuxOptions.{key} must not be set")
    return problems


def proc_mount(spec: Spec) -> list[str]:
    """Baseline: the default /proc mount only."""
    return [f"{where}.securityContext.procMount is {c['securityContext']['procMount']}"
            for where, c in _containers(spec)
            if (c.get("securityContext") or {}).get("procMount", "Default") != "Default"]


def baseline_seccomp(spec: Spec) -> list[str]:
    """Baseline: seccomp may not be Unconfined."""
    return [f"{where}.seccompProfile.type is Unconfined" for where, ctx in _security_contexts(spec)
            if (ctx.get("seccompProfile") or {}).get("type") == "Unconfined"]


def sysctls(spec: Spec) -> list[str]:
    """Baseline: only the safe sysctls."""
    ctx = spec.get("securityContext") or {}
    return [f"sysctl {s.get('name')} is not in the safe set" for s in ctx.get("sysctls") or []
            if s.get("name") not in SAFE_SYSCTLS]


def volume_types(spec: Spec) -> list[str]:
    """Restricted: only configMap, csi, downwardAPI, emptyDir, ephemeral, PVC, projected, secret."""
    problems = []
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds or not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume.get('name')} has type {sorted(kinds)}")
    return problems


def privilege_escalation(spec: Spec) -> list[str]:
    """Restricted: every container sets allowPrivilegeEscalation to false."""
    return [f"{where}.securityContext.allowPrivilegeEscalation must be false"
            for where, c in _containers(spec)
            if (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False]


def _pod_then_container(spec: Spec, key: str) -> Iterator[tuple[str, Any]]:
    """The effective value of a securityContext field per container (the container's wins)."""
    pod_value = (spec.get("securityContext") or {}).get(key)
    for where, container in _containers(spec):
        value = (container.get("securityContext") or {}).get(key)
        yield where, value if value is not None else pod_value


def run_as_non_root(spec: Spec) -> list[str]:
    """Restricted: runAsNonRoot is true for every container, at pod or container level."""
    return [f"{where} does not set runAsNonRoot: true"
            for where, value in _pod_then_container(spec, "runAsNonRoot") if value is not True]


def run_as_user(spec: Spec) -> list[str]:
    """Restricted: runAsUser is never 0, at pod or container level."""
    return [f"{where}.runAsUser is 0" for where, ctx in _security_contexts(spec)
            if ctx.get("runAsUser") == 0]


def restricted_seccomp(spec: Spec) -> list[str]:
    """Restricted: every container's effective seccomp profile is RuntimeDefault or Localhost."""
    return [f"{where} has seccomp profile {(value or {}).get('type')}"
            for where, value in _pod_then_container(spec, "seccompProfile")
            if (value or {}).get("type") not in ("RuntimeDefault", "Localhost")]


def restricted_capabilities(spec: Spec) -> list[str]:
    """Restricted: every container drops ALL and adds nothing but NET_BIND_SERVICE."""
    problems = []
    for where, container in _containers(spec):
        caps = (container.get("securityContext") or {}).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{where} does not drop ALL capabilities")
        problems += [f"{where} adds {c}" for c in caps.get("add") or [] if c != "NET_BIND_SERVICE"]
    return problems


RULES: dict[str, Callable[[Spec], list[str]]] = {
    "hostProcess": host_process,
    "hostNamespaces": host_namespaces,
    "privileged": privileged,
    "baselineCapabilities": baseline_capabilities,
    "hostPathVolumes": host_path_volumes,
    "hostPorts": host_ports,
    "seLinux": selinux,
    "procMount": proc_mount,
    "baselineSeccomp": baseline_seccomp,
    "sysctls": sysctls,
    "volumeTypes": volume_types,
    "allowPrivilegeEscalation": privilege_escalation,
    "runAsNonRoot": run_as_non_root,
    "runAsUser": run_as_user,
    "restrictedSeccomp": restricted_seccomp,
    "restrictedCapabilities": restricted_capabilities,
}


def check_restricted(pod_spec: Spec, *, annotations: dict[str, str] | None = None) -> list[str]:
    """Every way `pod_spec` breaks the `restricted` profile; empty when it passes."""
    problems = apparmor(pod_spec, annotations or {})
    for rule in RULES.values():
        problems += rule(pod_spec)
    return problems
