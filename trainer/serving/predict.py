"""Read your own images with a trained checkpoint.

``python predict.py --ckpt runs/demo photo.jpg scans/ t10k-images-idx3-ubyte.gz`` prints the three
most likely classes of every image, by name. How a picture is prepared depends on what the
checkpoint was trained on (its record of the data):

* digits (MNIST, generated digits, KMNIST): images of any size and colour are first brought to
  MNIST's convention, the way the MNIST digits themselves were made: grayscale, light digit on a
  dark background (a light background is detected from the border and inverted), cropped to the
  digit, scaled to fit a 20x20 box keeping the aspect ratio, and pasted into 28x28 with the centre
  of mass in the middle. Then the training pipeline's own per-image operations
  (:func:`trainer.data.image_transforms`) turn them into network inputs. IDX files hold
  MNIST-style digits already and skip the first step.
* other images (photos, Fashion-MNIST): converted to the model's channels (grayscale or RGB),
  resized to its input side, and normalised as training normalised them.

Nothing here imports MindSpore until the arguments are parsed and the images are read, so
``--help`` and mistakes in the inputs answer at once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainer.data.idx import IMAGE_SIZE
from trainer.errors import ConfigError, DataError

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
# Ink (in 0-255 levels above the background) below which a picture holds no digit: blank paper,
# a black or fully transparent image, or one of so little contrast that stretching it would only
# magnify noise.
MIN_CONTRAST = 24.0
# Pictures are shrunk to this side before they are fitted (the digit ends up 20x20 anyway).
_WORK_SIDE = 1024


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
    if max(image.size) > _WORK_SIDE:
        image.thumbnail((_WORK_SIDE, _WORK_SIDE))
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return fit_digit(gray_levels(image))


def gray_levels(image) -> np.ndarray:
    """A Pillow image's brightness as float32 in [0, 255], whatever its bit depth.

    16-bit grayscale (PNG's ``I;16``, or ``I`` holding values above 255) is scaled by 255/65535,
    so a 16-bit picture gives the same levels as its 8-bit copy; floating-point images in [0, 1]
    are scaled by 255. ``convert("L")`` would instead clip every value above 255 to white.
    """
    if image.mode.startswith("I;16"):
        return np.asarray(image, dtype=np.float32) * (255.0 / 65535.0)
    if image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = float(values.max(initial=0.0))
        if image.mode == "F" and top <= 1.0:
            values = values * 255.0
        elif top > 255.0:
            values = values * (255.0 / (65535.0 if top <= 65535.0 else top))
        return np.clip(values, 0.0, 255.0).astype(np.float32)
    return np.asarray(image.convert("L"), dtype=np.float32)


def fit_digit(gray: np.ndarray) -> np.ndarray:
    """Turns a grayscale picture of a digit (any size, either polarity) into an MNIST digit.

    The background's brightness is the median of the border pixels; a light one is inverted. Ink
    is stretched to [0, 1] above the background, the picture is cropped to the pixels with at
    least 25% of the strongest ink, scaled (keeping the aspect ratio) to fit 20x20, and pasted
    into 28x28 with its centre of mass at the middle (shifted back inside where needed).

    Args:
        gray: A 2-D array of brightness values in [0, 255].

    Returns:
        A ``(28, 28)`` uint8 array; all zeros when the picture holds no digit (less than
        :data:`MIN_CONTRAST` levels of ink above the background).
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
    if peak < MIN_CONTRAST:
        return out  # no digit: see is_blank
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


def is_blank(digit: np.ndarray) -> bool:
    """Whether an MNIST-style digit holds no ink at all (nothing for the network to read)."""
    return not bool(np.any(digit))


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file and returns it as an MNIST digit (see :func:`to_mnist`).

    Raises:
        DataError: the file is missing, not an image, or damaged (the message names it).
    """
    return _read_image(Path(path), to_mnist)


def _read_image(path: Path, convert) -> np.ndarray:
    """Opens an image file within the pixel limit and returns ``convert(image)``.

    Raises:
        DataError: the file is missing, not an image, damaged or too large.
    """
    from PIL import Image

    from trainer.limits import IMAGE_MAX_PIXELS

    too_big = (f"Image {path} is larger than the limit of {IMAGE_MAX_PIXELS:,} pixels for a "
               "picture of a digit. Crop or shrink it first.")
    try:
        with Image.open(path) as image:
            width, height = image.size  # from the header: nothing is decoded yet
            if width * height > IMAGE_MAX_PIXELS:
                raise DataError(too_big.replace("is larger", f"is {width}x{height} pixels, more"))
            image.load()
            return convert(image)
    except DataError:
        raise
    except Image.DecompressionBombError:  # Pillow's own, larger bound, checked in open()
        raise DataError(too_big) from None
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
    images: np.ndarray  # [N, 28, 28] uint8 in MNIST's convention, or [N, C, S, S] uint8
    labels: np.ndarray | None = None
    blank: set[int] = field(default_factory=set)  # images that hold no digit


@dataclass(frozen=True)
class Preparation:
    """How pictures become network inputs: ``digits`` (MNIST's convention, 28x28) or
    ``natural`` (``channels`` and ``image_size`` of the model)."""

    kind: str = "digits"
    channels: int = 1
    image_size: int = IMAGE_SIZE

    @classmethod
    def of(cls, loaded) -> Preparation:
        """The preparation a loaded checkpoint's record asks for."""
        if loaded.kind == "digits" and loaded.in_channels == 1:
            return cls()
        return cls("natural", loaded.in_channels, loaded.image_size)

    @property
    def digits(self) -> bool:
        return self.kind == "digits"


def load_picture(path: str | os.PathLike, channels: int, image_size: int) -> np.ndarray:
    """Reads an image file as a model of ``channels`` and ``image_size`` takes it: converted to
    grayscale or RGB (transparent pixels over white, the camera's orientation applied) and
    resized bilinearly; ``[C, S, S]`` uint8.

    Raises:
        DataError: the file is missing, not an image, damaged or too large (the message names
            it).
    """
    from PIL import Image, ImageOps

    def convert(image) -> np.ndarray:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)),
                                          rgba)
        image = image.convert("L" if channels == 1 else "RGB")
        image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
        return array[None] if channels == 1 else array.transpose(2, 0, 1)

    return _read_image(Path(path), convert)


def refuse_special(path: Path, what: str = "Input",
                   fix: str = "Name image files, folders of images or an IDX file saved on "
                              "disk.") -> None:
    """Refuses a path that exists but is not a regular file or a folder (a FIFO, a device, a
    socket) before anything opens it: opening a FIFO waits for a writer, and a device such as
    ``/dev/zero`` never ends.

    Raises:
        DataError: the message names the path and what it is.
    """
    from trainer.fileio import special_file

    refused = special_file(path, what)
    if refused:
        raise DataError(f"{refused} {fix}")


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


def _read_idx_images(path: Path, preparation: Preparation = Preparation()) -> np.ndarray:
    from trainer.data.idx import read_idx, read_idx_header
    from trainer.limits import IDX_MAX_REFIT_PIXELS, IDX_MAX_SIDE, PREDICT_MAX_IMAGES

    dims = read_idx_header(path)
    if len(dims) != 3:
        raise DataError(f"IDX file {path} has {len(dims)} dimension(s); an images file has 3 "
                        "(count, rows, columns). Pass labels with --labels.")
    if dims[1:] != (IMAGE_SIZE, IMAGE_SIZE) and dims[0] * dims[1] * dims[2] > \
            IDX_MAX_REFIT_PIXELS:
        raise DataError(f"IDX file {path} holds {dims[0]:,} images of {dims[1]}x{dims[2]} "
                        f"pixels, more than the limit of {IDX_MAX_REFIT_PIXELS:,} pixels of "
                        "images that are not 28x28 (each is refitted to MNIST's convention). "
                        "Split the file, or resize the images to 28x28 first.")
    if not preparation.digits:
        if preparation.channels != 1:
            raise DataError(f"IDX file {path} holds grayscale images, but the checkpoint's "
                            f"network takes {preparation.channels}-channel images. Pass image "
                            "files (PNG, JPEG) instead.")
        from trainer.data.cache import resize

        images = read_idx(path, max_items=PREDICT_MAX_IMAGES, max_side=IDX_MAX_SIDE)
        return resize(images[:, None], preparation.image_size) if len(images) else \
            np.zeros((0, 1, preparation.image_size, preparation.image_size), np.uint8)
    images = read_idx(path, max_items=PREDICT_MAX_IMAGES, max_side=IDX_MAX_SIDE)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        # Not MNIST-sized: treat every entry as a picture to bring to the convention.
        images = np.stack([fit_digit(im) for im in images]) if len(images) else images
    return images


def collect_inputs(paths: Sequence[str | os.PathLike],
                   labels: str | os.PathLike | None = None,
                   preparation: Preparation = Preparation()) -> Inputs:
    """Reads every input: image files, folders of images (not recursive) and IDX images files.

    Args:
        paths: What the user named.
        labels: An IDX labels file for the one IDX images input. Defaults to `None`.
        preparation: How pictures become inputs (see :class:`Preparation`). Defaults to
            digits in MNIST's convention.

    Raises:
        DataError: a path does not exist, a folder holds no images, a file cannot be read, or the
            labels do not pair up with the images.
        ConfigError: ``labels`` is given without exactly one IDX images input.
    """
    from trainer.limits import PREDICT_MAX_IMAGES

    names: list[str] = []
    arrays: list[np.ndarray] = []
    idx_inputs = []
    if preparation.digits:
        read = load_image
    else:
        def read(file: Path) -> np.ndarray:
            return load_picture(file, preparation.channels, preparation.image_size)
    for raw in paths:
        path = _existing(Path(raw))
        refuse_special(path)
        if len(names) > PREDICT_MAX_IMAGES:
            raise DataError(f"The inputs hold more than {PREDICT_MAX_IMAGES:,} images, the limit "
                            "of one predict.py call. Predict them in several calls.")
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file()
                           and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
            if not files:
                raise DataError(f"Folder {path} holds no images (looked for "
                                f"{', '.join(IMAGE_SUFFIXES)}). Name image files or a folder "
                                "that holds some.")
            for file in files:
                names.append(str(file))
                arrays.append(read(file)[None])
        elif not path.exists():
            raise DataError(f"Input {path} does not exist. Name image files, folders of images "
                            "or an IDX images file.")
        elif _is_idx(path):
            images = _read_idx_images(path, preparation)
            idx_inputs.append((path, len(names), len(images)))
            names += [f"{path}[{i}]" for i in range(len(images))]
            arrays.append(images)
        else:
            names.append(str(path))
            arrays.append(read(path)[None])
    empty = ((0, IMAGE_SIZE, IMAGE_SIZE) if preparation.digits else
             (0, preparation.channels, preparation.image_size, preparation.image_size))
    images = np.concatenate(arrays) if arrays else np.zeros(empty, np.uint8)
    if len(images) > PREDICT_MAX_IMAGES:
        raise DataError(f"The inputs hold {len(images):,} images, more than the limit of "
                        f"{PREDICT_MAX_IMAGES:,} for one predict.py call. Predict them in several "
                        "calls.")
    blank = ({int(i) for i in np.flatnonzero(~images.reshape(len(images), -1).any(axis=1))}
             if preparation.digits else set())
    result = Inputs(names, images, blank=blank)
    if labels is not None:
        if len(idx_inputs) != 1 or len(paths) != 1:
            raise ConfigError("--labels needs exactly one input, an IDX images file (such as "
                              "t10k-images-idx3-ubyte); it pairs the labels with its images.")
        from trainer.data.idx import read_idx

        label_path, (image_path, _, count) = _existing(Path(labels)), idx_inputs[0]
        refuse_special(label_path, "Labels file", "Pass the IDX labels file of those images, "
                       "saved on disk, to --labels.")
        values = read_idx(label_path)
        if values.ndim != 1 or len(values) != count:
            raise DataError(f"Labels file {label_path} holds {values.shape[0]} labels "
                            f"({values.ndim} dimension(s)), but {image_path} holds {count} "
                            "images; pass the labels file that belongs to those images.")
        result.labels = values.astype(np.int64)
    return result


def _existing(path: Path) -> Path:
    """``path``, or its gzipped twin when only ``path.gz`` exists (as training accepts both)."""
    if not path.exists():
        gz = path.with_name(path.name + ".gz")
        if gz.is_file():
            return gz
    return path


# ------------------------------------------------------------------------------- inference
def network_inputs(images: np.ndarray, image_size: int, normalisation=None) -> np.ndarray:
    """Applies the training pipeline's per-image operations to uint8 images.

    Args:
        images: ``[N, 28, 28]`` uint8 MNIST-style digits, or ``[N, C, S, S]`` uint8 images of
            the network's side.
        image_size: Side the network expects (32 for LeNet, 28 for the MLP).
        normalisation: The mean and deviation training normalised with. Defaults to `None`:
            MNIST's.

    Returns:
        ``[N, C, image_size, image_size]`` float32, exactly as training feeds the network.
    """
    from trainer.data.transforms import MNIST

    norm = normalisation or MNIST
    if images.ndim == 4:
        from trainer.data.transforms import value_table

        values = value_table(norm)
        out = np.empty(images.shape, dtype=np.float32)
        for channel in range(images.shape[1]):
            out[:, channel] = values[channel][images[:, channel]]
        return out
    from mindspore.dataset import transforms

    from trainer.data import image_transforms

    ops = transforms.Compose(image_transforms(image_size, norm))
    if not len(images):
        return np.zeros((0, 1, image_size, image_size), dtype=np.float32)
    return np.stack([ops(np.ascontiguousarray(im)[:, :, None]) for im in images])


def predict_probabilities(network, images: np.ndarray, image_size: int,
                          batch_size: int = 256, normalisation=None) -> np.ndarray:
    """Class probabilities for images (see :func:`network_inputs`), ``batch_size`` images per
    network call.

    Every call gets the same batch shape (the last batch is padded), so a graph-mode network is
    compiled once.

    Args:
        network: A ``mindspore.nn.Cell`` in inference mode that returns logits.
        images: ``[N, 28, 28]`` uint8 digits, or ``[N, C, S, S]`` uint8 images.
        image_size: Side the network expects.
        batch_size: Images per call. Defaults to `256`.
        normalisation: The mean and deviation training normalised with. Defaults to `None`:
            MNIST's.

    Returns:
        ``[N, num_classes]`` float64 probabilities.
    """
    import mindspore as ms

    from trainer.evaluation import softmax

    batch = max(1, min(batch_size, len(images)))
    chunks = []
    for start in range(0, len(images), batch):
        x = network_inputs(images[start:start + batch], image_size, normalisation)
        real = len(x)
        if real < batch:
            x = np.concatenate([x, np.zeros((batch - real, *x.shape[1:]), dtype=x.dtype)])
        chunks.append(network(ms.Tensor(x)).asnumpy()[:real])
    return softmax(np.concatenate(chunks))
