"""Settings shared by every component."""

import os

DEFAULT_IMAGE = "ghcr.io/kfts/kfts:0.1.0"
# the one image every component runs in (images/: the kfts package with torch, CPU or CUDA)
IMAGE = os.environ.get("KFTS_IMAGE") or DEFAULT_IMAGE


def fail(error) -> None:
    """End the task as the CLI ends on bad input: one `error: ...` line on stderr, exit code 2, no traceback."""
    import sys
    print(f"error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def present(artifact) -> bool:
    """Whether an optional input was given (see the package docstring)."""
    return artifact is not None and artifact.metadata.get("present", True)


def mark_absent(artifact) -> None:
    """Make `artifact` the placeholder of an input that was not given: an empty file, present=False."""
    artifact.metadata["present"] = False
    with open(artifact.path, "w"):
        pass
