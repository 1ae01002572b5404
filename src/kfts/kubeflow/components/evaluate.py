"""evaluate: score a model on labeled data (what `kfts evaluate` writes), as KFP metrics and an HTML report."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from kfts.kubeflow.components.settings import IMAGE, fail, present


@dsl.component(base_image=IMAGE, install_kfp_package=False, additional_funcs=[fail, present])
def evaluate(
    model: Input[Model],
    data: Input[Dataset],
    metric: str,
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    report: Output[HTML],
    summary: Output[Markdown],
    labels: Input[Dataset] | None = None,
    split: str = "",
    device: str = "auto",
) -> float:
    """Evaluate on `data` (with `labels` when they are a separate file) and return the figure named `metric`
    (a single return, "Output": kfp.local's dsl.If resolves no other task output names).

    evaluation: the directory `kfts evaluate --output-dir` writes (metrics.json, report.html, summary.md), by
    the same library call (kfts.jobs.evaluate.evaluate). `labels`: for data in the inference layout, one label
    per row (class names for inception-time, 0/1 for lstm-ad); inception-time data in the training layout
    carries its labels in its first column. split: the data's name in the pipeline (valid, test, holdout), in
    the report's title.

    metrics: the headline figures, integers as integers. classification: inception-time's confusion matrix
    and one ROC curve (KFP holds one per artifact: for two classes the second class's, else the first's;
    report.html has every class's ROC and precision-recall curve); lstm-ad, when labels are given, its flag
    confusion matrix (normal / anomaly over the scored steps) and the ROC curve of its anomaly score.
    summary: the headline table in Markdown.
    report: report.html, with the split in its title and the provenance (data, model, hyperparameters, kfts
    versions, date).
    """
    import os
    import shutil

    from kfts.core.errors import InputError
    from kfts.core.training import metric_line, use_cpu_share
    from kfts.jobs.evaluate import evaluate as evaluate_model
    from kfts.jobs.evaluate import headline, log_classification

    use_cpu_share()
    names = {data.path: data.metadata.get("source", data.path), model.path: model.uri}
    labels_path = None
    if labels is not None and present(labels):  # present() checks for None too, out of a type checker's sight
        labels_path = labels.path
        names[labels_path] = labels.metadata.get("source", labels_path)
    try:
        result = evaluate_model(
            model.path,
            data.path,
            evaluation.path,
            labels=labels_path,
            device=device,
            split=split or names[data.path],
            names=names,
        )
        if not isinstance(headline(result).get(metric), (int, float)):
            raise InputError(
                f"no metric {metric!r} in the evaluation of this model (it has {', '.join(headline(result))})"
            )
    except InputError as e:
        e.path = names.get(e.path, e.path)
        fail(e)

    for name, value in headline(result).items():
        metrics.log_metric(name, value)
    log_classification(classification, result)
    shutil.copyfile(os.path.join(evaluation.path, "report.html"), report.path)
    shutil.copyfile(os.path.join(evaluation.path, "summary.md"), summary.path)
    print(metric_line(headline(result)))
    return float(result[metric])
