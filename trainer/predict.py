"""Read digits from your own images with a trained checkpoint.

``python predict.py --ckpt runs/demo photo.jpg scans/ t10k-images-idx3-ubyte.gz`` prints the three
most likely classes of every image. Images of any size and colour are first brought to MNIST's
convention, the way the MNIST digits themselves were made: grayscale, light digit on a dark
background (a light background is detected from the border and inverted), cropped to the digit,
scaled to fit a 20x20 box keeping the aspect ratio, and pasted into 28x28 with the centre of mass
in the middle. Then the training pipeline's own per-image operations
(:func:`trainer.data.image_transforms`) turn them into network inputs. IDX files hold MNIST-style
digits already and skip the first step.

Nothing here imports MindSpore until the arguments are parsed and the images are read, so
``--help`` and mistakes in the inputs answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.cli import UserParser, run_reporting_errors
from trainer.errors import ConfigError, DataError
from trainer.idx import IMAGE_SIZE

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm",
                  ".ppm", ".pbm", ".pnm")
_IDX_IMAGES_MAGIC = b"\x00\x00\x08\x03"  # unsigned bytes, 3 dimensions
_GZIP_MAGIC = b"\x1f\x8b"
# MNIST's digits were scaled to fit a 20x20 box and centred by mass in 28x28; the mean centre of
# mass of the real test digits is (14.0, 14.0) in pixel-index coordinates.
_BOX = 20
_CENTRE = 14.0
# Share of the strongest ink a pixel needs to count for the bounding box, and below which it is
# treated as background (paper texture, JPEG noise, shadows).
_INK = 0.25
_FLOOR = 0.08

EPILOG = """examples:
  python predict.py --ckpt runs/demo my_digit.png photo.jpg
  python predict.py --ckpt runs/demo scans/ --json > predictions.json
  python predict.py --ckpt runs/demo data/mnist/test/t10k-images-idx3-ubyte \\
      --labels data/mnist/test/t10k-labels-idx1-ubyte          # prints the accuracy too
  python predict.py --ckpt model.ckpt --net mlp digit.png       # a plain MindSpore checkpoint
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``predict.py``."""
    parser = UserParser(prog="predict.py", usage="%(prog)s --ckpt PATH [options] INPUT [INPUT ...]",
                     description="Predict the digits in images with a trained checkpoint. Images "
                     "of any size and colour are brought to MNIST's convention first.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files (PNG, JPEG, "
                        "BMP, GIF, TIFF, WebP, PGM), folders of them, or an IDX images file (raw "
                        "or .gz)")
    parser.add_argument("--ckpt", required=True, metavar="PATH", help="checkpoint: a .ckpt, a "
                        "latest.json or a run directory")
    parser.add_argument("--net", metavar="NAME", help="network to build (default: the one the "
                        "checkpoint records; lenet for a plain MindSpore checkpoint)")
    parser.add_argument("--labels", metavar="FILE", help="IDX labels for an IDX images input; the "
                        "accuracy is printed as well")
    parser.add_argument("--top", type=int, default=3, metavar="K", help="classes shown per image "
                        "(default: 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of "
                        "text")
    parser.add_argument("--batch-size", type=int, default=256, metavar="N", help="images per "
                        "network call (default: 256)")
    parser.add_argument("--device", default="CPU", choices=("CPU", "GPU", "Ascend"),
                        help="device target (default: CPU)")
    parser.add_argument("--mode", default="graph", choices=("graph", "pynative"),
                        help="graph compiles the network once (faster from a few hundred "
                        "images on); pynative runs op by op (default: graph)")
    return parser


# ----------------------------------------------------------------------------- preprocessing
def to_mnist(image) -> np.ndarray:
    """Brings a Pillow image of a single digit to MNIST's convention.

    Transparent pixels count as white paper; the orientation recorded by a camera (EXIF) is
    applied first.

    Args:
        image: A ``PIL.Image.Image`` of any size and mode.

    Returns:
        A ``(28, 28)`` uint8 array: a light digit on black, fitted into 20x20 and centred by mass.
    """
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return fit_digit(np.asarray(image.convert("L"), dtype=np.float32))


def fit_digit(gray: np.ndarray) -> np.ndarray:
    """Turns a grayscale picture of a digit (any size, either polarity) into an MNIST digit.

    The background's brightness is the median of the border pixels; a light one is inverted. Ink
    is stretched to [0, 1] above the background, the picture is cropped to the pixels with at
    least 25% of the strongest ink, scaled (keeping the aspect ratio) to fit 20x20, and pasted
    into 28x28 with its centre of mass at the middle (shifted back inside where needed).

    Args:
        gray: A 2-D array of brightness values in [0, 255].

    Returns:
        A ``(28, 28)`` uint8 array; all zeros when the picture holds no ink.
    """
    from PIL import Image

    gray = np.asarray(gray, dtype=np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    if background > 127.5:
        gray, background = 255.0 - gray, 255.0 - background
    ink = gray - background
    peak = float(ink.max())
    out = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    if peak <= 0:
        return out
    ink = np.clip(ink / peak, 0.0, 1.0)
    mask = ink >= _INK
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    crop = np.where(crop < _FLOOR, 0.0, crop).astype(np.float32)
    height, width = crop.shape
    scale = _BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    fitted = Image.fromarray(crop * 255.0).resize(size, Image.Resampling.LANCZOS)  # mode F
    digit = np.clip(np.asarray(fitted), 0.0, 255.0)
    total = float(digit.sum())
    if total <= 0:
        return out
    ys, xs = np.indices(digit.shape)
    cy, cx = float((ys * digit).sum()) / total, float((xs * digit).sum()) / total
    top = int(np.clip(round(_CENTRE - cy), 0, IMAGE_SIZE - digit.shape[0]))
    left = int(np.clip(round(_CENTRE - cx), 0, IMAGE_SIZE - digit.shape[1]))
    out[top:top + digit.shape[0], left:left + digit.shape[1]] = np.rint(digit).astype(np.uint8)
    return out


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file and returns it as an MNIST digit (see :func:`to_mnist`).

    Raises:
        DataError: the file is missing, not an image, or damaged (the message names it).
    """
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            return to_mnist(image)
    except FileNotFoundError:
        raise DataError(f"Image {path} does not exist. Check the path.") from None
    except Exception as exc:  # Pillow reports bad files with many exception types
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"Image {path} cannot be read ({reason}): it is not an image Pillow "
                        "understands, or it is truncated or damaged. Re-save it as PNG or JPEG, "
                        "or leave it out of the inputs.") from None


@dataclass
class Inputs:
    """Images ready for the network, with a name per image and the labels when known."""

    names: list[str]
    images: np.ndarray  # [N, 28, 28] uint8, MNIST convention
    labels: np.ndarray | None = None


def _is_idx(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head[:2] == _GZIP_MAGIC:
        import gzip

        try:
            with gzip.open(path, "rb") as stream:
                head = stream.read(4)
        except (OSError, EOFError):
            return False
    return head == _IDX_IMAGES_MAGIC


def _read_idx_images(path: Path) -> np.ndarray:
    from trainer.idx import read_idx

    images = read_idx(path)
    if images.ndim != 3:
        raise DataError(f"IDX file {path} has {images.ndim} dimension(s); an images file has 3 "
                        "(count, rows, columns). Pass labels with --labels.")
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        # Not MNIST-sized: treat every entry as a picture to bring to the convention.
        images = np.stack([fit_digit(im) for im in images]) if len(images) else images
    return images


def collect_inputs(paths: Sequence[str | os.PathLike],
                   labels: str | os.PathLike | None = None) -> Inputs:
    """Reads every input: image files, folders of images (not recursive) and IDX images files.

    Args:
        paths: What the user named.
        labels: An IDX labels file for the one IDX images input. Defaults to `None`.

    Raises:
        DataError: a path does not exist, a folder holds no images, a file cannot be read, or the
            labels do not pair up with the images.
        ConfigError: ``labels`` is given without exactly one IDX images input.
    """
    names: list[str] = []
    arrays: list[np.ndarray] = []
    idx_inputs = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file()
                           and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
            if not files:
                raise DataError(f"Folder {path} holds no images (looked for "
                                f"{', '.join(IMAGE_SUFFIXES)}). Name image files or a folder "
                                "that holds some.")
            for file in files:
                names.append(str(file))
                arrays.append(load_image(file)[None])
        elif not path.exists():
            raise DataError(f"Input {path} does not exist. Name image files, folders of images "
                            "or an IDX images file.")
        elif _is_idx(path):
            images = _read_idx_images(path)
            idx_inputs.append((path, len(names), len(images)))
            names += [f"{path}[{i}]" for i in range(len(images))]
            arrays.append(images)
        else:
            names.append(str(path))
            arrays.append(load_image(path)[None])
    images = np.concatenate(arrays) if arrays else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    result = Inputs(names, images)
    if labels is not None:
        if len(idx_inputs) != 1 or len(paths) != 1:
            raise ConfigError("--labels needs exactly one input, an IDX images file (such as "
                              "t10k-images-idx3-ubyte); it pairs the labels with its images.")
        from trainer.idx import read_idx

        label_path, (image_path, _, count) = Path(labels), idx_inputs[0]
        values = read_idx(label_path)
        if values.ndim != 1 or len(values) != count:
            raise DataError(f"Labels file {label_path} holds {values.shape[0]} labels "
                            f"({values.ndim} dimension(s)), but {image_path} holds {count} "
                            "images; pass the labels file that belongs to those images.")
        result.labels = values.astype(np.int64)
    return result


# ------------------------------------------------------------------------------- inference
def network_inputs(images: np.ndarray, image_size: int) -> np.ndarray:
    """Applies the training pipeline's per-image operations to MNIST-style uint8 digits.

    Args:
        images: ``[N, 28, 28]`` uint8.
        image_size: Side the network expects (32 for LeNet, 28 for the MLP).

    Returns:
        ``[N, 1, image_size, image_size]`` float32, exactly as training feeds the network.
    """
    from mindspore.dataset import transforms

    from trainer.data import image_transforms

    ops = transforms.Compose(image_transforms(image_size))
    if not len(images):
        return np.zeros((0, 1, image_size, image_size), dtype=np.float32)
    return np.stack([ops(np.ascontiguousarray(im)[:, :, None]) for im in images])


def predict_probabilities(network, images: np.ndarray, image_size: int,
                          batch_size: int = 256) -> np.ndarray:
    """Class probabilities for MNIST-style digits, ``batch_size`` images per network call.

    Every call gets the same batch shape (the last batch is padded), so a graph-mode network is
    compiled once.

    Args:
        network: A ``mindspore.nn.Cell`` in inference mode that returns logits.
        images: ``[N, 28, 28]`` uint8 digits.
        image_size: Side the network expects.
        batch_size: Images per call. Defaults to `256`.

    Returns:
        ``[N, num_classes]`` float64 probabilities.
    """
    import mindspore as ms

    from trainer.evaluate import softmax

    batch = max(1, min(batch_size, len(images)))
    chunks = []
    for start in range(0, len(images), batch):
        x = network_inputs(images[start:start + batch], image_size)
        real = len(x)
        if real < batch:
            x = np.concatenate([x, np.zeros((batch - real, *x.shape[1:]), dtype=x.dtype)])
        chunks.append(network(ms.Tensor(x)).asnumpy()[:real])
    return softmax(np.concatenate(chunks))


def _checkpoint_net(bundle, net: str | None) -> tuple[str, int]:
    """The network and class count to build: ``--net``, else the checkpoint's own record."""
    saved = bundle.meta.get("config") or {}
    return net or saved.get("net") or "lenet", int(saved.get("num_classes") or 10)


def _report(inputs: Inputs, probs: np.ndarray, top: int, ckpt: str, net: str) -> dict[str, Any]:
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top]
    rows = []
    for i, name in enumerate(inputs.names):
        row: dict[str, Any] = {"input": name, "top": [
            {"class": int(k), "probability": float(probs[i, k])} for k in order[i]]}
        if inputs.labels is not None:
            row["label"] = int(inputs.labels[i])
        rows.append(row)
    report: dict[str, Any] = {"checkpoint": ckpt, "net": net, "count": len(rows),
                              "predictions": rows}
    if inputs.labels is not None:
        correct = int((order[:, 0] == inputs.labels).sum())
        report.update(correct=correct, accuracy=correct / len(rows) if rows else None)
    return report


def _print_text(report: dict[str, Any]) -> None:
    lines = []
    for row in report["predictions"]:
        shown = "  ".join(f"{t['class']} ({t['probability']:.3f})" for t in row["top"])
        if "label" in row:
            mark = "" if row["top"][0]["class"] == row["label"] else "  wrong"
            shown += f"  label {row['label']}{mark}"
        lines.append(f"{row['input']}: {shown}")
    if "accuracy" in report:
        lines.append(f"Accuracy: {report['accuracy']:.4f} ({report['correct']}/"
                     f"{report['count']})")
    print("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``predict.py``; returns the exit status (0, or 2 for a user's mistake)."""

    def command() -> None:
        args = build_parser().parse_args(argv)
        if args.top < 1 or args.batch_size < 1:
            bad = "--top" if args.top < 1 else "--batch-size"
            raise ConfigError(f"{bad} must be at least 1.")
        inputs = collect_inputs(args.inputs, args.labels)
        os.environ.setdefault("GLOG_v", "3")  # MindSpore's C++ warnings are noise for users
        from trainer.config import TrainConfig
        from trainer.trainer import Trainer, read_checkpoint

        bundle = read_checkpoint(args.ckpt)
        net, num_classes = _checkpoint_net(bundle, args.net)
        trainer = Trainer(TrainConfig(net=net, num_classes=num_classes, device=args.device,
                                      mode=args.mode))
        trainer.load_network(bundle)
        probs = predict_probabilities(trainer.network, inputs.images,
                                      trainer.image_size, args.batch_size)
        report = _report(inputs, probs, min(args.top, probs.shape[1]), str(bundle.path), net)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            _print_text(report)

    return run_reporting_errors(command)


if __name__ == "__main__":
    sys.exit(main())
