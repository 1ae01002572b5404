"""Settings shared by every component."""

from kfts.kubeflow.images import component_image

# the image every component runs in (images/: the kfts package with torch); tasks placed on a GPU node pool
# get its -cuda twin (kfts.kubeflow.pipelines.common.place)
IMAGE = component_image()


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
