"""All speed and memory figures of BENCHMARKS.md in one command, printed as a table.

Sections (each measured back to back on this machine, so machine noise hits both sides alike):

* step: ``train.py``'s training step (TrainStep, default callbacks, validation) against a bare
  ``Model.train`` on the same pipeline (``benchmarks/step_overhead.py``);
* wall: exactly the README's ``python train.py --net lenet --epochs N`` (on a pseudo-terminal,
  with its defaults) against the same recipe in PyTorch eager (``benchmarks/torch_lenet.py``,
  when ``torch`` is installed) and in MindSpore written by hand (``benchmarks/ms_loop.py``: a bare
  ``Model.train``, and the tutorial's ``ms.jit`` loop), alternating, with labelled variants of
  the command, the final test accuracy, the peak memory and the time to the first step;
* pipeline: samples/s of the input pipeline alone (``benchmarks/pipeline_throughput.py``) against
  the samples/s training consumes;
* startup: ``train.py --help`` and a configuration error (neither imports MindSpore).

    python benchmarks/run.py --data-dir ../shared/data/mnist-subset --rounds 3

Figures are medians over ``--rounds``; ratios compare medians from the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import ROOT, median, run  # noqa: E402

PY = sys.executable
BENCH = ROOT / "benchmarks"


def step_section(args, tmp: Path) -> list[tuple]:
    out = tmp / "step.json"
    run([PY, str(BENCH / "step_overhead.py"), "--data-dir", str(args.data_dir), "--rounds",
         str(args.rounds), "--epochs", str(max(2, args.epochs)), "--json", str(out)])
    data = json.loads(out.read_text())
    bare = data["bare Model.train"]["median_ms"]
    single = data["Trainer, 1 step/launch"]["median_ms"]
    ours = data["train.py (Trainer)"]["median_ms"]
    args.step_ms = ours
    return [("step", "bare Model.train, same pipeline, one step per launch",
             f"{bare:.2f} ms/step", "1.00"),
            ("step", "train.py's Trainer launching one step at a time (--steps-per-launch 1)",
             f"{single:.2f} ms/step", f"{single / bare:.3f}"),
            ("step", "train.py (TrainStep + default callbacks, auto steps per launch)",
             f"{ours:.2f} ms/step", f"{ours / bare:.3f} (goal <= 1.05)")]


def _test_accuracy(result) -> float:
    """The final test accuracy a command printed (``Test accuracy: X``)."""
    match = re.search(r"^Test accuracy: (\d\.\d+)", result.stdout, re.M)
    return float(match.group(1)) if match else float("nan")


def wall_section(args, tmp: Path) -> list[tuple]:
    """Whole-process wall time of the README's command against its peers, alternating.

    The headline row is exactly ``python train.py --net lenet --epochs N`` with its defaults
    (loss lines every 100 steps, the progress bar on a terminal: its stderr is a
    pseudo-terminal), given only where the data is and where the run goes. Every other row
    is labelled with what it changes.
    """
    have_torch = importlib.util.find_spec("torch") is not None and not args.skip_torch
    n = str(args.epochs)
    readme = [PY, str(ROOT / "train.py"), "--net", "lenet", "--epochs", n,
              "--data-dir", str(args.data_dir), "--output-dir", str(tmp / "runs")]
    probe = ["--callback", "benchmarks.probes:Clock"]
    peers = {"ms-model": [PY, str(BENCH / "ms_loop.py"), "--style", "model", "--data-dir",
                          str(args.data_dir), "--epochs", n]}
    if args.epochs <= args.jit_epochs:  # the tutorial's jit loop is slow: short races only
        peers["ms-jit"] = [PY, str(BENCH / "ms_loop.py"), "--style", "jit", "--data-dir",
                           str(args.data_dir), "--epochs", n]
    if have_torch:
        # The peer imports nothing of MindSpore or the project: the split folders train.py
        # reads are found here, once, and handed over.
        from benchmarks.splits import run_splits

        splits = run_splits(args.data_dir)
        peers["torch"] = [PY, str(BENCH / "torch_lenet.py"), "--data-dir", str(args.data_dir),
                          "--epochs", n, "--splits",
                          *(str(splits[k]) for k in ("train", "val", "test"))]
    if args.no_ms_peers:
        peers = {k: v for k, v in peers.items() if k == "torch"}
    variants = {"quiet": [*readme, "--log-every", "0"], "probe": [*readme, *probe],
                "mindspore-kernels": [*readme, "--kernels", "mindspore"],
                "single": [*readme, "--steps-per-launch", "1"],
                "streaming": [*readme, "--no-data-cache"]}
    commands = {"train.py": (readme, True),
                **{name: (cmd, True) for name, cmd in variants.items() if name in args.variants},
                **{name: (cmd, False) for name, cmd in peers.items()}}
    if args.compare_with:  # another checkout's train.py (e.g. the previous release)
        commands["other"] = ([PY, str(args.compare_with / "train.py"), *readme[2:]], True)
    # The decoded-data cache starts empty: the first run fills it, as a user's first run on
    # this data does, and is reported on its own; the rounds after it read the cache.
    env = {"MSTRAIN_CACHE": str(tmp / "cache")}
    cold = run([*readme, "--run-name", "first-run"], env=env, terminal=True)
    results: dict[str, list] = {name: [] for name in commands}
    for i in range(args.rounds):
        for name, (cmd, terminal) in commands.items():
            named = [*cmd, "--run-name", f"{name}-{i}"] if name in ("train.py", *VARIANTS,
                                                                    "other") else cmd
            results[name].append(run(named, env=env, terminal=terminal))
    results["first"] = [cold]
    base = median([r.wall for r in results["torch"]]) if results.get("torch") else None
    ours = median([r.wall for r in results["train.py"]])
    labels = {"torch": f"PyTorch eager, the same recipe and data ({n} epochs)",
              "train.py": f"python train.py --net lenet --epochs {n} (the README's command)",
              "first": "  the same, first run on this data (fills the decoded-data cache)",
              "quiet": "  variant: --log-every 0 (no loss lines)",
              "probe": "  variant: --callback benchmarks.probes:Clock (reads the first step)",
              "mindspore-kernels": "  variant: --kernels mindspore (MindSpore's operators)",
              "single": "  variant: --steps-per-launch 1 (one graph launch per step)",
              "streaming": "  variant: --no-data-cache (decode every digit every epoch)",
              "ms-model": "MindSpore, a bare Model.train + Model.eval per epoch, tutorial "
                          "pipeline",
              "ms-jit": "MindSpore, the tutorial's loop: value_and_grad + ms.jit step "
                        "(PyNative)",
              "other": f"train.py in {args.compare_with}, the README's command"}
    rows = []
    if not base:
        rows.append(("wall", labels["torch"], "skipped (--skip-torch, or torch is not "
                     "installed: pip install torch==2.13.0)", ""))
    for name in ("torch", "train.py", "first", "quiet", "probe", "mindspore-kernels", "single",
                 "streaming", "ms-model", "ms-jit", "other"):
        runs = results.get(name)
        if not runs:
            continue
        wall = median([r.wall for r in runs])
        ratio = ""
        if base:
            ratio = "1.00" if name == "torch" else f"{wall / base:.2f}"
            if name == "train.py":
                ratio += f" (goal <= {0.6 if args.epochs >= 10 else 0.8})"
        if name in (*VARIANTS, "first"):
            ratio += f"{'; ' if ratio else ''}{wall / ours:.2f} of the command"
        spread = ", ".join(f"{r.wall:.1f}" for r in runs)
        rows.append(("wall", labels[name], f"{wall:.1f} s ({spread})", ratio))
        if name in ("first", "quiet", "single", "streaming"):
            continue
        acc = median([_test_accuracy(r) for r in runs])
        rss = max(r.peak_rss_mb for r in runs)
        rows += [("wall", f"  {name}: final test accuracy", f"{acc:.4f}", ""),
                 ("memory", f"  {name}: peak resident memory", f"{rss:.0f} MB", "")]
        firsts = [r.first("first_step") for r in runs]
        if name != "train.py" and None not in firsts:  # an older checkout may not report it
            rows.append(("wall", f"  {name}: time to the first training step",
                         f"{median(firsts):.2f} s", ""))
    return rows


def pipeline_section(args, tmp: Path) -> list[tuple]:
    out = tmp / "pipe.json"
    run([PY, str(BENCH / "pipeline_throughput.py"), "--data-dir", str(args.data_dir),
         "--epochs", str(max(2, args.rounds)), "--json", str(out)])
    data = json.loads(out.read_text())
    consumed = 32 / args.step_ms * 1000 if getattr(args, "step_ms", None) else None
    rows = []
    if consumed:
        rows.append(("pipeline", "training consumes (batch 32 / step time)",
                     f"{consumed:.0f} samples/s", "1.00"))
    for name in ("cached", "streaming"):
        rate = data[name]["median_samples_per_s"]
        label = ("cached pipeline (default: batches cut from decoded digits)" if name == "cached"
                 else "streaming pipeline (--no-data-cache: MnistDataset, decode per digit)")
        rows.append(("pipeline", label, f"{rate:.0f} samples/s",
                     f"{rate / consumed:.1f}x (goal >= 3)" if consumed else ""))
    return rows


def startup_section(args, tmp: Path) -> list[tuple]:
    help_runs = [run([PY, str(ROOT / "train.py"), "--help"]).wall for _ in range(5)]
    bad_runs = [run([PY, str(ROOT / "train.py"), "--epochs", "0"], check=False).wall
                for _ in range(5)]
    return [("startup", "python train.py --help", f"{median(help_runs):.2f} s", "goal < 0.5 s"),
            ("startup", "a configuration error (--epochs 0)", f"{median(bad_runs):.2f} s",
             "goal < 0.5 s")]


VARIANTS = ("quiet", "probe", "mindspore-kernels", "single", "streaming")
SECTIONS = {"step": step_section, "wall": wall_section, "pipeline": pipeline_section,
            "startup": startup_section}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3, help="repetitions per measurement")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the whole-run race")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--skip-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--no-ms-peers", action="store_true", help="leave out the MindSpore "
                        "scripts written by hand (benchmarks/ms_loop.py)")
    parser.add_argument("--variants", nargs="*", choices=VARIANTS, default=list(VARIANTS),
                        help="variants of the README's command to time beside it (default: "
                        "all)")
    parser.add_argument("--jit-epochs", type=int, default=3, help="race the tutorial's jit "
                        "loop only up to this many epochs (it is slow)")
    parser.add_argument("--compare-with", type=Path, metavar="CHECKOUT",
                        help="also race the train.py of another checkout (e.g. the previous "
                        "release: git worktree add /tmp/before v0.1.0)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    args.data_dir = args.data_dir.resolve()
    if args.compare_with:
        args.compare_with = args.compare_with.resolve()
    rows: list[tuple] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            rows += SECTIONS[name](args, Path(tmp))
    widths = [max(len(str(r[i])) for r in rows + [("what", "", "median", "ratio")])
              for i in range(4)]
    header = ("section", "what", "median", "ratio")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
