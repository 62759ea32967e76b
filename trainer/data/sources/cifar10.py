"""CIFAR-10: 60,000 32x32 colour photos in ten classes, from the binary version its authors
publish (``cifar-10-binary.tar.gz``, downloaded MD5-checked when missing) or its extracted
folder ``cifar-10-batches-bin/``, in ``--data-dir`` (default ``data/cifar10``).

Every member of the archive is checked before any is read (its name stays inside the folder, it
is a regular file or a folder, within the size limits), and the batches are read from the
archive into arrays: nothing is extracted into the data folder. Each batch is a run of 3,073-byte
records, a label byte and 32x32 pixels of red, then green, then blue; the class names are the
lines of ``batches.meta.txt``.
"""

from __future__ import annotations

import hashlib
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from trainer.data.sources.base import NATURAL, Source, SourceInfo, check_class_names
from trainer.errors import DataError
from trainer.registry import register_source

ARCHIVE = "cifar-10-binary.tar.gz"
FOLDER = "cifar-10-batches-bin"
URLS = ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",)
MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # as the authors publish it for the binary version
HOMEPAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"
META = "batches.meta.txt"
BATCHES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
           "test": ("test_batch.bin",)}
SIDE, CHANNELS = 32, 3
RECORD = 1 + CHANNELS * SIDE * SIDE  # a label byte, then the red, green and blue planes
_META_MAX_BYTES = 64 << 10
_KEY_VERSION = 1


@register_source("cifar10", rank=3, default_dir="data/cifar10",
                 help="CIFAR-10's binary version (32x32 colour), downloaded when missing")
class Cifar10(Source):
    """CIFAR-10's 50,000 training and 10,000 test photos (or any batches in its layout).

    Args:
        data_dir: The folder holding ``cifar-10-binary.tar.gz`` or ``cifar-10-batches-bin/``.
        download: Whether a missing archive may be fetched. Defaults to `True`.
        progress: Whether a download shows a progress bar. Defaults to `True`.
    """

    name = "cifar10"
    title = "CIFAR-10"
    kind = NATURAL
    urls = URLS
    md5 = MD5

    def __init__(self, data_dir: Path, download: bool = True, progress: bool = True) -> None:
        self.data_dir = Path(data_dir).expanduser()
        self.download, self.progress = download, progress
        self.origin = str(self.data_dir.resolve())
        self._where: Path | None = None  # the archive or the extracted folder
        self._sizes: dict[str, int] = {}
        self._meta = b""

    def _guidance(self) -> str:
        return (f"Put {ARCHIVE} (from {self.urls[0]}, see {HOMEPAGE}) or its extracted "
                f"{FOLDER}/ into {self.data_dir}.")

    # ------------------------------------------------------------------------ finding it
    def prepare(self, *, fetch: bool = True) -> SourceInfo:
        folder = self.data_dir / FOLDER
        if folder.is_dir():
            self._where, self._sizes = folder, self._check_folder(folder)
        else:
            from trainer.data.download import ensure_file

            archive = ensure_file(self.data_dir / ARCHIVE, self.urls, self.md5,
                                  title=self.title, guidance=self._guidance(),
                                  allow_download=fetch and self.download,
                                  progress=self.progress)
            self._where, self._sizes = archive, self._check_archive(archive)
        names = self._class_names()
        counts = {split: sum(self._sizes[b] for b in batches) // RECORD
                  for split, batches in BATCHES.items()}
        return SourceInfo(channels=CHANNELS, image_size=SIDE, class_names=names, counts=counts,
                          kind=self.kind, about=f"{self.title} in {self._where}")

    def _check_folder(self, folder: Path) -> dict[str, int]:
        """The sizes of the extracted folder's files, each checked (present, a regular file,
        within the limits, whole records)."""
        from trainer.data.idx import refuse_special

        sizes = {}
        for name in (META, *BATCHES["train"], *BATCHES["test"]):
            path = folder / name
            refuse_special(path, "CIFAR-10 file")
            if not path.is_file():
                raise DataError(f"CIFAR-10 folder {folder} has no {name}. {self._guidance()}")
            sizes[name] = path.stat().st_size
            self._check_size(name, sizes[name], str(path))
        return sizes

    def _check_archive(self, archive: Path) -> dict[str, int]:
        """Every member's name, type and size, before anything is read; the sizes of the
        members the source reads."""
        from trainer.data.download import _unsafe_name
        from trainer.limits import CIFAR_MAX_MEMBERS

        fix = (f"Delete {archive} and run again so it is downloaded, or put the authors' "
               f"archive there ({self.urls[0]}).")
        sizes: dict[str, int] = {}
        try:
            with tarfile.open(archive, "r:gz") as tarred:
                for count, member in enumerate(tarred, start=1):
                    if count > CIFAR_MAX_MEMBERS:
                        raise DataError(f"CIFAR-10 archive {archive} holds more than "
                                        f"{CIFAR_MAX_MEMBERS:,} members; it is not CIFAR-10's "
                                        f"(which holds 8). {fix}")
                    why = _unsafe_name(member.name)
                    if why is None and not (member.isfile() or member.isdir()):
                        why = "a link or a special file" if (member.issym() or member.islnk()) \
                            else "not a regular file"
                    if why:
                        raise DataError(f"CIFAR-10 archive {archive} holds a member named "
                                        f"{member.name!r} ({why}); nothing of it was read. {fix}")
                    base = PurePosixPath(member.name).name
                    if member.isfile() and base in (META, *BATCHES["train"], *BATCHES["test"]):
                        if base in sizes:
                            raise DataError(f"CIFAR-10 archive {archive} holds {base} twice; "
                                            f"nothing of it was read. {fix}")
                        self._check_size(base, member.size, f"{archive}:{member.name}")
                        sizes[base] = member.size
                        if base == META:  # small, and read in this pass over the stream
                            stream = tarred.extractfile(member)
                            self._meta = stream.read(_META_MAX_BYTES + 1) if stream else b""
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise DataError(f"CIFAR-10 archive {archive} cannot be read ({exc}); it is "
                            f"probably truncated or damaged. {fix}") from None
        missing = [n for n in (META, *BATCHES["train"], *BATCHES["test"]) if n not in sizes]
        if missing:
            raise DataError(f"CIFAR-10 archive {archive} has no {', '.join(missing)}. {fix}")
        return sizes

    def _check_size(self, name: str, size: int, where: str) -> None:
        from trainer.limits import CIFAR_MEMBER_MAX_BYTES

        limit = _META_MAX_BYTES if name == META else CIFAR_MEMBER_MAX_BYTES
        if size > limit:
            raise DataError(f"CIFAR-10 file {where} holds {size:,} bytes, more than the limit of "
                            f"{limit:,} for {name}. {self._guidance()}")
        if name != META and (size == 0 or size % RECORD):
            raise DataError(f"CIFAR-10 batch {where} holds {size:,} bytes, not a whole number "
                            f"of {RECORD:,}-byte records (a label byte and 32x32 pixels of red, "
                            f"green and blue); it is damaged or not a CIFAR-10 batch. "
                            f"{self._guidance()}")

    # ------------------------------------------------------------------------ reading it
    def _read(self, names: tuple[str, ...]) -> dict[str, bytes]:
        """The named files, from the extracted folder or from the checked archive."""
        if self._where is None:
            self.prepare(fetch=False)
        if self._where.is_dir():
            return {n: (self._where / n).read_bytes()[:self._sizes[n]] for n in names}
        found: dict[str, bytes] = {}
        with tarfile.open(self._where, "r:gz") as tarred:
            for member in tarred:
                base = PurePosixPath(member.name).name
                if member.isfile() and base in names:
                    stream = tarred.extractfile(member)
                    data = stream.read(self._sizes[base] + 1) if stream else b""
                    if len(data) != self._sizes[base]:
                        raise DataError(f"CIFAR-10 archive {self._where} changed while it was "
                                        f"read ({base}). Run again.")
                    found[base] = data
        return found

    def _class_names(self) -> tuple[str, ...]:
        if self._where is not None and self._where.is_dir():
            self._meta = self._read((META,))[META]
        raw = self._meta
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"CIFAR-10's {META} in {self._where} is not text (UTF-8); it should "
                            f"hold one class name a line. {self._guidance()}") from None
        names = [line.strip() for line in text.splitlines() if line.strip()]
        return check_class_names(names, f"CIFAR-10's {META} in {self._where}")

    def key(self, split: str) -> str:
        digest = hashlib.sha1(f"cifar{_KEY_VERSION}|{split}".encode())
        paths = ([self._where] if self._where.is_file()
                 else [self._where / n for n in (META, *BATCHES[split])])
        for path in paths:
            stat = path.stat()
            digest.update(f"|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        return digest.hexdigest()

    def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        names = self._class_names()
        data = self._read(BATCHES[split])
        images, labels = [], []
        for name in BATCHES[split]:
            records = np.frombuffer(data[name], dtype=np.uint8).reshape(-1, RECORD)
            batch_labels = records[:, 0].astype(np.int32)
            if len(batch_labels) and int(batch_labels.max()) >= len(names):
                bad = int(batch_labels.max())
                raise DataError(f"CIFAR-10 batch {name} in {self._where} has label {bad}, but "
                                f"{META} names {len(names)} classes (0-{len(names) - 1}). The "
                                f"batch and its {META} do not belong together. "
                                f"{self._guidance()}")
            images.append(records[:, 1:].reshape(-1, CHANNELS, SIDE, SIDE))
            labels.append(batch_labels)
        return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)
