"""Every input of a job checked alone and against the others before any work (training above all) starts.

describe() reads one file in its layout and sums it up (rows, time steps or columns, classes); check() compares
the summaries with each other and with a trained model: the shapes each algorithm needs to agree (its
check_shape(): series lengths, column counts), a label file with one label per row of the file it labels, no
class the training data (or the model) lacks, and the layout a file was given in, with a hint when it looks
like the other one.

Used by `kfts train/predict/evaluate` (kfts.cli) and, on the summaries the validate-csv tasks keep as their
Dataset's metadata, by the pipelines' check-inputs task that training waits on
(src/kfts/kubeflow/components/validate_csv.py). Summaries are plain JSON (they travel as KFP metadata); torch is never
imported here.
"""

from __future__ import annotations

import os

from kfts.core.errors import InputError, shown

LAYOUTS = ("training", "inference", "labels")
LABELS_SUFFIX = "_labels"  # "test_labels" labels the rows of "test"


def describe(
    algorithm: str, path: str | os.PathLike, layout: str, *, source: str | None = None, head: bool = False
) -> dict:
    """Read `path` in `layout` (training: as fit() takes it; inference: series only; labels: one label per row)
    and return its summary (the algorithm's describe(), kfts.algorithms.base). `source` is the file's name for
    the user (a URI, when `path` is a staged copy); errors name it. head: read only the first block of rows
    of an inference file (its shape, no row count), for batch prediction, which streams files of any size and
    checks the rest as it goes."""
    from kfts.algorithms import spec

    chosen = spec(algorithm)
    source = os.fspath(source or path)
    if layout not in LAYOUTS:
        raise InputError(f"layout must be {', '.join(LAYOUTS)}, not {layout!r}")
    try:
        summary = chosen.describe(path, layout, head)
    except InputError as e:
        if e.path == os.fspath(path):
            e.path = source
        raise
    return {"source": source, "layout": layout, "algorithm": algorithm, **summary}


def model_summary(manifest: dict) -> dict:
    """What check() compares inputs with, from a model's kfts-model.json (kfts.core.artifact)."""
    shape = manifest.get("input_shape", {})
    summary = {"source": "the model", "algorithm": manifest.get("algorithm")}
    if "length" in shape:
        summary["length"] = shape["length"]
    if "series" in shape:
        summary["columns"] = shape["series"]
    if "classes" in manifest:
        summary.update(classes=list(manifest["classes"]), n_classes=len(manifest["classes"]))
    return summary


def check(algorithm: str, inputs: dict[str, dict], model: dict | None = None) -> None:
    """Compare the summaries of a job's inputs (name -> describe(), absent inputs left out) with each other
    and with `model` (model_summary()). The reference is the training data ("train") when there is one, else
    the model. Raises the first mismatch as an InputError naming the file."""
    from kfts.algorithms import spec

    chosen = spec(algorithm)
    reference = inputs.get("train") or model
    if "train" in inputs:
        chosen.check_training(inputs["train"])
    for name, summary in inputs.items():
        if name.endswith(LABELS_SUFFIX):
            labelled = inputs.get(name.removesuffix(LABELS_SUFFIX))
            if labelled is None:
                raise InputError(
                    f"labels the rows of a file that was not given ({name.removesuffix(LABELS_SUFFIX)})",
                    path=summary["source"],
                )
            if labelled.get("layout") == "training" and chosen.labeled_layout:
                raise InputError(
                    f"{labelled['source']} carries its labels in its first column (the labeled "
                    "layout): give no separate labels, or give the series alone",
                    path=summary["source"],
                )
            if labelled["rows"] is not None and summary["rows"] != labelled["rows"]:
                raise InputError(
                    f"has {summary['rows']} labels for the {labelled['rows']} rows of {labelled['source']}",
                    path=summary["source"],
                )
        if reference is None or summary is reference:
            continue
        if summary["layout"] != "labels":
            against = "the model was trained on" if "layout" not in reference else f"{reference['source']} has"
            chosen.check_shape(summary, reference, against)
        _known_classes(summary, reference)


def _known_classes(summary: dict, reference: dict) -> None:
    if "classes" not in summary or "classes" not in reference:
        return
    unseen = sorted(set(summary["classes"]) - set(reference["classes"]))
    if unseen:
        more = f" (and {len(unseen) - 1} more)" if len(unseen) > 1 else ""
        raise InputError(
            f"class {shown(unseen[0])}{more} is not among the classes of {reference['source']} "
            f"({_listed(reference['classes'])})",
            path=summary["source"],
        )


def _listed(classes: list[str], limit: int = 200) -> str:
    """Class names for a message, cut to about `limit` characters: a file may hold thousands, each long."""
    text = ", ".join(classes)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(classes):,} classes)"


def check_files(
    algorithm: str,
    files: dict[str, tuple[str | os.PathLike | None, str]],
    *,
    model: dict | None = None,
    head: bool = False,
) -> dict[str, dict]:
    """describe() every given file (name -> (path or None, layout)) and check() them together, against
    `model` (a kfts-model.json, read_checked_manifest()) when given: what `kfts train/predict/evaluate` run
    before any work. head: see describe()."""
    summaries = {name: describe(algorithm, path, layout, head=head) for name, (path, layout) in files.items() if path}
    check(algorithm, summaries, model_summary(model) if model is not None else None)
    return summaries


def read_checked_manifest(model_dir: str | os.PathLike) -> dict:
    """A model's kfts-model.json (kfts.core.manifest.read_manifest: JSON only, without importing torch), its
    fields checked by its algorithm (Algorithm.check_manifest): refused with an InputError naming the field
    before anything compares files with it or shows it."""
    from pathlib import Path

    from kfts.algorithms import spec
    from kfts.core.manifest import MANIFEST, read_manifest

    manifest = read_manifest(model_dir)
    path = Path(model_dir) / MANIFEST
    if not isinstance(manifest.get("algorithm"), str):
        raise InputError("has no algorithm: not a kfts model", path=path)
    spec(manifest["algorithm"]).check_manifest(manifest, path)
    return manifest
