"""A folder of your images: ``DIR/train/<class>/*`` and optionally ``DIR/test/<class>/*`` (else a
seeded, stratified share of each class held out as the test split, ``--test-split``), PNG, JPEG
or BMP, the folder names the class names (sorted), as Keras's ``image_dataset_from_directory``
and torchvision's ``ImageFolder`` read them.

Every file is checked before anything is decoded: it stays inside the folder (a link leading out
of it is refused), its size and its pixels (read from its header) are within the limits, it is an
image Pillow reads; a file that is not one is named with its path. The images are converted to
``--channels`` (default: 3 when any image has colour, else 1) and resized to ``--image-size``
(default: the side of the most common size; others are resized, and the log says so once), then
decoded once into the cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from trainer.data.sources.base import NATURAL, Source, SourceInfo, check_class_names
from trainer.errors import DataError
from trainer.registry import register_source

logger = logging.getLogger("mstrain")

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
# The test split's choice has its own fixed seed: the same folder always tests on the same
# images, whatever --seed a run draws its weights and batches with.
TEST_SEED = 20_000_202
_KEY_VERSION = 1
# Pillow's modes that hold no colour.
_GRAY = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")


@register_source("imagefolder", rank=4, needs_dir=True,
                 help="your images in DIR/train/<class>/ (and DIR/test/<class>/)")
class ImageFolder(Source):
    """The images of a folder of class folders.

    Args:
        data_dir: The folder holding ``train/`` (and ``test/``); required.
        channels: 1 (grayscale) or 3 (RGB); 0: 3 when any image has colour. Defaults to `0`.
        image_size: The side the images are resized to; 0: the most common size's longer
            side. Defaults to `0`.
        test_split: Share of each class held out as the test split when there is no
            ``test/``. Defaults to `0.2`.
    """

    name = "imagefolder"
    kind = NATURAL

    def __init__(self, data_dir: Path, channels: int = 0, image_size: int = 0,
                 test_split: float = 0.2) -> None:
        self.data_dir = Path(data_dir).expanduser()
        self.channels, self.side, self.test_split = channels, image_size, test_split
        self.origin = str(self.data_dir.resolve())
        self._files: dict[str, list[tuple[Path, int]]] = {}  # split -> (file, label)
        self._info: SourceInfo | None = None

    # ------------------------------------------------------------------------ finding it
    def prepare(self, *, fetch: bool = True) -> SourceInfo:
        root = self.data_dir
        fix = (f"Put your images into {root}/train/<class>/ (one folder per class, PNG, JPEG or "
               f"BMP files), and optionally {root}/test/<class>/.")
        if not (root / "train").is_dir():
            raise DataError(f"Image folder {root} has no train/ folder. {fix}")
        base = os.path.realpath(root)
        classes = self._classes(root / "train", fix)
        names = check_class_names(classes, f"Image folder {root}/train")
        train = self._listing(root / "train", names, base)
        if (root / "test").is_dir():
            tested = self._classes(root / "test", fix, allow_empty=True)
            stray = [c for c in tested if c not in names]
            if stray:
                raise DataError(f"Image folder {root}/test has the class folder {stray[0]!r}, "
                                f"which {root}/train does not have; the test split's classes "
                                "must be the training split's. Rename or remove it.")
            test = self._listing(root / "test", names, base, required=False)
        else:
            train, test = self._split(train, names)
        self._files = {"train": train, "test": test}
        channels, side = self._shape([path for path, _ in train + test])
        counts = {"train": len(train), "test": len(test)}
        from trainer.limits import SOURCE_MAX_BYTES

        total = max(counts.values()) * channels * side * side
        if total > SOURCE_MAX_BYTES:
            raise DataError(f"Image folder {root}: {max(counts.values()):,} images of "
                            f"{side}x{side} pixels and {channels} channel(s) would take "
                            f"{total:,} bytes, more than the limit of {SOURCE_MAX_BYTES:,}. "
                            "Use a smaller --image-size, or fewer images.")
        self._info = SourceInfo(channels=channels, image_size=side, class_names=names,
                                counts=counts, kind=self.kind, about=f"the images in {root}")
        return self._info

    def _classes(self, folder: Path, fix: str, allow_empty: bool = False) -> list[str]:
        from trainer.limits import MAX_CLASSES

        found = []
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            if not entry.is_dir():
                raise DataError(f"Image folder {folder} holds {entry.name}, which is not a class "
                                f"folder; the images go into one folder per class. {fix}")
            found.append(entry.name)
            if len(found) > MAX_CLASSES:
                raise DataError(f"Image folder {folder} holds more than {MAX_CLASSES:,} class "
                                "folders, the limit.")
        if not found and not allow_empty:
            raise DataError(f"Image folder {folder} holds no class folders. {fix}")
        if len(found) == 1 and not allow_empty:
            raise DataError(f"Image folder {folder} holds one class folder only ({found[0]!r}); "
                            "a classifier needs at least two classes. Add a folder of images "
                            "for each other class.")
        return found

    def _listing(self, folder: Path, names: tuple[str, ...], base: str,
                 required: bool = True) -> list[tuple[Path, int]]:
        """Every image file of the class folders, checked to stay inside the data folder and
        to be an image file by its name; ``(path, label)`` in a fixed order."""
        from trainer.limits import SOURCE_MAX_IMAGES

        files: list[tuple[Path, int]] = []
        for label, name in enumerate(names):
            class_dir = folder / name
            if not class_dir.is_dir():
                continue
            real = os.path.realpath(class_dir)
            if os.path.commonpath([base, real]) != base:
                raise DataError(f"Class folder {class_dir} is a link to {real}, outside the data "
                                f"folder {self.data_dir}; it is not read. Copy the images into "
                                "the data folder instead.")
            found = 0
            for path in sorted(class_dir.iterdir()):
                if path.name.startswith("."):
                    continue
                resolved = os.path.realpath(path)
                if os.path.commonpath([base, resolved]) != base:
                    raise DataError(f"Image {path} is a link to {resolved}, outside the data "
                                    f"folder {self.data_dir}; it is not read. Copy the image "
                                    "into the data folder instead, or remove the link.")
                if path.is_dir():
                    raise DataError(f"Class folder {class_dir} holds the folder {path.name}; "
                                    "images go directly into their class folder. Move them "
                                    "up, or remove it.")
                if path.suffix.lower() not in SUFFIXES:
                    raise DataError(f"File {path} is not a PNG, JPEG or BMP image (by its "
                                    "name); class folders hold images only. Move it out of "
                                    "the data folder.")
                files.append((path, label))
                found += 1
                if len(files) > SOURCE_MAX_IMAGES:
                    raise DataError(f"Image folder {folder} holds more than "
                                    f"{SOURCE_MAX_IMAGES:,} images, the limit of one split.")
            if not found and required:
                raise DataError(f"Class folder {class_dir} holds no images (PNG, JPEG or BMP); "
                                "every class needs some. Add images, or remove the folder.")
        return files

    def _split(self, files: list[tuple[Path, int]],
               names: tuple[str, ...]) -> tuple[list, list]:
        """A seeded, stratified share of each class as the test split."""
        labels = np.array([label for _, label in files])
        rng = np.random.default_rng(TEST_SEED)
        held = []
        for label, name in enumerate(names):
            rows = np.flatnonzero(labels == label)
            count = int(round(self.test_split * len(rows)))
            count = min(max(count, 1), len(rows) - 1)
            if count < 1:
                raise DataError(f"Class folder {self.data_dir}/train/{name} holds "
                                f"{len(rows)} image(s); holding out a test split "
                                f"(--test-split {self.test_split}) needs at least 2 per class. "
                                f"Add images, or give a test/ folder of your own.")
            held += rng.permutation(rows)[:count].tolist()
        held_set = set(held)
        return ([f for i, f in enumerate(files) if i not in held_set],
                [f for i, f in enumerate(files) if i in held_set])

    def _shape(self, paths: list[Path]) -> tuple[int, int]:
        """Every file's header checked (size, pixels, an image Pillow reads); the channels
        (``--channels``, else 3 when any image has colour) and the side (``--image-size``, else
        the most common size's longer side)."""
        from PIL import Image

        from trainer.limits import IMAGE_FILE_MAX_BYTES, IMAGE_MAX_PIXELS, SOURCE_MAX_SIDE

        sizes: Counter = Counter()
        colour = False
        for path in paths:
            refused = _special(path)
            if refused:
                raise DataError(refused)
            size = path.stat().st_size
            if size > IMAGE_FILE_MAX_BYTES:
                raise DataError(f"Image {path} holds {size:,} bytes, more than the limit of "
                                f"{IMAGE_FILE_MAX_BYTES:,} for one image file. Shrink it, or "
                                "move it out of the data folder.")
            try:
                with warnings.catch_warnings():  # a header over Pillow's bound: refused below
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    with Image.open(path) as image:
                        width, height = image.size  # from the header: nothing decoded yet
                        mode = image.mode
            except Image.DecompressionBombError:
                width, height, mode = IMAGE_MAX_PIXELS + 1, 1, "L"
            except Exception as exc:  # Pillow reports bad files with many exception types
                raise _unreadable(path, exc) from None
            if width * height == 0:
                raise DataError(f"Image {path} has {width}x{height} pixels: no image. Remove it "
                                "from the data folder.")
            if width * height > IMAGE_MAX_PIXELS:
                raise DataError(f"Image {path} is {width}x{height} pixels, more than the limit "
                                f"of {IMAGE_MAX_PIXELS:,} for one image. Shrink it (the images "
                                "are resized to --image-size anyway), or remove it.")
            sizes[(width, height)] += 1
            colour = colour or mode not in _GRAY
        channels = self.channels or (3 if colour else 1)
        (width, height), common = sizes.most_common(1)[0]
        side = self.side or max(width, height)
        if side > SOURCE_MAX_SIDE:
            raise DataError(f"The images of {self.data_dir} are mostly {width}x{height} pixels; "
                            f"resized to {side}x{side} they would be larger than the limit of "
                            f"{SOURCE_MAX_SIDE} a side. Pass --image-size N (e.g. 64) to choose "
                            "the side.")
        other = len(paths) - (sizes[(side, side)])
        if other:
            logger.info("%d of the %d images in %s are not %dx%d pixels; they are resized to "
                        "it (--image-size chooses the side).", other, len(paths), self.data_dir,
                        side, side)
        return channels, side

    # ------------------------------------------------------------------------ reading it
    def _ready(self) -> SourceInfo:
        return self._info if self._info is not None else self.prepare(fetch=False)

    def labels(self, split: str) -> np.ndarray:
        self._ready()
        return np.array([label for _, label in self._files[split]], dtype=np.int32)

    def key(self, split: str) -> str:
        info = self._ready()
        digest = hashlib.sha1(f"folder{_KEY_VERSION}|{split}|{info.channels}|"
                              f"{info.image_size}|{self.test_split}".encode())
        for path, label in self._files[split]:
            stat = path.stat()
            digest.update(f"|{path.resolve()}|{label}|{stat.st_size}|{stat.st_mtime_ns}"
                          .encode())
        return digest.hexdigest()

    def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        from PIL import Image

        info = self._ready()
        side, mode = info.image_size, "L" if info.channels == 1 else "RGB"
        files = self._files[split]
        images = np.empty((len(files), info.channels, side, side), dtype=np.uint8)
        for row, (path, _) in enumerate(files):
            try:
                with Image.open(path) as image:
                    image = image.convert(mode)
                    if image.size != (side, side):
                        image = image.resize((side, side), Image.Resampling.BILINEAR)
                    array = np.asarray(image, dtype=np.uint8)
            except Exception as exc:  # a file whose header reads but whose pixels do not
                raise _unreadable(path, exc) from None
            images[row] = array[None] if info.channels == 1 else array.transpose(2, 0, 1)
        return images, self.labels(split)


def _special(path: Path) -> str | None:
    from trainer.fileio import special_file

    refused = special_file(path, "Image")
    return f"{refused} Remove it from the data folder." if refused else None


def _unreadable(path: Path, exc: BaseException) -> DataError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return DataError(f"Image {path} cannot be read ({reason}): it is not an image Pillow "
                     "understands, or it is truncated or damaged. Re-save it as PNG or JPEG, or "
                     "remove it from the data folder.")
