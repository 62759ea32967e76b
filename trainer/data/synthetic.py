"""A small, learnable MNIST look-alike, drawn with Pillow, for tests and offline runs.

Run ``python -m trainer.data.synthetic OUT_DIR`` to write the four IDX files in the MNIST layout.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from trainer.data.idx import IMAGE_SIZE, NUM_CLASSES, SPLIT_FILES, write_idx
from trainer.errors import DataError, UserError

# Digits are placed on a grid this many times finer than the output and box-filtered down, which
# anti-aliases the rotated, sheared strokes far better than resampling at the final size.
_OVERSAMPLE = 2
# Digits are first drawn upright on a fixed canvas, whatever the output size; placement then
# scales them, so the font size and pen widths below are relative to this canvas.
_CANVAS = 64
_FONT_SIZE = 44
# Share of digits drawn from the font rather than from pen strokes, when a font is available.
# Two styles per class make the task less trivial than a single typeface would.
_FONT_SHARE = 0.5

Stroke = list[tuple[float, float]]


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float) -> Stroke:
    """Points along an ellipse from ``start`` to ``end`` degrees (0 = right, 90 = down)."""
    steps = max(2, int(abs(end - start) / 15) + 1)
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in np.linspace(start, end, steps)
    ]


# Pen strokes for each digit in a box 0.6 wide and 1 tall, y pointing down.
_STROKES: dict[int, list[Stroke]] = {
    0: [_arc(0.3, 0.5, 0.28, 0.48, 0, 360)],
    1: [[(0.12, 0.22), (0.34, 0.0), (0.34, 1.0)]],
    2: [_arc(0.3, 0.27, 0.27, 0.25, 200, 380) + [(0.02, 1.0), (0.6, 1.0)]],
    3: [_arc(0.28, 0.26, 0.25, 0.24, 200, 450) + _arc(0.28, 0.74, 0.3, 0.26, 270, 520)],
    4: [[(0.46, 1.0), (0.46, 0.0), (0.0, 0.68), (0.6, 0.68)]],
    5: [[(0.56, 0.0), (0.1, 0.0), (0.06, 0.46)] + _arc(0.3, 0.68, 0.28, 0.3, 215, 500)],
    6: [[(0.5, 0.02), (0.3, 0.12), (0.12, 0.34), (0.03, 0.66)]
        + _arc(0.3, 0.72, 0.27, 0.27, 180, 540)],
    7: [[(0.0, 0.0), (0.6, 0.0), (0.22, 1.0)]],
    8: [_arc(0.3, 0.25, 0.22, 0.24, 90, 450), _arc(0.3, 0.74, 0.28, 0.26, 270, 630)],
    9: [_arc(0.3, 0.28, 0.27, 0.27, 0, 360), [(0.57, 0.28), (0.55, 0.6), (0.48, 1.0)]],
}


@functools.cache
def _font() -> ImageFont.FreeTypeFont | None:
    """Pillow's bundled TrueType font, or None where Pillow is too old or lacks FreeType."""
    try:
        font = ImageFont.load_default(size=_FONT_SIZE)
    except (TypeError, ImportError, OSError):
        return None
    return font if isinstance(font, ImageFont.FreeTypeFont) else None


def _draw_glyph(draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont, digit: int,
                rng: np.random.Generator) -> None:
    """Draws the font's glyph for ``digit``; a stroke outline varies the weight."""
    weight = int(rng.integers(0, 2))
    draw.text((_CANVAS / 2, _CANVAS / 2), str(digit), fill=255, font=font, anchor="mm",
              stroke_width=weight, stroke_fill=255)


def _draw_strokes(draw: ImageDraw.ImageDraw, digit: int, rng: np.random.Generator) -> None:
    """Draws ``digit`` with pen strokes, bent by a random smooth warp like a hand would."""
    # A random quadratic warp changes loop sizes and curvature, which no affine map can.
    warp = rng.normal(0.0, 0.06, size=(2, 3))
    width = int(rng.integers(4, 9))
    height = _CANVAS * 0.7
    origin = np.array([(_CANVAS - 0.6 * height) / 2, (_CANVAS - height) / 2])
    for stroke in _STROKES[digit]:
        pts = np.asarray(stroke)
        x, y = pts[:, 0], pts[:, 1]
        terms = np.stack([x * x, y * y, x * y])
        pts = pts + (warp @ terms).T
        pts = origin + pts * height
        draw.line([tuple(p) for p in pts], fill=255, width=width, joint="curve")


def _placement(bbox: tuple[int, int, int, int], rng: np.random.Generator,
               size: int) -> tuple[float, ...]:
    """Source-quad corners mapping the glyph's box onto a jittered spot in the output.

    The glyph is scaled to roughly MNIST's 20-pixel height, slanted, rotated and shifted, then
    each corner is nudged so the map is not quite affine.
    """
    out = size * _OVERSAMPLE
    left, top, right, bottom = bbox
    center = np.array([(left + right) / 2, (top + bottom) / 2])
    height = max(bottom - top, 1)
    scale = rng.uniform(0.62, 0.76) * out / height
    stretch = rng.uniform(0.8, 1.2)
    shear = rng.uniform(-0.2, 0.2)
    angle = math.radians(rng.uniform(-10, 10))
    shift = np.clip(rng.normal(0.0, 0.03 * out, size=2), -0.06 * out, 0.06 * out)
    cos, sin = math.cos(angle), math.sin(angle)
    # The output-to-source map is the inverse of scale, then slant, then rotate.
    inverse = (np.array([[1 / (scale * stretch), 0.0], [0.0, 1 / scale]])
               @ np.array([[1.0, -shear], [0.0, 1.0]]) @ np.array([[cos, sin], [-sin, cos]]))
    # Pillow's QUAD wants the source points of the output's corners: UL, LL, LR, UR.
    corners = np.array([[0, 0], [0, out], [out, out], [out, 0]], dtype=float)
    source = center + (corners - out / 2 - shift) @ inverse.T
    source += rng.normal(0.0, 0.025 * height, size=source.shape)
    return tuple(source.ravel())


def render_digit(digit: int, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """Draws one randomly varied digit, white on black like MNIST.

    Args:
        digit: The digit to draw, 0-9.
        rng: Source of all randomness, so a seeded generator gives the same image.
        size: Side of the square output in pixels.

    Returns:
        A ``(size, size)`` uint8 array.

    Raises:
        ValueError: ``digit`` is not in 0-9.
    """
    if not 0 <= digit < NUM_CLASSES:
        raise ValueError(f"digit must be in 0-9, got {digit}")
    canvas = Image.new("L", (_CANVAS, _CANVAS), 0)
    draw = ImageDraw.Draw(canvas)
    font = _font()
    if font is not None and rng.random() < _FONT_SHARE:
        _draw_glyph(draw, font, digit, rng)
    else:
        _draw_strokes(draw, digit, rng)
    bbox = canvas.getbbox() or (0, 0, _CANVAS, _CANVAS)
    out = size * _OVERSAMPLE
    placed = canvas.transform((out, out), Image.Transform.QUAD, _placement(bbox, rng, size),
                              resample=Image.Resampling.BILINEAR)
    pixels = np.asarray(placed.reduce(_OVERSAMPLE), dtype=np.float32)
    # Varying ink brightness and sensor-like noise keep the pixel values from being too clean.
    pixels *= rng.uniform(0.8, 1.3)
    pixels += rng.normal(0.0, rng.uniform(0.0, 12.0), size=pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _render_split(count: int, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    # Equal shares of every class, shuffled, so no class dominates and order carries no signal.
    labels = rng.permutation(np.arange(count) % NUM_CLASSES).astype(np.uint8)
    images = np.empty((count, size, size), dtype=np.uint8)
    for i, digit in enumerate(labels):
        images[i] = render_digit(int(digit), rng, size)
    return images, labels


def generate_digits(out_dir: str | os.PathLike[str], train_size: int = 2000,
                    test_size: int = 500, seed: int = 0, compress: bool = False) -> Path:
    """Writes a synthetic digits dataset in the MNIST layout.

    Creates ``out_dir/train/train-{images-idx3,labels-idx1}-ubyte`` and
    ``out_dir/test/t10k-{images-idx3,labels-idx1}-ubyte`` (each with ``.gz`` appended when
    ``compress`` is set): 28x28 uint8 images of white digits on black, with balanced labels in
    random order. The same arguments give the same bytes (with the same Pillow build).

    Args:
        out_dir: Data root to write into; created if missing.
        train_size: Number of training images, at least 1.
        test_size: Number of test images, at least 1.
        seed: Seed for all randomness; train and test use independent streams of it.
        compress: Write gzipped files.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        DataError: A size is below 1, or the files cannot be written.
    """
    root = Path(out_dir)
    sizes = {"train": train_size, "test": test_size}
    for split, count in sizes.items():
        if count < 1:
            raise DataError(
                f"Cannot generate synthetic data in {root}: the {split} split needs at least 1 "
                f"image, but {count} were asked for. Ask for a positive number of images."
            )
    streams = np.random.SeedSequence(seed).spawn(len(sizes))
    for (split, count), stream in zip(sizes.items(), streams):
        folder = root / split
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(
                f"Cannot create the folder {folder}: {exc.strerror or exc}. Choose an output "
                "folder you may write to."
            ) from None
        images, labels = _render_split(count, np.random.default_rng(stream), IMAGE_SIZE)
        for name, array in zip(SPLIT_FILES[split], (images, labels)):
            target, other = (f"{name}.gz", name) if compress else (name, f"{name}.gz")
            write_idx(folder / target, array)
            # A leftover file of the other kind would shadow or confuse the one just written,
            # since readers prefer raw files over gzipped ones.
            (folder / other).unlink(missing_ok=True)
    return root


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer no smaller than ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m trainer.data.synthetic OUT_DIR [options]``.

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The exit status: 0 on success, the error's exit code otherwise.
    """
    parser = argparse.ArgumentParser(
        prog="python -m trainer.data.synthetic",
        description="Write a small synthetic MNIST look-alike in the MNIST file layout.",
    )
    parser.add_argument("out_dir", type=Path, help="data root; train/ and test/ go inside")
    parser.add_argument("--train-size", type=_int_at_least(1), default=2000,
                        help="number of training images (default: 2000)")
    parser.add_argument("--test-size", type=_int_at_least(1), default=500,
                        help="number of test images (default: 500)")
    parser.add_argument("--seed", type=_int_at_least(0), default=0,
                        help="random seed (default: 0)")
    parser.add_argument("--gzip", action="store_true", help="write gzipped files (.gz)")
    args = parser.parse_args(argv)
    try:
        root = generate_digits(args.out_dir, args.train_size, args.test_size, args.seed,
                               compress=args.gzip)
    except UserError as exc:
        print(exc.paragraph(), file=sys.stderr)
        return exc.exit_code
    suffix = ".gz" if args.gzip else ""
    print(f"wrote {args.train_size} training and {args.test_size} test images to {root}:")
    for split, names in SPLIT_FILES.items():
        for name in names:
            print(f"  {root / split / (name + suffix)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
