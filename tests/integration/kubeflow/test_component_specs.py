"""The YAML component specs under components/ as a user outside kfts uses them: loaded with kfp's
load_component_from_file (kfp 2.17, kfp/components/load_yaml_utilities.py) into a pipeline of their own and
run with kfp.local. (No `from __future__ import annotations` here: kfp reads the pipeline's annotations as types.)"""

import json

import pytest
from kfp import dsl, local
from kfp.components import load_component_from_file

from helpers import ROOT, write_csv


def test_a_pipeline_of_ones_own_runs_the_validate_csv_spec(tmp_path):
    validate_csv = load_component_from_file(str(ROOT / "components" / "validate_csv.yaml"))

    @dsl.pipeline
    def check(uri: str):
        validate_csv(algorithm="lstm-ad", uri=uri, layout="inference")

    write_csv(tmp_path / "series.csv", [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"), raise_on_error=True)
    check(uri=str(tmp_path / "series.csv"))
    [output] = (tmp_path / "root").rglob("executor_output.json")
    metadata = json.loads(output.read_text())["artifacts"]["data"]["artifacts"][0]["metadata"]
    assert metadata["present"] is True and metadata["rows"] == 3 and metadata["columns"] == 2

    write_csv(tmp_path / "bad.csv", [[1.0, 2.0], [3.0, "x"]])
    with pytest.raises(RuntimeError):  # the step fails the run, as validate-csv does in kfts's own pipelines
        check(uri=str(tmp_path / "bad.csv"))
