"""benchmarks/sources.py on tiny generated data: each source's files written in its real format,
trained for one epoch by train.py's main (in this process), one row each in the table."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.conftest import train_here

pytestmark = pytest.mark.e2e


def _run_here(cwd: Path, calls: list):
    """benchmarks.harness.run for train.py's commands, run by train.py's main in this process."""
    from benchmarks.harness import Result

    def run(cmd, env=None, cwd_=None, check=True, terminal=False):
        calls.append(cmd)
        assert Path(cmd[1]).name == "train.py"
        start = time.perf_counter()
        result = train_here(cmd[2:], cwd, env)
        assert result.returncode == 0, result.stderr[-3000:]
        return Result(time.perf_counter() - start, 0.0, 0, result.stdout, result.stderr)

    return run


def test_one_row_per_source_from_files_in_its_real_format(tmp_path, monkeypatch, capsys):
    import benchmarks.sources as bench

    calls: list = []
    monkeypatch.setattr(bench, "run", _run_here(tmp_path, calls))
    monkeypatch.setattr(bench, "build_kernels", lambda env: "kernels not needed by mlp")
    monkeypatch.setenv("MSTRAIN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "rows.json"
    # mlp, given after --, replaces each row's network: the cheapest to compile.
    assert bench.main(["--sources", "cifar10", "fashion-mnist", "--epochs", "1",
                       "--train-size", "60", "--test-size", "20", "--cifar-train", "60",
                       "--cifar-test", "20", "--json", str(out), "--", "--net", "mlp",
                       "--batch-size", "10"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| source | command |") and len(table) == 4
    rows = json.loads(out.read_text())
    assert [r["source"] for r in rows] == ["cifar10", "fashion-mnist"]
    for row, line in zip(rows, table[2:]):
        assert 0.0 <= row["test_accuracy"] <= 1.0 and row["epoch_seconds"] > 0
        assert len(row["epoch_times"]) == 1 and row["command_seconds"] > 0
        assert line.startswith(f"| {row['source']} | `python train.py --data-source "
                               f"{row['source']} --data-dir TMP/data/{row['source']} ")
    assert "--net resnet20" in rows[0]["command"] and "--net lenet" in rows[1]["command"]
    assert re.search(r"60 \+ 20 generated .*cifar-10-binary\.tar\.gz", rows[0]["data"])
    assert "28x28x1, IDX .gz" in rows[1]["data"]
    # The data went into the script's own temporary folder, removed when it ended.
    data_dirs = [Path(c[c.index("--data-dir") + 1]) for c in calls]
    assert all(not d.exists() and d.parts[-2] == "data" for d in data_dirs)
