"""MNIST's IDX files: names, reading, writing and validation."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from trainer.errors import DataError
from trainer.fileio import atomic_path
from trainer.limits import IDX_MAX_ITEMS

# The four files of the MNIST layout, by split. Each may also be present gzipped (name + ".gz").
SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

IMAGE_SIZE = 28
NUM_CLASSES = 10

_UBYTE = 0x08
_ALLOWED_NDIM = (1, 3)
_REFETCH = "To fix it, re-download it, or delete the folder and run again so it is fetched."


def _is_gz(path: Path) -> bool:
    return path.name.endswith(".gz")


def refuse_special(path: Path, what: str = "IDX file") -> None:
    """Refuses a path that exists but is not a regular file (a FIFO, a device, a socket), before
    anything opens it: opening a FIFO waits for a writer, and a device may never end.

    Raises:
        DataError: the path is such a file; the message names it and what it is.
    """
    from trainer.fileio import special_file

    refused = special_file(path, what)
    if refused:
        raise DataError(f"{refused} Put the file itself there, or remove it so the data is "
                        "fetched or generated again.")


def _actual(path: Path) -> Path:
    """``path``, or its gzipped twin (``name.gz``, as MNIST ships) when the raw name is missing."""
    refuse_special(path)
    if not _is_gz(path) and not os.path.lexists(path):
        twin = path.with_name(path.name + ".gz")
        refuse_special(twin)
        if twin.is_file():
            return twin
    return path


def _open(path: Path):
    """A binary stream of the file's IDX bytes, decompressed when its name ends in ``.gz``."""
    refuse_special(path)
    try:
        return gzip.open(path, "rb") if _is_gz(path) else open(path, "rb")
    except FileNotFoundError:
        raise DataError(
            f"IDX file {path} does not exist (nor {path.name}.gz). Check the path; train.py "
            "downloads MNIST into --data-dir when its files are missing there."
        ) from None
    except OSError as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: BaseException) -> DataError:
    if isinstance(exc, (gzip.BadGzipFile, EOFError, zlib.error)):
        return DataError(
            f"IDX file {path} is not a valid gzip stream ({exc}); it is probably truncated or "
            f"damaged. {_REFETCH}"
        )
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    return DataError(
        f"IDX file {path} cannot be read: {reason}. Check that it is a readable file, or delete "
        "it and run again so it is fetched."
    )


def _read_header(stream, path: Path) -> tuple[int, ...]:
    """Reads and checks the magic and the dimensions; the stream is left at the payload."""
    head = stream.read(4)
    if len(head) < 4:
        raise DataError(
            f"IDX file {path} is only {len(head)} bytes long, too short for an IDX header. "
            f"{_REFETCH}"
        )
    if head[0] != 0 or head[1] != 0:
        hint = ""
        if head[:2] == b"\x1f\x8b":
            # A common mistake: a gzipped download saved without its .gz suffix.
            hint = " It looks gzipped: rename it to end in .gz, or decompress it."
        raise DataError(
            f"IDX file {path} does not start with the IDX magic (two zero bytes); it starts with "
            f"{head.hex(' ')}.{hint} {_REFETCH}"
        )
    type_code, ndim = head[2], head[3]
    if type_code != _UBYTE:
        raise DataError(
            f"IDX file {path} has type code 0x{type_code:02x}, but MNIST files hold unsigned bytes "
            f"(0x08). {_REFETCH}"
        )
    if ndim not in _ALLOWED_NDIM:
        raise DataError(
            f"IDX file {path} has {ndim} dimensions, but MNIST files have 1 (labels) or 3 "
            f"(images). {_REFETCH}"
        )
    raw = stream.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise DataError(
            f"IDX file {path} is {4 + len(raw)} bytes long, too short for its {4 + 4 * ndim}-byte "
            f"header. {_REFETCH}"
        )
    return struct.unpack(f">{ndim}I", raw)


def read_idx_header(path: str | os.PathLike[str]) -> tuple[int, ...]:
    """The dimensions an IDX file's header declares, without reading its payload.

    Raises:
        DataError: as :func:`read_idx`, for a missing file or a bad header.
    """
    path = _actual(Path(path))
    try:
        with _open(path) as stream:
            return _read_header(stream, path)
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as exc:
        raise _unreadable(path, exc) from None


def read_idx(path: str | os.PathLike[str], *, max_items: int = IDX_MAX_ITEMS,
             max_side: int = IMAGE_SIZE) -> np.ndarray:
    """Reads an IDX file of unsigned bytes, raw or gzipped.

    The file is gzip-decompressed when its name ends in ``.gz``; a raw name that does not exist
    is read from its ``.gz`` twin. Only type code 0x08 (unsigned
    byte) with 1 dimension (labels) or 3 dimensions (images) is accepted, which is all MNIST uses.
    The header's dimensions are checked against the limits before any memory is spent on the
    payload, and exactly the declared number of bytes is read: a file (or a gzip stream) longer
    than its header says is refused after reading one byte more, never decompressed whole.

    Args:
        path: The file to read.
        max_items: Most items (images or labels) accepted. Defaults to
            :data:`trainer.limits.IDX_MAX_ITEMS`.
        max_side: Largest image side accepted. Defaults to `28` (MNIST's).

    Returns:
        A writable uint8 array shaped as the header says.

    Raises:
        DataError: The file is missing, unreadable, not valid gzip, has a bad header, declares
            more than the limits allow, or its payload is shorter or longer than the header's
            dimensions require.
    """
    path = _actual(Path(path))
    try:
        with _open(path) as stream:
            dims = _read_header(stream, path)
            _check_dims(path, dims, max_items, max_side)
            expected = math.prod(dims)
            if not _is_gz(path):
                actual = path.stat().st_size - 4 - 4 * len(dims)
                if actual != expected:
                    raise _length_fault(path, dims, expected, actual)
            data = stream.read(expected)
            extra = stream.read(1)
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as exc:
        raise _unreadable(path, exc) from None
    if len(data) != expected or extra:
        raise _length_fault(path, dims, expected, len(data) + len(extra), at_least=bool(extra))
    # Copy so callers get a writable array rather than a view of immutable bytes.
    return np.frombuffer(data, dtype=np.uint8).reshape(dims).copy()


def _check_dims(path: Path, dims: tuple[int, ...], max_items: int, max_side: int) -> None:
    shape = " x ".join(str(d) for d in dims)
    if dims[0] > max_items:
        raise DataError(
            f"IDX file {path} declares {dims[0]:,} items ({shape}), more than the limit of "
            f"{max_items:,} per IDX file (MNIST's training file has 60,000), so it is not an "
            f"MNIST file. {_REFETCH}"
        )
    if len(dims) == 3 and max(dims[1:]) > max_side:
        raise DataError(
            f"IDX file {path} declares images of {dims[1]}x{dims[2]} pixels ({shape}), larger than "
            f"the limit of {max_side}x{max_side} (MNIST images are {IMAGE_SIZE}x{IMAGE_SIZE}). "
            f"{_REFETCH}"
        )


def _length_fault(path: Path, dims: tuple[int, ...], expected: int, actual: int,
                  at_least: bool = False) -> DataError:
    fault = "truncated" if actual < expected else "followed by trailing bytes"
    shape = " x ".join(str(d) for d in dims)
    holds = f"more than {expected}" if at_least else f"{actual}"
    return DataError(
        f"IDX file {path} is {fault}: its header declares {shape} values, so {expected} bytes "
        f"of data, but it holds {holds}. {_REFETCH}"
    )


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Writes a uint8 array as an IDX file, atomically.

    The data goes to a temporary file in the same folder, which is flushed, synced and then
    renamed over ``path``, so an interrupted write never leaves a partial file under the real
    name. The file is gzipped when ``path`` ends in ``.gz``.

    Args:
        path: The file to write; its folder must exist.
        array: uint8 data with 1 or 3 dimensions.

    Raises:
        ValueError: ``array`` is not uint8 or has another number of dimensions.
        DataError: The file cannot be written (folder missing, no permission, disk full).
    """
    path = Path(path)
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in _ALLOWED_NDIM:
        raise ValueError(
            f"write_idx needs a uint8 array of 1 or 3 dimensions, got {array.dtype} with shape "
            f"{array.shape}"
        )
    header = bytes([0, 0, _UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = np.ascontiguousarray(array).tobytes()
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as raw:
            if _is_gz(path):
                # Fixed name and mtime in the gzip header keep the output byte-for-byte
                # reproducible; the default would embed the temporary name and the clock.
                with gzip.GzipFile(filename=path.name, mode="wb", fileobj=raw, mtime=0,
                                   compresslevel=6) as stream:
                    stream.write(header)
                    stream.write(payload)
            else:
                raw.write(header)
                raw.write(payload)
    except OSError as exc:
        raise DataError(
            f"Cannot write IDX file {path}: {exc.strerror or exc}. Check that the folder exists, "
            "that you may write to it and that the disk has free space."
        ) from None


def _locate(folder: Path, name: str) -> Path | None:
    """``folder/name`` if it exists, else ``folder/name.gz`` if that does, else None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        refuse_special(candidate)
        if candidate.is_file():
            return candidate
    return None


def find_split(split_dir: str | os.PathLike[str], split: str) -> tuple[Path, Path] | None:
    """Finds a split's images and labels files, raw or gzipped.

    Raw files win over gzipped ones when both exist, since they need no decompression.

    Args:
        split_dir: The split's folder, e.g. ``data/train``.
        split: ``"train"`` or ``"test"``.

    Returns:
        ``(images_path, labels_path)``, or None when either file is missing.

    Raises:
        ValueError: ``split`` is not one of :data:`SPLIT_FILES`.
    """
    if split not in SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(SPLIT_FILES)}, got {split!r}")
    folder = Path(split_dir)
    images_name, labels_name = SPLIT_FILES[split]
    images, labels = _locate(folder, images_name), _locate(folder, labels_name)
    if images is None or labels is None:
        return None
    return images, labels


def validate_split(images_path: str | os.PathLike[str], labels_path: str | os.PathLike[str],
                   num_classes: int = NUM_CLASSES) -> int:
    """Checks that an images file and a labels file form a usable MNIST split.

    Args:
        images_path: IDX file of 28x28 images.
        labels_path: IDX file of labels, one per image.
        num_classes: Classes of the data set (labels run from 0 to one less). Defaults to `10`.

    Returns:
        The number of examples.

    Raises:
        DataError: Either file is unreadable or malformed, the images are not 28x28, the counts
            differ or are zero, or a label is outside 0-9.
    """
    images_path, labels_path = Path(images_path), Path(labels_path)
    dims = read_idx_header(images_path)  # checked before any memory is spent on the payload
    if len(dims) != 3:
        raise DataError(
            f"Images file {images_path} has {len(dims)} dimension(s), but images need 3 "
            "(count, rows, columns); it may be a labels file. Check that the images and labels "
            f"files are not swapped. {_REFETCH}"
        )
    count, rows, cols = dims
    _check_dims(images_path, dims, IDX_MAX_ITEMS, max_side=max(rows, cols))
    if (rows, cols) != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(
            f"Images file {images_path} holds {rows}x{cols} images, but MNIST images are "
            f"{IMAGE_SIZE}x{IMAGE_SIZE}. Use the MNIST files, or resize your images to "
            f"{IMAGE_SIZE}x{IMAGE_SIZE} before writing them."
        )
    if count < 1:
        raise DataError(f"Images file {images_path} holds no images. {_REFETCH}")
    read_idx(images_path)  # the payload: its length, within the limits
    labels = read_idx(labels_path)
    if labels.ndim != 1:
        raise DataError(
            f"Labels file {labels_path} has {labels.ndim} dimensions, but labels need 1; it may "
            "be an images file. Check that the images and labels files are not swapped. "
            f"{_REFETCH}"
        )
    if labels.shape[0] != count:
        raise DataError(
            f"Images file {images_path} holds {count} images but labels file {labels_path} holds "
            f"{labels.shape[0]} labels; they must pair up one to one. Make sure both files come "
            "from the same download, or delete the folder and run again so it is fetched."
        )
    bad = labels >= num_classes
    n_bad = int(np.count_nonzero(bad))
    if n_bad:
        first = int(np.argmax(bad))
        raise DataError(
            f"Labels file {labels_path} has {n_bad} value{'s' if n_bad > 1 else ''} outside "
            f"0-{num_classes - 1} (first: {labels[first]} at index {first}). {_REFETCH}"
        )
    return count


def missing_files(data_dir: str | os.PathLike[str]) -> list[str]:
    """Lists the expected MNIST files absent from ``data_dir``, raw or gzipped.

    Args:
        data_dir: The data root holding ``train/`` and ``test/``.

    Returns:
        Relative paths such as ``train/train-images-idx3-ubyte``, in a fixed order; empty when
        all four files are present.
    """
    root = Path(data_dir)
    return [
        f"{split}/{name}"
        for split, names in SPLIT_FILES.items()
        for name in names
        if _locate(root / split, name) is None
    ]
