"""Training throughput of one process against msrun data-parallel workers on the same machine.

Each round runs ``train.py`` once in one process and once under ``msrun`` with ``--workers``
workers (``--distributed``), alternating, with the same options. Throughput is read from the loss
monitor's "Epoch time: ... per step time: X ms" lines (training only, validation excluded), for
the epochs after the first (graph compilation): samples/s = batch size x workers / step time.
Also printed: the validation time of an epoch (every worker validates on the whole test split) and
the whole command's wall time (start-up, compilation, validation). Medians over rounds.

    python benchmarks/data_parallel.py --data-dir ../shared/data/mnist-subset --epochs 3

Run it on a quiet machine: the workers share its cores with everything else.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STEP = re.compile(r"^Epoch time: ([\d.]+) ms, per step time: ([\d.]+) ms", re.M)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(work: Path, workers: int, args: list[str], name: str) -> dict[str, list[float]]:
    """One run: per-step times (ms), validation times (s) of each epoch, and the wall time (s)."""
    env = {**os.environ, "GLOG_v": "3", "PYTHONUNBUFFERED": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    train = [str(ROOT / "train.py"), *args, "--run-name", name]
    if workers == 0:
        cmd = [sys.executable, *train]
    else:
        cmd = [str(BIN / "msrun"), f"--worker_num={workers}", f"--local_worker_num={workers}",
               f"--master_port={_free_port()}", "--join=True", "--log_dir=logs",
               train[0], *train[1:], "--distributed"]
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    out = result.stdout if workers == 0 else (work / "logs" / "worker_0.log").read_text()
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
    epochs = [(float(epoch_ms), float(step_ms)) for epoch_ms, step_ms in STEP.findall(out)]
    rows = json.loads((work / "runs" / name / "history.json").read_text())["rows"]
    # history's epoch_time includes validation; the loss monitor's epoch time does not.
    valid = [row["epoch_time"] - epoch_ms / 1000 for row, (epoch_ms, _) in zip(rows, epochs)]
    return {"step_ms": [step for _, step in epochs][1:], "valid_s": valid[1:], "wall_s": [wall]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        args = ["--data-dir", str(Path(opts.data_dir).resolve()), "--no-download",
                "--epochs", str(opts.epochs), "--batch-size", str(opts.batch_size),
                "--log-every", "0", "--no-plot", "--no-progress", "--save-every-epochs", "0",
                "--no-save-best", "--output-dir", "runs"]
        results: dict[int, dict[str, list[float]]] = {}
        for round_ in range(opts.rounds):
            for workers in (0, opts.workers):
                # The first epoch compiles the graph and is left out.
                measured = run(work, workers, args, f"r{round_}w{workers}")
                per = results.setdefault(workers, {"step_ms": [], "valid_s": [], "wall_s": []})
                for key, values in measured.items():
                    per[key] += values
        print(f"{'':28s}{'step ms':>10s}{'samples/s':>12s}{'valid s':>10s}{'wall s':>10s}")
        throughput = {}
        for workers, per in results.items():
            step = statistics.median(per["step_ms"])
            global_batch = opts.batch_size * max(workers, 1)
            throughput[workers] = global_batch / step * 1000
            label = "one process" if workers == 0 else f"msrun, {workers} workers"
            print(f"{label + f' (batch {global_batch})':28s}{step:10.2f}"
                  f"{throughput[workers]:12.0f}{statistics.median(per['valid_s']):10.2f}"
                  f"{statistics.median(per['wall_s']):10.1f}")
        print(f"throughput ratio ({opts.workers} workers / one process): "
              f"{throughput[opts.workers] / throughput[0]:.2f}")


if __name__ == "__main__":
    main()
