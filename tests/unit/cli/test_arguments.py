"""What every command does with its arguments before any work: an empty string given for one (a shell variable
left unset) is refused in one line, where it would pass for the option left out or for the working directory."""

from __future__ import annotations

import pytest

from helpers import run_cli, write_csv


@pytest.mark.parametrize(
    "args, message",
    [
        (["promote", "", "{tmp}/champion"], "MODEL_DIR is empty (''): give a value\n"),
        (["copy", "{tmp}/series.csv", ""], "DESTINATION is empty"),
        (["validate", "lstm-ad", ""], "FILE is empty"),
        (["predict", "--model-dir", "{tmp}/m", "--input", "{tmp}/series.csv", "--output", ""], "--output is empty"),
        (
            ["pipeline", "compile", "inception-time", "--gpus", "1", "--accelerator", "", "--output", "{tmp}/p.yaml"],
            "--accelerator is empty (''): give a value, or leave it out for its default\n",
        ),
    ],
)
def test_an_empty_argument_is_refused_in_one_line(tmp_path, args, message):
    write_csv(tmp_path / "series.csv", [[1, 2], [3, 4]])
    result = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode == 2 and result.stderr.startswith(f"error: {message}"), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series.csv"]  # nothing written


def test_an_option_whose_default_is_empty_may_be_given_empty(tmp_path):
    # --storage-secret '' is what leaving it out gives: none
    result = run_cli("pipeline", "compile", "lstm-ad", "--storage-secret", "", "--output", tmp_path / "p.yaml")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "p.yaml").is_file()
