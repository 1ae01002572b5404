"""evaluate: score a model on labeled data (what `kfts evaluate` writes), as KFP metrics and an HTML report."""

from typing import Optional

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from kfts.components.settings import IMAGE, fail, present


@dsl.component(base_image=IMAGE, install_kfp_package=False, additional_funcs=[fail, present])
def evaluate(model: Input[Model], data: Input[Dataset], metric: str, evaluation: Output[Artifact],
             metrics: Output[Metrics], classification: Output[ClassificationMetrics], report: Output[HTML],
             summary: Output[Markdown], labels: Optional[Input[Dataset]] = None, split: str = "",
             device: str = "auto") -> float:
    """Evaluate on `data` (with `labels` when they are a separate file) and return the figure named `metric`
    (a single return, "Output": kfp.local's dsl.If resolves no other task output names).

    evaluation: the directory `kfts evaluate --output-dir` writes (metrics.json, report.html). inception-time
    data carries its labels in the first column; for a file of series in the inference layout `labels` holds
    one label per row, and the two are joined into that layout first. lstm-ad `labels` are the 0/1 file of
    the SPEC. split: the data's name in the pipeline (valid, test, holdout), in the report's title.

    metrics: the headline figures, integers as integers. classification: inception-time's confusion matrix
    and one ROC curve (KFP holds one per artifact: for two classes the second class's, else the first's;
    report.html has every class's ROC and precision-recall curve); lstm-ad, when labels are given, its flag
    confusion matrix (normal / anomaly over the scored steps) and the ROC curve of its anomaly score.
    summary: the headline table in Markdown.
    report: report.html, with the split in its title and the provenance (data, model, hyperparameters, kfts
    versions, date).
    """
    import os
    import tempfile
    from kfts.algorithms import load_model
    from kfts.errors import InputError
    from kfts.evaluation import add_provenance, headline, log_classification, provenance, summary_markdown
    from kfts.training import metric_line
    from kfts.validation import read_manifest

    sources = {data.path: data.metadata.get("source", data.path)}
    try:
        estimator = load_model(model.path, device=device)
        input_path, labels_path = data.path, labels.path if present(labels) else None
        if labels_path and estimator.algorithm == "inception-time":
            sources[labels.path] = labels.metadata.get("source", labels.path)
            input_path = os.path.join(tempfile.mkdtemp(), "labeled.csv")
            with open(data.path) as rows, open(labels_path) as label_lines, open(input_path, "w") as out:
                rows, label_lines = rows.read().splitlines(), label_lines.read().splitlines()
                if len(rows) != len(label_lines):
                    raise InputError(f"has {len(label_lines)} labels for the {len(rows)} rows of "
                                     f"{sources[data.path]}", path=sources[labels.path])
                out.writelines(f"{label},{row}\n" for label, row in zip(label_lines, rows))
            labels_path = None
        result = estimator.evaluate(input_path, evaluation.path, labels_path=labels_path)
        if not isinstance(result.get(metric), (int, float)):
            numeric = [k for k, v in result.items() if isinstance(v, (int, float))]
            raise InputError(f"no metric {metric!r} in the evaluation of a {estimator.algorithm} model "
                             f"(it has {', '.join(numeric)})")
    except InputError as e:
        e.path = sources.get(e.path, e.path)
        fail(e)

    origin = provenance(data=sources[data.path], labels=sources.get(labels.path) if present(labels) else None,
                        model=model.uri, manifest=read_manifest(model.path))
    split = split or sources[data.path]
    add_provenance(evaluation.path, split, origin)
    for name, value in headline(result).items():
        metrics.log_metric(name, value)
    log_classification(classification, result)
    with open(os.path.join(evaluation.path, "report.html")) as f:
        html = f.read()
    with open(report.path, "w") as f:
        f.write(html)
    with open(summary.path, "w") as f:
        f.write(summary_markdown(result, split, origin))
    print(metric_line(headline(result)))
    return float(result[metric])
