"""validate-csv: fetch one input file and check it against the CSV contract; a bad file fails the run here."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from kfts.components.settings import IMAGE, fail, mark_absent


@dsl.component(base_image=IMAGE, install_kfp_package=False, additional_funcs=[fail, mark_absent])
def validate_csv(algorithm: str, uri: str, layout: str, data: Output[Dataset]):
    """Copy `uri` (a path, or any URI pyarrow reads: s3://, gs://, hdfs://) into `data` and validate it.

    layout: training (labels in the first column for inception-time), inference, or labels (a file of
    labels, checked where it is used: against the rows of the file it labels). An empty `uri` is an optional
    input that was not given: `data` becomes a placeholder with metadata present=False.
    """
    import pyarrow.fs

    from kfts import csvio
    from kfts.errors import InputError

    if not uri:
        mark_absent(data)
        return
    # checked here rather than by kfts.algorithms.get, which imports torch: seconds on every input
    if algorithm not in ("inception-time", "lstm-ad"):
        fail(f"unknown algorithm {algorithm!r}: choose inception-time or lstm-ad")
    if layout not in ("training", "inference", "labels"):
        fail(f"layout must be training, inference or labels, not {layout!r}")
    try:
        pyarrow.fs.copy_files(uri, data.path)
    except (OSError, ValueError) as e:  # pyarrow: missing file, unknown scheme, no access
        fail(f"{uri}: cannot be read ({e})")

    data.metadata.update({"present": True, "source": uri, "algorithm": algorithm, "layout": layout})
    try:  # the checks of `kfts validate`
        if layout == "labels":
            pass
        elif algorithm == "inception-time" and layout == "training":
            labeled = csvio.read_labeled_series(data.path)
            data.metadata.update({"rows": len(labeled.values), "length": int(labeled.values.shape[1]),
                                  "classes": sorted(set(labeled.labels.tolist()))})
        elif algorithm == "inception-time":
            values = csvio.read_series_rows(data.path)
            data.metadata.update({"rows": len(values), "length": int(values.shape[1])})
        else:
            values = csvio.read_series_columns(data.path)
            data.metadata.update({"rows": len(values), "columns": int(values.shape[1])})
    except InputError as e:
        e.path = uri  # name the user's file, not the staged copy
        fail(e)
    print(f"ok: {uri}: {data.metadata}")
