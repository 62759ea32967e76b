"""``predict.py`` and ``mstrain predict``: the digits in users' images, with a trained checkpoint.

Nothing here imports MindSpore until the arguments are parsed and the images are read, so
``--help`` and mistakes in the inputs answer at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from trainer.cli.parser import UserParser, run_reporting_errors
from trainer.device import DEVICES, MODES
from trainer.errors import ConfigError
from trainer.serving.predict import (
    Inputs,
    Preparation,
    collect_inputs,
    predict_probabilities,
)

EPILOG = """examples:
  python predict.py --ckpt runs/demo my_digit.png photo.jpg
  python predict.py --ckpt runs/demo scans/ --json > predictions.json
  python predict.py --ckpt runs/demo data/mnist/test/t10k-images-idx3-ubyte \\
      --labels data/mnist/test/t10k-labels-idx1-ubyte          # prints the accuracy too
  python predict.py --ckpt model.ckpt --net mlp digit.png       # a plain MindSpore checkpoint
"""


# Inputs of more images than this (an IDX file holds thousands) print only the first lines and a
# summary unless --all is given; --json always keeps every prediction.
LONG_INPUT = 20
SHOWN_LINES = 10


def build_parser(prog: str = "predict.py") -> argparse.ArgumentParser:
    """The argument parser of ``predict.py``."""
    parser = UserParser(prog=prog, usage="%(prog)s --ckpt PATH [options] INPUT [INPUT ...]",
                     description="Predict the classes of images with a trained checkpoint. For a "
                     "model of digits, images of any size and colour are brought to MNIST's "
                     "convention first; other images are converted to the model's channels and "
                     "size.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files (PNG, JPEG, "
                        "BMP, GIF, TIFF, WebP, PGM), folders of them, or an IDX images file (raw "
                        "or .gz)")
    parser.add_argument("--ckpt", required=True, metavar="PATH", help="checkpoint: a .ckpt, a "
                        "latest.json, or a run directory (its best.ckpt)")
    parser.add_argument("--net", metavar="NAME", help="network to build (default: the one the "
                        "checkpoint records; lenet for a plain MindSpore checkpoint)")
    parser.add_argument("--labels", metavar="FILE", help="IDX labels for an IDX images input; the "
                        "accuracy is printed as well")
    parser.add_argument("--top", type=int, default=3, metavar="K", help="classes shown per image "
                        "(default: 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of "
                        "text, with every prediction")
    parser.add_argument("--all", action="store_true", help=f"print a line for every image (by "
                        f"default, inputs of more than {LONG_INPUT} images show the first "
                        f"{SHOWN_LINES} and a summary)")
    parser.add_argument("--batch-size", type=int, default=256, metavar="N", help="images per "
                        "network call (default: 256)")
    parser.add_argument("--device", default="CPU", choices=DEVICES,
                        help="device target (default: CPU)")
    parser.add_argument("--mode", default="graph", choices=MODES,
                        help="graph compiles the network once (faster from a few hundred "
                        "images on); pynative runs op by op (default: graph)")
    return parser


def _report(inputs: Inputs, probs: np.ndarray, top: int, ckpt: str, net: str,
            name_of=str) -> dict[str, Any]:
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top]
    rows = []
    for i, name in enumerate(inputs.names):
        row: dict[str, Any] = {"input": name, "top": [
            {"class": int(k), "name": name_of(int(k)), "probability": float(probs[i, k])}
            for k in order[i]]}
        if inputs.labels is not None:
            row["label"] = int(inputs.labels[i])
            row["label_name"] = name_of(int(inputs.labels[i]))
        if i in inputs.blank:
            row["blank"] = True  # no digit in the picture: the classes mean nothing
        rows.append(row)
    report: dict[str, Any] = {"checkpoint": ckpt, "net": net, "count": len(rows),
                              "predictions": rows}
    if inputs.labels is not None:
        correct = int((order[:, 0] == inputs.labels).sum())
        report.update(correct=correct, accuracy=correct / len(rows) if rows else None)
    return report


def _line(row: dict[str, Any]) -> str:
    shown = "  ".join(f"{t.get('name', t['class'])} ({t['probability']:.3f})"
                      for t in row["top"])
    if "label" in row:
        mark = "" if row["top"][0]["class"] == row["label"] else "  wrong"
        shown += f"  label {row.get('label_name', row['label'])}{mark}"
    if row.get("blank"):
        shown += "  (blank image: no digit found)"
    return f"{row['input']}: {shown}"


def _print_text(report: dict[str, Any], every: bool = False) -> None:
    """The predictions as text: a line per image, or for a long input (more than
    :data:`LONG_INPUT` images, without ``every``) the first lines and a summary."""
    rows = report["predictions"]
    shown = rows if every or len(rows) <= LONG_INPUT else rows[:SHOWN_LINES]
    lines = [_line(row) for row in shown]
    if len(shown) < len(rows):
        lines.append(f"... and {len(rows) - len(shown):,} more images (--all prints a line for "
                     "each; --json gives every prediction)")
        counts = Counter((row["top"][0]["class"], row["top"][0].get("name",
                                                                  row["top"][0]["class"]))
                         for row in rows)
        lines.append("Predicted classes: " + ", ".join(
            f"{name}: {counts[k, name]:,}" for k, name in sorted(counts)))
        blank = sum(1 for row in rows if row.get("blank"))
        if blank:
            lines.append(f"Blank images (no digit found): {blank:,}")
        wrong = [row["input"] for row in rows
                 if "label" in row and row["top"][0]["class"] != row["label"]]
        if wrong:
            more = ", ..." if len(wrong) > 3 else ""
            lines.append(f"Wrong: {len(wrong):,} ({', '.join(wrong[:3])}{more})")
    if "accuracy" in report:
        lines.append(f"Accuracy: {report['accuracy']:.4f} ({report['correct']}/"
                     f"{report['count']})")
    print("\n".join(lines))


def main(argv: Sequence[str] | None = None, prog: str = "predict.py") -> int:
    """Runs ``predict.py``; returns the exit status (0, or 2 for a user's mistake)."""

    def command() -> None:
        args = build_parser(prog).parse_args(argv)
        for flag, value, high in (("--top", args.top, 10_000), ("--batch-size", args.batch_size,
                                                                    65_536)):
            if not 1 <= value <= high:
                raise ConfigError(f"{flag} is {value}; it must be from 1 to {high}.")
        # Read as digits first, so mistakes in the inputs answer before MindSpore starts; a
        # model of other images reads them again as it takes them.
        inputs = collect_inputs(args.inputs, args.labels)
        from trainer.logs import setup_logging
        from trainer.serving.loading import load_network

        setup_logging(to_stderr=True)  # standard output is the predictions
        loaded = load_network(args.ckpt, net=args.net, device=args.device, mode=args.mode)
        preparation = Preparation.of(loaded)
        if not preparation.digits:
            inputs = collect_inputs(args.inputs, args.labels, preparation)
        for i in sorted(inputs.blank):
            print(f"warning: {inputs.names[i]} holds no digit (blank, or no contrast); its "
                  "prediction means nothing.", file=sys.stderr)
        probs = predict_probabilities(loaded.cell, inputs.images, loaded.image_size,
                                      args.batch_size, loaded.normalisation)
        report = _report(inputs, probs, min(args.top, probs.shape[1]), str(loaded.bundle.path),
                         loaded.net, loaded.class_name)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            _print_text(report, every=args.all)

    return run_reporting_errors(command)

