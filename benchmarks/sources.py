"""One training run per built-in data source, through ``train.py`` as a user runs it, printed as
a table: the command, the data, the test accuracy, the seconds an epoch and the whole command.

The data of every source is written into a temporary folder in the source's real format: MNIST's
four IDX files (generated digits, or the real files of ``--mnist-dir``, only read), Fashion-MNIST's
and KMNIST's IDX files under their file names (gzipped, as their publishers ship them), CIFAR-10's
``cifar-10-binary.tar.gz`` (data batches of 3,073-byte records and ``batches.meta.txt``), image
folders of PNG files in class folders (grayscale and colour), and the generated digits of
``--data-source synthetic``. Without internet the real sets cannot be fetched, so the images are
generated with class-dependent patterns (a garment's silhouette, a character's strokes, a
coloured shape), which a network learns: the accuracy shows learning on generated data, not what
the real sets give. CIFAR-10 is cut to a small part of its size (``--cifar-train``), since
ResNet-20 is by far the slowest network on a CPU.

    MSTRAIN_CACHE=/tmp/mstrain-sources python benchmarks/sources.py \\
        --mnist-dir ../shared/data/mnist-subset

The native kernels are built once before the first run, so no row includes their build. The
generated data is new to the cache (``$MSTRAIN_CACHE``, else a folder of the temporary one), so
each of its runs is a user's first run on that data and decodes it once; flags after ``--`` are
added to every command.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import ROOT, median, run  # noqa: E402

PY = sys.executable

# --------------------------------------------------------------------------- generated images
# Images are drawn this many times larger than their side and box-filtered down (anti-aliasing).
_OVERSAMPLE = 2

# Fashion-MNIST's classes as crude silhouettes: polygons in a unit box, y pointing down.
_GARMENTS: tuple[list[list[tuple[float, float]]], ...] = (
    [[(.2, .1), (.8, .1), (1, .35), (.8, .45), (.75, .35), (.75, .95), (.25, .95), (.25, .35),
      (.2, .45), (0, .35)]],                                                     # T-shirt/top
    [[(.25, .05), (.75, .05), (.8, .95), (.58, .95), (.5, .35), (.42, .95), (.2, .95)]],  # Trouser
    [[(.25, .1), (.75, .1), (.95, .85), (.8, .88), (.72, .4), (.72, .95), (.28, .95), (.28, .4),
      (.2, .88), (.05, .85)]],                                                   # Pullover
    [[(.38, .05), (.62, .05), (.65, .35), (.85, .95), (.15, .95), (.35, .35)]],  # Dress
    [[(.2, .05), (.8, .05), (1, .95), (.85, .95), (.78, .45), (.78, 1), (.53, 1), (.5, .2),
      (.47, 1), (.22, 1), (.22, .45), (.15, .95), (0, .95)]],                    # Coat (open front)
    [[(.05, .72), (.95, .72), (.95, .8), (.05, .8)], [(.1, .55), (.4, .55), (.4, .6), (.1, .6)],
     [(.5, .5), (.85, .5), (.85, .56), (.5, .56)]],                              # Sandal
    [[(.3, .1), (.45, .1), (.5, .22), (.55, .1), (.7, .1), (.92, .8), (.78, .82), (.72, .45),
      (.72, .95), (.28, .95), (.28, .45), (.22, .82), (.08, .8)]],               # Shirt
    [[(.05, .55), (.45, .5), (.7, .6), (.95, .7), (.95, .85), (.05, .85)]],     # Sneaker
    [[(.15, .35), (.85, .35), (.85, .9), (.15, .9)], [(.35, .1), (.65, .1), (.65, .35),
                                                      (.58, .35), (.58, .17), (.42, .17),
                                                      (.42, .35), (.35, .35)]],  # Bag
    [[(.3, .1), (.6, .1), (.62, .55), (.95, .7), (.95, .9), (.2, .9), (.25, .5)]],  # Ankle boot
)
FASHION_CLASSES = 10
KMNIST_CLASSES = 10
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck")
FOLDER_CLASSES = ("circle", "square", "triangle", "cross", "ring")


def _jitter(rng: np.random.Generator, side: int) -> tuple[float, float, float]:
    """A random scale and shift of a unit-box drawing into a ``side``-pixel canvas."""
    scale = side * rng.uniform(0.7, 0.9)
    dx, dy = (side - scale) / 2 + rng.normal(0, side * 0.04, 2)
    return scale, dx, dy


def _finish(canvas: Image.Image, rng: np.random.Generator, noise: float) -> np.ndarray:
    """The canvas box-filtered to its final side, with sensor-like noise."""
    pixels = np.asarray(canvas.reduce(_OVERSAMPLE), dtype=np.float32)
    pixels = pixels + rng.normal(0, noise, pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def garment(label: int, rng: np.random.Generator, side: int = 28) -> np.ndarray:
    """A Fashion-MNIST look-alike: the class's silhouette, filled with a random grey and
    texture, scaled and shifted at random; ``uint8 [side, side]``."""
    big = side * _OVERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    scale, dx, dy = _jitter(rng, big)
    fill = int(rng.integers(110, 256))
    for polygon in _GARMENTS[label]:
        points = np.asarray(polygon) + rng.normal(0, 0.02, (len(polygon), 2))
        draw.polygon([(dx + x * scale, dy + y * scale) for x, y in points], fill=fill)
    return _finish(canvas, rng, rng.uniform(4, 16))


def _strokes(seed: int, classes: int) -> list[list[np.ndarray]]:
    """Each class's character: two or three random brush strokes of three or four points."""
    rng = np.random.default_rng(seed)
    return [[rng.uniform(0.05, 0.95, (int(rng.integers(3, 5)), 2))
             for _ in range(int(rng.integers(2, 4)))] for _ in range(classes)]


_KMNIST_STROKES = _strokes(2019, KMNIST_CLASSES)


def character(label: int, rng: np.random.Generator, side: int = 28) -> np.ndarray:
    """A KMNIST look-alike: the class's strokes, each point moved at random, in a random brush
    width, white on black; ``uint8 [side, side]``."""
    big = side * _OVERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    scale, dx, dy = _jitter(rng, big)
    width = int(rng.integers(3, 7))
    for stroke in _KMNIST_STROKES[label]:
        points = stroke + rng.normal(0, 0.04, stroke.shape)
        draw.line([(dx + x * scale, dy + y * scale) for x, y in points], fill=255, width=width,
                  joint="curve")
    return _finish(canvas, rng, rng.uniform(0, 12))


def _shape(draw: ImageDraw.ImageDraw, kind: int, box: tuple[float, float, float, float],
           colour: tuple[int, ...]) -> None:
    """Draws shape ``kind`` (0-9) into ``box``."""
    x0, y0, x1, y1 = box
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    bar = max(2.0, w / 4)
    if kind == 0:
        draw.ellipse(box, fill=colour)
    elif kind == 1:
        draw.rectangle(box, fill=colour)
    elif kind == 2:
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=colour)
    elif kind == 3:
        draw.rectangle((cx - bar / 2, y0, cx + bar / 2, y1), fill=colour)
        draw.rectangle((x0, cy - bar / 2, x1, cy + bar / 2), fill=colour)
    elif kind == 4:
        draw.ellipse(box, outline=colour, width=int(bar))
    elif kind == 5:
        draw.rectangle((x0, cy - h / 6, x1, cy + h / 6), fill=colour)
    elif kind == 6:
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=colour)
    elif kind == 7:
        draw.rectangle((cx - w / 6, y0, cx + w / 6, y1), fill=colour)
    elif kind == 8:
        draw.ellipse((x0, y0, cx, cy), fill=colour)
        draw.ellipse((cx, cy, x1, y1), fill=colour)
    else:
        for k in range(3):
            top = y0 + k * h / 3
            draw.rectangle((x0, top, x1, top + h / 6), fill=colour)


def photo(label: int, rng: np.random.Generator, side: int = 32) -> np.ndarray:
    """A CIFAR-10 look-alike: the class's shape in a colour near the class's hue, at a random
    size and place, on a background of another random colour; ``uint8 [side, side, 3]``."""
    import colorsys

    big = side * _OVERSAMPLE
    hue = (label / 10 + rng.normal(0, 0.03)) % 1.0
    colour = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, rng.uniform(0.5, 1),
                                                             rng.uniform(0.6, 1)))
    ground = tuple(int(c) for c in rng.integers(0, 256, 3) * rng.uniform(0.2, 0.6))
    canvas = Image.new("RGB", (big, big), ground)
    draw = ImageDraw.Draw(canvas)
    size = big * rng.uniform(0.45, 0.75)
    x0, y0 = rng.uniform(0, big - size, 2)
    _shape(draw, label, (x0, y0, x0 + size, y0 + size), colour)
    return _finish(canvas, rng, rng.uniform(4, 14))


def _draw_many(draw, count: int, classes: int, rng: np.random.Generator) -> tuple[list, np.ndarray]:
    # Equal shares of every class in random order, as the real sets are nearly balanced.
    labels = rng.permutation(np.arange(count) % classes).astype(np.uint8)
    return [draw(int(k), rng) for k in labels], labels


# --------------------------------------------------------------------------- the sources' files
def write_idx_set(root: Path, draw, sizes: dict[str, int], classes: int, seed: int) -> Path:
    """``root/train`` and ``root/test`` with MNIST's four file names, gzipped."""
    from trainer.data.idx import SPLIT_FILES, write_idx

    for i, (split, count) in enumerate(sizes.items()):
        images, labels = _draw_many(draw, count, classes, np.random.default_rng([seed, i]))
        (root / split).mkdir(parents=True, exist_ok=True)
        for name, array in zip(SPLIT_FILES[split], (np.stack(images), labels)):
            write_idx(root / split / f"{name}.gz", array)
    return root


def write_cifar_archive(root: Path, sizes: dict[str, int], seed: int) -> Path:
    """``root/cifar-10-binary.tar.gz`` as its authors lay it out: ``cifar-10-batches-bin/`` with
    five training batches and a test batch of 3,073-byte records (a label byte, then 32x32 red,
    green and blue planes) and ``batches.meta.txt``."""
    from trainer.data.sources.cifar10 import ARCHIVE, BATCHES, FOLDER, META

    def records(count: int, rng: np.random.Generator) -> bytes:
        images, labels = _draw_many(photo, count, len(CIFAR_CLASSES), rng)
        planes = np.stack(images).transpose(0, 3, 1, 2).reshape(count, -1)
        return np.concatenate([labels[:, None], planes], axis=1).tobytes()

    per_batch = [sizes["train"] // 5 + (i < sizes["train"] % 5) for i in range(5)]
    members = {META: ("\n".join(CIFAR_CLASSES) + "\n\n").encode()}
    for i, (name, count) in enumerate(zip(BATCHES["train"], per_batch)):
        members[name] = records(count, np.random.default_rng([seed, i]))
    members[BATCHES["test"][0]] = records(sizes["test"], np.random.default_rng([seed, 9]))
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(root / ARCHIVE, "w:gz") as tarred:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{FOLDER}/{name}")
            info.size = len(data)
            tarred.addfile(info, io.BytesIO(data))
    return root


def write_image_folder(root: Path, sizes: dict[str, int], channels: int, seed: int) -> Path:
    """``root/train/<class>/*.png`` and ``root/test/<class>/*.png``: coloured shapes, saved as
    grayscale (mode L) PNGs when ``channels`` is 1."""
    for i, (split, count) in enumerate(sizes.items()):
        images, labels = _draw_many(photo, count, len(FOLDER_CLASSES),
                                    np.random.default_rng([seed, i]))
        for n, (pixels, label) in enumerate(zip(images, labels)):
            folder = root / split / FOLDER_CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(pixels)
            (image.convert("L") if channels == 1 else image).save(folder / f"{n:05d}.png")
    return root


# --------------------------------------------------------------------------- the runs
@dataclass
class Case:
    """One source's run: its data folder, its network and its extra flags."""

    source: str
    net: str
    data: str  # what the data is, for the table
    make: Callable[[Path], object] | None = None  # writes the data into its folder; None: given
    data_dir: Path | None = None
    flags: list[str] = field(default_factory=list)
    label: str = ""  # the row's name, when a source has several rows


def cases(args, tmp: Path) -> list[Case]:
    """Every row, in the order of ``--sources``."""
    idx = {"train": args.train_size, "test": args.test_size}
    folder = {"train": args.folder_train, "test": args.folder_test}
    cifar = {"train": args.cifar_train, "test": args.cifar_test}
    both = f"{args.train_size:,} + {args.test_size:,}"
    rows = {
        "mnist": [Case("mnist", "lenet", f"{both} generated digits, 28x28x1",
                       lambda d: generate_digits_into(d, idx, args.seed))],
        "fashion-mnist": [Case("fashion-mnist", "lenet",
                               f"{both} generated garment silhouettes, 28x28x1, IDX .gz",
                               lambda d: write_idx_set(d, garment, idx, FASHION_CLASSES,
                                                       args.seed))],
        "kmnist": [Case("kmnist", "lenet", f"{both} generated 2-3-stroke characters, 28x28x1, "
                        "IDX .gz", lambda d: write_idx_set(d, character, idx, KMNIST_CLASSES,
                                                           args.seed))],
        "cifar10": [Case("cifar10", "resnet20",
                         f"{args.cifar_train:,} + {args.cifar_test:,} generated coloured shapes "
                         "(reduced size), 32x32x3, cifar-10-binary.tar.gz",
                         lambda d: write_cifar_archive(d, cifar, args.seed))],
        "imagefolder": [
            Case("imagefolder", "lenet",
                 f"{args.folder_train:,} + {args.folder_test:,} generated PNGs, "
                 f"{len(FOLDER_CLASSES)} class folders, 32x32x{channels}",
                 lambda d, c=channels: write_image_folder(d, folder, c, args.seed),
                 label=f"imagefolder ({'grayscale' if channels == 1 else 'colour'})")
            for channels in (1, 3)],
        "synthetic": [Case("synthetic", "lenet", f"{both} digits the source generates, 28x28x1",
                           flags=["--synthetic-train-size", str(args.train_size),
                                  "--synthetic-test-size", str(args.test_size)])],
    }
    if args.mnist_dir:
        rows["mnist"] = [Case("mnist", "lenet", "real MNIST IDX files of --mnist-dir, 28x28x1",
                              data_dir=args.mnist_dir)]
    chosen = []
    for name in args.sources:
        for case in rows[name]:
            case.label = case.label or name
            if case.data_dir is None:
                case.data_dir = tmp / "data" / slug(case.label)
            chosen.append(case)
    return chosen


def slug(label: str) -> str:
    """A row's label as a folder name: ``imagefolder (colour)`` -> ``imagefolder-colour``."""
    return "-".join(re.findall(r"[a-z0-9]+", label.lower()))


def generate_digits_into(folder: Path, sizes: dict[str, int], seed: int) -> Path:
    """The tool's generated digits in MNIST's layout (raw IDX files)."""
    from trainer.data.synthetic import generate_digits

    return generate_digits(folder, sizes["train"], sizes["test"], seed=seed)


def describe(case: Case) -> None:
    """For ``--mnist-dir``: the images and their size, read from the files' headers."""
    from trainer.data.idx import find_split, read_idx_header

    counts = []
    for split in ("train", "test"):
        found = find_split(case.data_dir / split, split)
        if found is None:
            raise SystemExit(f"{case.data_dir} has no MNIST {split} files")
        counts.append(read_idx_header(found[0]))
    (n_train, side, _), (n_test, _, _) = counts
    case.data = f"{n_train:,} + {n_test:,} real MNIST digits, {side}x{side}x1"


def measure(args, case: Case, tmp: Path, env: dict[str, str]) -> dict:
    """One run of ``train.py`` on the case's data; its row of the table."""
    cmd = [PY, str(ROOT / "train.py"), "--data-source", case.source, "--data-dir",
           str(case.data_dir), "--net", case.net, "--epochs", str(args.epochs), *case.flags,
           *args.train_flags, "--output-dir", str(tmp / "runs"), "--run-name",
           slug(case.label), "--no-plot"]
    result = run(cmd, env=env)
    run_dir = tmp / "runs" / cmd[-2]
    record = json.loads((run_dir / "history.json").read_text())
    times = record["history"]["epoch_time"]
    later = times[1:] or times  # the first epoch also compiles the graphs
    shown = " ".join(cmd[1:]).replace(str(tmp), "TMP").replace(str(ROOT) + "/", "")
    return {"source": case.label, "command": f"python {shown}", "data": case.data,
            "epochs": args.epochs, "test_accuracy": record["test"]["final"]["test_accuracy"],
            "epoch_seconds": median(later), "epoch_times": times, "command_seconds": result.wall,
            "peak_rss_mb": result.peak_rss_mb}


def build_kernels(env: dict[str, str]) -> str:
    """Builds the native kernels into the runs' cache once, so no run's time includes it."""
    from trainer.networks.native.build import Unavailable, build

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        built = build()
    except Unavailable as exc:
        return f"native kernels unavailable ({exc}); the runs use MindSpore's operators"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return (f"native kernels ({built.isa}) built in {built.seconds:.1f} s before the runs"
            if built.seconds else "native kernels taken from the cache")


def table(rows: list[dict], epochs: int) -> str:
    """The rows as a Markdown table."""
    later = f"epochs 2-{epochs}" if epochs > 1 else "epoch 1, with the compilation"
    lines = ["| source | command | data (train + test images, size, channels) | epochs | test "
             f"accuracy | s/epoch (median of {later}) | whole command (s) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['source']} | `{r['command']}` | {r['data']} | {r['epochs']} | "
                     f"{r['test_accuracy']:.4f} | {r['epoch_seconds']:.2f} | "
                     f"{r['command_seconds']:.1f} |")
    return "\n".join(lines)


SOURCES = ("mnist", "fashion-mnist", "kmnist", "cifar10", "imagefolder", "synthetic")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist-dir", type=Path, help="real MNIST files for the mnist row "
                        "(read only); default: generated digits")
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=6000,
                        help="training images of the 28x28 sources (default: 6000)")
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--cifar-train", type=int, default=1500,
                        help="CIFAR-10's training images, over its five batches (default: 1500)")
    parser.add_argument("--cifar-test", type=int, default=300)
    parser.add_argument("--folder-train", type=int, default=5000,
                        help="training images of each image folder (default: 5000)")
    parser.add_argument("--folder-test", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated images")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("train_flags", nargs="*", metavar="-- TRAIN.PY FLAGS",
                        help="flags added to every command, after --")
    args = parser.parse_args(argv)
    if args.mnist_dir:
        args.mnist_dir = args.mnist_dir.resolve()
    # Each of CIFAR-10's five batches and each class folder needs an image at least.
    least = {"epochs": 1, "train_size": 1, "test_size": 1, "cifar_train": 5, "cifar_test": 1,
             "folder_train": len(FOLDER_CLASSES), "folder_test": 1}
    for key, low in least.items():
        if getattr(args, key) < low:
            parser.error(f"--{key.replace('_', '-')} must be at least {low}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="mstrain-sources-") as name:
        tmp = Path(name)
        env = {"MSTRAIN_CACHE": os.environ.get("MSTRAIN_CACHE") or str(tmp / "cache")}
        print(build_kernels(env), file=sys.stderr, flush=True)
        for case in cases(args, tmp):
            if case.make is not None:
                print(f"writing the {case.label} data ...", file=sys.stderr, flush=True)
                case.make(case.data_dir)
            elif case.source == "mnist":
                describe(case)
            print(f"training on {case.label} ...", file=sys.stderr, flush=True)
            rows.append(measure(args, case, tmp, env))
    print(table(rows, args.epochs))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
