"""Pod Security Standards, "restricted" profile: the rules a namespace labelled
pod-security.kubernetes.io/enforce=restricted applies to every pod, as Kubernetes states them
(https://kubernetes.io/docs/concepts/security/pod-security-standards/, policy version "latest": the Baseline
rules plus the Restricted ones), checked on a pod spec as a dict. Shared by the tests of everything kfts
renders (InferenceService, serving and training runtimes, TrainJob, Katib trials, pipeline tasks):

    assert restricted_violations(pod_spec) == []
    assert hardening_violations(pod_spec) == []      # kfts's own rules on top: read-only root, resources

`pod_specs(manifest)` finds the pod specs inside a manifest (any mapping with a `containers` list: a
ServingRuntime's spec, an InferenceService's predictor, a Job's or a JobSet's pod templates, a Katib trial).
"""

from __future__ import annotations

# Restricted: only these volume types
ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
# Baseline: the sysctls a pod may set; SELinux types a pod may ask for
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {None, "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def restricted_violations(pod: dict) -> list[str]:
    """What in `pod` (a PodSpec as a dict) the restricted profile forbids: one line per violation."""
    context = pod.get("securityContext") or {}
    containers = [
        (f"{field}[{c.get('name')}]", c, c.get("securityContext") or {})
        for field in CONTAINER_LISTS
        for c in pod.get(field) or []
    ]
    found = [f"{field}: true" for field in ("hostNetwork", "hostPID", "hostIPC") if pod.get(field)]
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            found.append(f"volume {volume.get('name')}: type {', '.join(sorted(kinds - ALLOWED_VOLUMES))}")
    found += [f"sysctl {s.get('name')}" for s in context.get("sysctls") or [] if s.get("name") not in SAFE_SYSCTLS]
    found += _common(context, "pod")
    if context.get("runAsNonRoot") is not True and not all(c.get("runAsNonRoot") is True for *_, c in containers):
        found.append("runAsNonRoot is not true for the pod nor for every container")
    pod_seccomp = (context.get("seccompProfile") or {}).get("type")
    for where, container, security in containers:
        found += _common(security, where)
        if security.get("privileged"):
            found.append(f"{where}: privileged")
        if security.get("runAsNonRoot") is False:
            found.append(f"{where}: runAsNonRoot false")
        if security.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}: allowPrivilegeEscalation is not false")
        capabilities = security.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{where}: capabilities do not drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"{where}: adds capabilities {sorted(set(capabilities['add']) - {'NET_BIND_SERVICE'})}")
        if security.get("procMount", "Default") != "Default":
            found.append(f"{where}: procMount {security['procMount']}")
        if (security.get("seccompProfile") or {}).get("type") is None and pod_seccomp is None:
            found.append(f"{where}: no seccompProfile, neither its own nor the pod's")
        found += [f"{where}: hostPort {p['hostPort']}" for p in container.get("ports") or [] if p.get("hostPort")]
    return found


def _common(security: dict, where: str) -> list[str]:
    """The rules that read the same at pod and at container level."""
    found = []
    if security.get("runAsUser") == 0:
        found.append(f"{where}: runAsUser 0")
    if (security.get("seccompProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
        found.append(f"{where}: seccompProfile {security['seccompProfile']['type']}")
    if (security.get("windowsOptions") or {}).get("hostProcess"):
        found.append(f"{where}: windowsOptions.hostProcess")
    if (security.get("appArmorProfile") or {}).get("type") == "Unconfined":
        found.append(f"{where}: appArmorProfile Unconfined")
    selinux = security.get("seLinuxOptions") or {}
    if selinux.get("type") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
        found.append(f"{where}: seLinuxOptions {selinux}")
    return found


def hardening_violations(pod: dict) -> list[str]:
    """kfts's rules beyond the profile: every container has a read-only root filesystem and requests and
    limits of CPU and memory."""
    found = []
    for field in CONTAINER_LISTS:
        for container in pod.get(field) or []:
            where = f"{field}[{container.get('name')}]"
            if (container.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
                found.append(f"{where}: readOnlyRootFilesystem is not true")
            resources = container.get("resources") or {}
            found += [
                f"{where}: no {kind} {resource}"
                for kind in ("requests", "limits")
                for resource in ("cpu", "memory")
                if resource not in (resources.get(kind) or {})
            ]
    return found


def pod_specs(manifest) -> list[tuple[str, dict]]:
    """(path, pod spec) for every mapping in `manifest` with a `containers` list."""
    found = []

    def walk(node, path):
        if isinstance(node, dict):
            if isinstance(node.get("containers"), list):
                found.append((path or ".", node))
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(manifest, "")
    return found
