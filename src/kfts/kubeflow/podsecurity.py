"""The security settings of every pod kfts renders (InferenceService, serving and training runtimes, TrainJob),
so that a namespace enforcing Pod Security "restricted" admits them: a non-root user, no privilege escalation,
no capabilities, the runtime's default seccomp profile, and a read-only root filesystem with an emptyDir at
/tmp for what must be written (the images point HOME caches there: MPLCONFIGDIR, XDG_CACHE_HOME).
"""

from __future__ import annotations

from collections.abc import Iterable

USER = 1000  # the images' user: images/Dockerfile creates uid 1000 and runs as USER 1000:1000
SCRATCH = {"name": "tmp", "emptyDir": {}}
SCRATCH_MOUNT = {"name": "tmp", "mountPath": "/tmp"}


def pod_context() -> dict:
    """Pod-level: also covers the containers others add to the pod (KServe's storage initializer)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": USER,
        "runAsGroup": USER,
        "fsGroup": USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_context() -> dict:
    """Container-level: complete on its own, for specs with no pod-level field (a ServingRuntime's)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": USER,
        "runAsGroup": USER,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def harden(container: dict, mounts: Iterable[dict] = ()) -> dict:
    """`container` with the security context and the /tmp mount (plus `mounts`)."""
    return {
        **container,
        "securityContext": container_context(),
        "volumeMounts": [dict(SCRATCH_MOUNT), *map(dict, mounts)],
    }
