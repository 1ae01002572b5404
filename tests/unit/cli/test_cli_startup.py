"""The command line starts without torch or kfp: `kfts --version`, `--help` and `validate` answer in a
fraction of a second, and so does a pod's health check that runs them."""

import subprocess
import sys

import pytest

from helpers import write_csv

PROBE = """
import sys
from kfts.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("heavy:", sorted(m for m in ("torch", "kfp", "kserve") if m in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "args",
    [["--version"], ["--help"], ["train", "inception-time", "--help"], ["validate", "lstm-ad", "{csv}"]],
    ids=" ".join,
)
def test_these_commands_import_neither_torch_nor_kfp(args, tmp_path):
    write_csv(tmp_path / "series.csv", [[1, 2], [3, 4]])
    args = [a.replace("{csv}", str(tmp_path / "series.csv")) for a in args]
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
    assert result.stderr.splitlines()[-1] == "heavy: []", result.stderr


MISSING = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # as if not installed: importing it raises ModuleNotFoundError
from kfts.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize(
    "missing,args,extra",
    [
        ("kserve", ["serve", "--model-dir", "{dir}"], "serve"),
        ("kfp", ["pipeline", "compile", "lstm-ad", "--output", "{dir}/p.yaml"], "kubeflow"),
        (
            "docker",
            ["pipeline", "run", "lstm-ad", "--containers", "--train", "{dir}/s.csv", "--output-dir", "{dir}/r"],
            "kubeflow",
        ),
    ],
    ids=["serve", "compile", "run --containers"],
)
def test_a_command_whose_extra_is_not_installed_says_which_to_install(missing, args, extra, tmp_path):
    """A core install (`pip install kfts`) has neither KServe nor kfp nor docker: the commands that need one
    end in one line naming the extra, exit 2, and the others still start (tests/integration/packaging/test_wheel.py runs
    them)."""
    write_csv(tmp_path / "s.csv", [[1, 2], [3, 4]])
    args = [a.replace("{dir}", str(tmp_path)) for a in args]
    result = subprocess.run(
        [sys.executable, "-c", MISSING, missing, *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"error: kfts {args[0]} needs the {extra} extra ({missing} is not installed): pip install 'kfts[{extra}]'\n"
    )
