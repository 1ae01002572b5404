"""validate-csv: fetch one input file and check it against the CSV contract; check-inputs: check the inputs
against each other. A bad file fails the run at one of them, before training (which waits on check-inputs)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from kfts.kubeflow.components.settings import IMAGE, fail, mark_absent, present


@dsl.component(base_image=IMAGE, install_kfp_package=False, additional_funcs=[fail, mark_absent])
def validate_csv(algorithm: str, uri: str, layout: str, data: Output[Dataset]):
    """Copy `uri` (a path, or a URI kfts.core.storage reads: s3://, minio://, gs://, hdfs://) into `data` and
    validate it alone.

    layout: training (as the algorithm trains on it: for inception-time with labels in the first column),
    inference, or labels (one label per row). `data`'s metadata is the file's summary
    (kfts.jobs.validate.describe: rows, length or columns, classes), which check-inputs compares. An empty `uri` is an
    optional input that was not given: `data` becomes a placeholder with metadata present=False.
    """
    from kfts.algorithms import spec
    from kfts.core import storage
    from kfts.core.errors import InputError
    from kfts.jobs import validate as validation

    if not uri:
        mark_absent(data)
        return
    try:
        spec(algorithm)  # cheap: the registry imports no torch
    except InputError as e:
        fail(e)
    try:
        storage.copy(uri, data.path)
        summary = validation.describe(algorithm, data.path, layout, source=uri)
    except InputError as e:
        fail(e)
    data.metadata.update({"present": True, **summary})
    print(f"ok: {uri}: {summary.get('rows')} rows")


@dsl.component(base_image=IMAGE, install_kfp_package=False, additional_funcs=[fail, present])
def check_inputs(
    algorithm: str,
    train: Input[Dataset],
    valid: Input[Dataset],
    test: Input[Dataset],
    test_labels: Input[Dataset],
    test_name: str = "test",
):
    """The validated inputs against each other (kfts.jobs.validate.check, on the summaries validate-csv kept):
    series lengths or column counts equal to the training data's, label files with one label per row of the
    file they label, no class the training data lacks. test_name: what the pipeline calls `test` (the
    retraining pipeline's holdout data)."""
    from kfts.core.errors import InputError
    from kfts.jobs import validate as validation

    given = {"train": train, "valid": valid, test_name: test, test_name + validation.LABELS_SUFFIX: test_labels}
    # KFP metadata holds every number as a float: the counts back as integers, for messages that read right
    summaries = {
        name: {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in d.metadata.items()}
        for name, d in given.items()
        if present(d)
    }
    try:
        validation.check(algorithm, summaries)
    except InputError as e:
        fail(e)
    print(f"ok: {', '.join(summaries)} agree")
