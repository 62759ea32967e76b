"""Fetch a data set of MNIST's four IDX files once (MNIST, Fashion-MNIST, KMNIST), check every
file against known MD5 sums, and never leave half a data set.

`ensure_idx` (`ensure_mnist` for MNIST) returns at once when the four IDX files are already in
place. Otherwise it tries a list of sources in order (for MNIST: MindSpore's archive first, then
mirrors of the official gzipped files; for the others, their publishers' files), stages each
attempt in a temporary folder inside the data folder, verifies every file's MD5, and only then
moves the files into ``train/`` and ``test/``.

Example:
    >>> from trainer.data.download import ensure_mnist
    >>> data_dir = ensure_mnist("data/mnist")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import socket
import tarfile
import tempfile
import urllib.error
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import IO, Any

from download import download

from trainer.data.idx import SPLIT_FILES, refuse_special
from trainer.errors import ConfigError, DataError
from trainer.fileio import hold_lock, remove_stale_staging

logger = logging.getLogger(__name__)

# The four files, relative to the data folder, in the layout MnistDataset reads.
MNIST_FILES: tuple[str, ...] = tuple(
    f"{split}/{name}" for split, names in SPLIT_FILES.items() for name in names
)

# MD5 of the official gzipped files as published with MNIST.
GZ_MD5: Mapping[str, str] = MappingProxyType({
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
})

# MD5 of the decompressed files. The two t10k sums were checked against the official test set;
# the two train sums are the values widely quoted for the full 60,000-digit training set.
RAW_MD5: Mapping[str, str] = MappingProxyType({
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
})

# An archive may hold either form, so it is checked against both tables.
ALL_MD5: Mapping[str, str] = MappingProxyType({**RAW_MD5, **GZ_MD5})

MINDSPORE_MNIST_URL = (
    "https://mindspore-website.obs.cn-north-4.myhuaweicloud.com/notebook/datasets/MNIST_Data.zip"
)
MIRROR_URLS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

DEFAULT_TIMEOUT = 30.0

SOURCE_KINDS = ("archive", "files")

# The raw training images are 47 MB; anything far larger is not MNIST and might be a zip bomb.
_MAX_MEMBER_BYTES = 256 * 1024 * 1024
_CHUNK = 1024 * 1024

_SPLIT_OF: dict[str, str] = {name: split for split, names in SPLIT_FILES.items() for name in names}


@dataclass(frozen=True)
class Source:
    """A place the four MNIST files can be fetched from, and the sums they must match.

    Args:
        kind: ``"archive"``: one zip or tar(.gz) file holding the four files anywhere inside, raw
            or gzipped. ``"files"``: a folder URL serving each file as ``url + name + suffix``.
        url: The archive's URL, or the folder URL for ``"files"``.
        md5: Expected MD5 per stored file name (``"t10k-images-idx3-ubyte"`` or
            ``"t10k-images-idx3-ubyte.gz"``). A file whose name has no entry is rejected, so
            nothing is accepted unchecked. Defaults to `None`: the official sums, both tables for
            an archive, the table matching ``suffix`` for files.
        suffix: For ``"files"``, appended to each name in the URL and on disk. Defaults to `".gz"`.

    Raises:
        ConfigError: If ``kind`` is unknown, ``url`` is empty or ``suffix`` is neither ``".gz"``
            nor ``""``.

    Example:
        >>> Source("files", "https://ossci-datasets.s3.amazonaws.com/mnist/").describe()
        'files from https://ossci-datasets.s3.amazonaws.com/mnist/'
    """

    kind: str
    url: str
    md5: Mapping[str, str] | None = None
    suffix: str = ".gz"

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ConfigError(
                f"Download source kind {self.kind!r} is not known; use one of "
                f"{', '.join(SOURCE_KINDS)}."
            )
        if not isinstance(self.url, str) or not self.url:
            raise ConfigError(f"Download source URL must be a non-empty string, got {self.url!r}.")
        if self.suffix not in (".gz", ""):
            raise ConfigError(
                f"Download source suffix {self.suffix!r} is not supported; use '.gz' or ''."
            )
        if self.md5 is None:
            table = ALL_MD5 if self.kind == "archive" else GZ_MD5 if self.suffix else RAW_MD5
        else:
            table = MappingProxyType(dict(self.md5))
        # Frozen, so the resolved table is set once here and cannot drift afterwards.
        object.__setattr__(self, "md5", table)

    @classmethod
    def coerce(cls, value: Source | Mapping[str, Any]) -> Source:
        """A `Source` from itself or from a mapping with the same field names (e.g. from YAML).

        Args:
            value: A `Source`, or a mapping with keys ``kind``, ``url`` and optionally ``md5``
                and ``suffix``.

        Returns:
            The source.

        Raises:
            ConfigError: If the mapping has unknown or missing keys, or bad values.
        """
        if isinstance(value, Source):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"A download source must be a Source or a mapping, got {type(value).__name__}."
            )
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - allowed)
        missing = sorted({"kind", "url"} - set(value))
        if unknown or missing:
            raise ConfigError(
                f"Download source {dict(value)!r} has unknown keys {unknown} or lacks {missing}; "
                f"allowed keys are {', '.join(sorted(allowed))}."
            )
        return cls(**value)

    def describe(self) -> str:
        """A short label for messages, e.g. ``archive https://.../MNIST_Data.zip``."""
        return f"archive {self.url}" if self.kind == "archive" else f"files from {self.url}"


DEFAULT_SOURCES: tuple[Source, ...] = (
    Source("archive", MINDSPORE_MNIST_URL),
    *(Source("files", url) for url in MIRROR_URLS),
)

@dataclass(frozen=True)
class IdxDataset:
    """A data set published as MNIST's four IDX files (the same names), and where to get it.

    Args:
        title: Its name in messages (``"Fashion-MNIST"``).
        sources: Where to fetch it from, in order; each source's ``md5`` holds its sums.
        hint: How to get the files by hand, for the messages, after the folders to put them in.
    """

    title: str
    sources: tuple[Source, ...]
    hint: str

    def guidance(self, root: Path) -> str:
        """Where to put the files and where to get them, for every data error."""
        return (f"Put the four files {', '.join(MNIST_FILES)} (raw, or gzipped with .gz added) "
                f"into {root / 'train'} and {root / 'test'}. {self.hint}")


MNIST = IdxDataset(
    "MNIST", DEFAULT_SOURCES,
    f"Get them from MindSpore's MNIST archive {MINDSPORE_MNIST_URL} (unzip it and copy the files "
    f"from MNIST_Data/train and MNIST_Data/test) or from the mirror {MIRROR_URLS[0]} (file name "
    "+ .gz), or pass --data-source synthetic to try the tool on generated digits.")



class _SourceError(Exception):
    """One source could not deliver four verified files; the message says why."""


def md5sum(path: str | os.PathLike[str]) -> str:
    """The hexadecimal MD5 of a file, read in chunks so large files need little memory.

    Args:
        path: The file.

    Returns:
        32 lowercase hexadecimal digits.
    """
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def missing_mnist_files(data_dir: str | os.PathLike[str]) -> list[str]:
    """The entries of `MNIST_FILES` that are in neither raw nor gzipped form under ``data_dir``.

    Args:
        data_dir: The data folder holding ``train/`` and ``test/``.

    Returns:
        Relative paths such as ``"train/train-images-idx3-ubyte"``; empty when all are present.
    """
    root = Path(data_dir).expanduser()
    return [
        rel for rel in MNIST_FILES
        if not ((root / rel).is_file() or (root / (rel + ".gz")).is_file())
    ]


def ensure_mnist(
    data_dir: str | os.PathLike[str],
    allow_download: bool = True,
    sources: Sequence[Source | Mapping[str, Any]] | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """:func:`ensure_idx` for MNIST (see there for the arguments)."""
    return ensure_idx(MNIST, data_dir, allow_download, sources, progress, timeout)


def ensure_idx(
    dataset: IdxDataset,
    data_dir: str | os.PathLike[str],
    allow_download: bool = True,
    sources: Sequence[Source | Mapping[str, Any]] | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Make sure the four files of ``dataset`` are under ``data_dir``, downloading them if
    allowed.

    Files already present (raw or ``.gz``) are trusted and nothing is fetched. Otherwise each
    source is tried in order until one delivers all four files with matching MD5 sums; those are
    then moved into ``data_dir/train`` and ``data_dir/test``, replacing an older copy of the same
    file in either form so that only the verified one remains.

    Args:
        dataset: The data set (:data:`MNIST`, or one of the sources' own).
        data_dir: The data folder; created if needed.
        allow_download: Whether missing files may be fetched. Defaults to `True`.
        sources: Where to fetch from, in order, as `Source` objects or mappings with the same
            keys. Defaults to `None`: the data set's own.
        progress: Whether to show a progress bar per download. Defaults to `True`.
        timeout: Seconds to wait for a server to connect or send more data. Defaults to `30.0`.

    Returns:
        ``data_dir`` as a `Path`.

    Raises:
        DataError: If files are missing and downloading is off, or every source failed. The
            message names the files, where to put them and where to get them.
        ConfigError: If a source is malformed.

    Example:
        >>> ensure_mnist("data/mnist", allow_download=False)  # doctest: +SKIP
        PosixPath('data/mnist')
    """
    root = Path(data_dir).expanduser()
    for rel in MNIST_FILES:  # a FIFO or a device under a file's name is refused, not replaced
        refuse_special(root / rel)
        refuse_special(root / f"{rel}.gz")
    missing = missing_mnist_files(root)
    if not missing:
        return root
    title, guidance = dataset.title, dataset.guidance(root)
    if not allow_download:
        raise DataError(
            f"{title} files are missing under {root}: {', '.join(missing)}; downloading is "
            f"turned off. {guidance}"
        )
    chosen = dataset.sources if sources is None else tuple(Source.coerce(s) for s in sources)
    if not chosen:
        raise DataError(
            f"{title} files are missing under {root}: {', '.join(missing)}; no download sources "
            f"were given. {guidance}"
        )

    staging, building = _open_staging(root, title, guidance)
    try:
        failures = _try_sources(chosen, root, staging, progress, timeout, dataset)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        building.close()
    if failures is None:
        return root

    raise DataError(
        f"Could not download {title} into {root}; every source failed: {'; '.join(failures)}. "
        f"No partial files were kept. {guidance}"
    )


def _open_staging(root: Path, title: str, guidance: str) -> tuple[Path, IO[str]]:
    """A new staging folder inside ``root``, held by its ``.building`` lock, after clearing what
    a killed download left there."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(root)
        # Inside the data folder, so the final os.replace never crosses a filesystem.
        staging = Path(tempfile.mkdtemp(prefix=".download-", suffix=".tmp", dir=root))
        return staging, hold_lock(staging / ".building")
    except OSError as exc:
        raise DataError(
            f"Cannot prepare the data folder {root} for downloading {title}: "
            f"{exc.strerror or exc}. {guidance}"
        ) from exc


def _try_sources(chosen: Sequence[Source], root: Path, staging: Path, progress: bool,
                 timeout: float, dataset: IdxDataset = MNIST) -> list[str] | None:
    """Tries each source in turn; None once one delivered and was installed, else the reasons
    each failed."""
    failures: list[str] = []
    for index, source in enumerate(chosen):
        workdir = staging / f"source-{index}"
        workdir.mkdir()
        logger.info("Fetching %s: %s", dataset.title, source.describe())
        try:
            verified = _fetch(source, workdir, progress, timeout)
        except _SourceError as exc:
            failures.append(f"({index + 1}) {source.describe()}: {exc}")
            logger.warning("%s source failed: %s: %s", dataset.title, source.describe(), exc)
            continue
        except OSError as exc:
            # Writing the staged copy failed (disk full, permissions): no source would help.
            raise DataError(
                f"Could not write {dataset.title} files under {root}: {exc.strerror or exc}. "
                f"{dataset.guidance(root)}"
            ) from exc
        _install(verified, root, dataset)
        logger.info("%s is ready in %s", dataset.title, root)
        return None
    return failures


def _fetch(source: Source, workdir: Path, progress: bool, timeout: float) -> dict[str, Path]:
    """Download one source into ``workdir`` and return the verified file per MNIST name."""
    md5 = source.md5 or {}  # always resolved by Source.__post_init__; {} would reject every file
    if source.kind == "archive":
        # The archive's type is read from its content, so the URL's file name does not matter.
        archive = workdir / "archive"
        _download(source.url, archive, progress, timeout, label="")
        extracted = workdir / "extracted"
        extracted.mkdir()
        return _extract_verified(archive, extracted, md5)

    verified: dict[str, Path] = {}
    base = source.url if source.url.endswith("/") else source.url + "/"
    for name in _SPLIT_OF:
        stored = name + source.suffix
        expected = md5.get(stored)
        if expected is None:
            raise _SourceError(f"no md5 checksum is known for {stored}, so it cannot be trusted")
        target = workdir / stored
        _download(base + stored, target, progress, timeout, label=base + stored + ": ")
        actual = md5sum(target)
        if actual != expected:
            raise _SourceError(_mismatch(base + stored, expected, actual))
        verified[name] = target
    return verified


def _download(url: str, target: Path, progress: bool, timeout: float, label: str) -> None:
    """Fetch ``url`` to ``target`` with the `download` package, turning failures into reasons.

    ``label`` prefixes the reason, so a failure among several files says which one.
    """
    try:
        with _default_socket_timeout(timeout):
            download(url, str(target), kind="file", progressbar=progress, replace=True,
                     timeout=timeout, verbose=False)
    except (RuntimeError, OSError, ValueError) as exc:
        raise _SourceError(label + _reason(exc, timeout)) from exc


@contextlib.contextmanager
def _default_socket_timeout(seconds: float) -> Iterator[None]:
    """Apply ``seconds`` to sockets opened without an explicit timeout, then restore it.

    `download` passes its timeout only to the request that probes the size; the body is read
    over a second connection opened without one, so a server that stalls mid-transfer would
    otherwise block forever.
    """
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _reason(exc: BaseException, timeout: float) -> str:
    """A short cause such as ``HTTP 404 File not found`` from the chain `download` raises."""
    # `download` wraps everything in RuntimeError without `from`; the cause is the context.
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, urllib.error.HTTPError):
            return f"HTTP {seen.code} {seen.reason}"
        if isinstance(seen, urllib.error.URLError):
            inner = seen.reason
            if isinstance(inner, TimeoutError):
                return f"no answer within {timeout:g} s"
            if isinstance(inner, OSError) and inner.strerror:
                return inner.strerror
            return str(inner)
        if isinstance(seen, TimeoutError):
            return f"no answer within {timeout:g} s"
        seen = seen.__cause__ or seen.__context__
    text = str(exc).strip()
    return text.rsplit("Error: ", 1)[-1] if "Error: " in text else text or type(exc).__name__


def _mismatch(what: str, expected: str, actual: str) -> str:
    return (
        f"md5 checksum mismatch for {what}: expected {expected}, got {actual} "
        f"(corrupt or not the official file)"
    )


def _unsafe_name(name: str) -> str | None:
    """Why an archive member's name could escape the extraction folder, or `None`."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return "absolute path"
    if ".." in posix.split("/"):
        return "'..' path component"
    return None


def _unsafe(member: str, why: str) -> _SourceError:
    return _SourceError(
        f"unsafe archive member {member!r} ({why}); nothing from this archive was used"
    )


def _extract_verified(archive: Path, dest: Path, md5: Mapping[str, str]) -> dict[str, Path]:
    """Check every member of a zip or tar archive, then copy out and verify the MNIST files.

    Every member is inspected before anything is read, and files are written under their base
    name into ``dest`` only, never to the member's own path.
    """
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                entries: list[tuple[str, Callable[[], IO[bytes]]]] = []
                for info in zipped.infolist():
                    why = _unsafe_name(info.filename)
                    # Zip has no link type of its own; Unix tools store the mode in the top bits.
                    if why is None and (info.external_attr >> 16) & 0o170000 == 0o120000:
                        why = "symbolic link"
                    if why:
                        raise _unsafe(info.filename, why)
                    if not info.is_dir():
                        opener = _opener(zipped.open, info, info.filename)
                        entries.append((info.filename, opener))
                return _take_mnist(entries, dest, md5)
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as tarred:
                entries = []
                for member in tarred.getmembers():
                    why = _unsafe_name(member.name)
                    if why is None and (member.issym() or member.islnk()):
                        why = f"link to {member.linkname!r}"
                    elif why is None and not (member.isfile() or member.isdir()):
                        why = "device or other special file"
                    if why:
                        raise _unsafe(member.name, why)
                    if member.isfile():
                        opener = _opener(tarred.extractfile, member, member.name)
                        entries.append((member.name, opener))
                return _take_mnist(entries, dest, md5)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as exc:
        raise _SourceError(f"the archive is damaged: {exc}") from exc
    raise _SourceError("the download is neither a zip nor a tar archive")


def _opener(
    open_member: Callable[[Any], IO[bytes] | None], member: Any, name: str
) -> Callable[[], IO[bytes]]:
    """Bind a member to its archive's open function, so only wanted members are read."""
    def open_it() -> IO[bytes]:
        stream = open_member(member)
        if stream is None:
            raise _SourceError(f"archive member {name!r} cannot be read")
        return stream
    return open_it


def _take_mnist(
    entries: list[tuple[str, Callable[[], IO[bytes]]]], dest: Path, md5: Mapping[str, str]
) -> dict[str, Path]:
    """Pick, copy out and verify the four files among an archive's regular-file members."""
    by_base: dict[str, list[tuple[str, Callable[[], IO[bytes]]]]] = {}
    for member, open_it in entries:
        by_base.setdefault(PurePosixPath(member.replace("\\", "/")).name, []).append(
            (member, open_it))

    verified: dict[str, Path] = {}
    for name in _SPLIT_OF:
        problems: list[str] = []
        # Archives in the wild may carry a file twice (raw and gzipped, or in two folders);
        # the first copy that matches its sum wins.
        for stored in (name, name + ".gz"):
            for member, open_it in by_base.get(stored, []):
                expected = md5.get(stored)
                if expected is None:
                    problems.append(f"no md5 checksum is known for {member}")
                    continue
                target = dest / stored
                with open_it() as stream:
                    actual = _copy_hashed(stream, target, member)
                if actual == expected:
                    verified[name] = target
                    break
                target.unlink()
                problems.append(_mismatch(member, expected, actual))
            if name in verified:
                break
        if name not in verified:
            if not problems:
                raise _SourceError(f"the archive holds no {name} (raw or .gz)")
            raise _SourceError("; ".join(problems))
    return verified


def _copy_hashed(stream: IO[bytes], target: Path, member: str) -> str:
    """Copy ``stream`` to ``target`` with a size cap, returning the MD5 of what was written."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    with open(target, "wb") as out:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            size += len(chunk)
            if size > _MAX_MEMBER_BYTES:
                raise _SourceError(
                    f"archive member {member!r} is larger than {_MAX_MEMBER_BYTES} bytes; "
                    f"it is not an MNIST file"
                )
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _install(verified: Mapping[str, Path], root: Path, dataset: IdxDataset = MNIST) -> None:
    """Move verified files into ``root/train`` and ``root/test``, dropping stale other forms."""
    try:
        for name, path in verified.items():
            folder = root / _SPLIT_OF[name]
            folder.mkdir(parents=True, exist_ok=True)
            os.replace(path, folder / path.name)
            # A leftover copy in the other form (raw vs .gz) could be read instead of this one.
            other = name if path.name.endswith(".gz") else name + ".gz"
            (folder / other).unlink(missing_ok=True)
    except OSError as exc:
        raise DataError(
            f"Verified {dataset.title} files could not be moved into {root}: "
            f"{exc.strerror or exc}. {dataset.guidance(root)}"
        ) from exc


def ensure_file(target: str | os.PathLike[str], urls: Sequence[str], md5: str, *, title: str,
                guidance: str, allow_download: bool = True, progress: bool = True,
                timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Makes sure one published file (an archive such as CIFAR-10's) is at ``target``: a file
    there is trusted; otherwise it is fetched from each URL in turn into a staging folder beside
    it, checked against ``md5``, and renamed into place only when it matches.

    Raises:
        DataError: the file is missing and downloading is off, or every URL failed (the message
            gives each reason and ``guidance``); nothing is left under ``target``.
    """
    target = Path(target).expanduser()
    refuse_special(target, "Archive")
    if target.is_file():
        return target
    if not allow_download:
        raise DataError(f"{title} is missing: {target} does not exist and downloading is turned "
                        f"off. {guidance}")
    root = target.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(root)
        staging = Path(tempfile.mkdtemp(prefix=".download-", suffix=".tmp", dir=root))
        building = hold_lock(staging / ".building")
    except OSError as exc:
        raise DataError(f"Cannot prepare the data folder {root} for downloading {title}: "
                        f"{exc.strerror or exc}. {guidance}") from exc
    failures: list[str] = []
    try:
        for index, url in enumerate(urls):
            logger.info("Fetching %s: %s", title, url)
            staged = staging / f"source-{index}"
            try:
                _download(url, staged, progress, timeout, label="")
                actual = md5sum(staged)
                if actual != md5:
                    raise _SourceError(_mismatch(url, md5, actual))
            except _SourceError as exc:
                failures.append(f"({index + 1}) {url}: {exc}")
                logger.warning("%s source failed: %s: %s", title, url, exc)
                continue
            try:
                os.replace(staged, target)
            except OSError as exc:
                raise DataError(f"The verified {title} could not be moved to {target}: "
                                f"{exc.strerror or exc}. {guidance}") from exc
            logger.info("%s is ready in %s", title, target)
            return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        building.close()
    raise DataError(f"Could not download {title} into {root}; every source failed: "
                    f"{'; '.join(failures) or 'no URL was given'}. No partial files were kept. "
                    f"{guidance}")
