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


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["train", "inception-time", "--help"],
                                  ["validate", "lstm-ad", "{csv}"]], ids=" ".join)
def test_these_commands_import_neither_torch_nor_kfp(args, tmp_path):
    write_csv(tmp_path / "series.csv", [[1, 2], [3, 4]])
    args = [a.replace("{csv}", str(tmp_path / "series.csv")) for a in args]
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
    assert result.stderr.splitlines()[-1] == "heavy: []", result.stderr
