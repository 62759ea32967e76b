"""Tests for trainer.data.download against a local HTTP server; nothing leaves 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import io
import socket
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.data.conftest import serving
from trainer.data.download import (
    DEFAULT_SOURCES,
    GZ_MD5,
    MINDSPORE_MNIST_URL,
    MNIST_FILES,
    RAW_MD5,
    Source,
    ensure_mnist,
    md5sum,
    missing_mnist_files,
)
from trainer.errors import ConfigError, DataError


def _idx_bytes(name: str, count: int = 5) -> bytes:
    """A small valid IDX file: images for ``*images*``, labels otherwise."""
    rng = np.random.default_rng(len(name))
    if "images" in name:
        header = np.array([0x0803, count, 28, 28], dtype=">u4").tobytes()
        body = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8).tobytes()
    else:
        header = np.array([0x0801, count], dtype=">u4").tobytes()
        body = rng.integers(0, 10, size=count, dtype=np.uint8).tobytes()
    return header + body


# Fake MNIST: relative path -> raw bytes, and the sums the local sources are checked against.
RAW = {rel: _idx_bytes(rel) for rel in MNIST_FILES}
GZ = {rel: gzip.compress(data, mtime=0) for rel, data in RAW.items()}
LOCAL_RAW_MD5 = {rel.split("/")[1]: hashlib.md5(data).hexdigest() for rel, data in RAW.items()}
LOCAL_GZ_MD5 = {rel.split("/")[1] + ".gz": hashlib.md5(d).hexdigest() for rel, d in GZ.items()}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving a fresh folder; yields (base URL, folder)."""
    root = tmp_path / "www"
    root.mkdir()
    with serving(root) as url:
        yield url, root


@pytest.fixture
def closed_url() -> str:
    """A URL on a port nobody listens on, so connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def _write_zip(path: Path, extra: dict[str, bytes] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for rel, data in RAW.items():
            archive.writestr(f"MNIST_Data/{rel}", data)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)


def _write_files(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for rel, data in GZ.items():
        (folder / (rel.split("/")[1] + ".gz")).write_bytes(data)


def _assert_installed(data_dir: Path, gz: bool) -> None:
    for rel in MNIST_FILES:
        path = data_dir / (rel + ".gz" if gz else rel)
        assert path.read_bytes() == (GZ if gz else RAW)[rel]
    assert missing_mnist_files(data_dir) == []
    assert not list(data_dir.glob(".download-*"))


def _assert_nothing_left(data_dir: Path) -> None:
    for split in ("train", "test"):
        folder = data_dir / split
        assert not folder.exists() or not any(folder.iterdir())
    assert not list(data_dir.glob(".download-*"))


def _archive(url: str) -> Source:
    return Source("archive", url, md5=LOCAL_RAW_MD5)


def _files(url: str) -> Source:
    return Source("files", url, md5=LOCAL_GZ_MD5)


def test_present_files_need_no_network(data_dir: Path, closed_url: str) -> None:
    for index, rel in enumerate(MNIST_FILES):
        # Mixed forms: raw and gzipped both count as present.
        target = data_dir / (rel + ".gz" if index % 2 else rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"anything")
    assert ensure_mnist(data_dir, sources=[_files(closed_url)], progress=False) == data_dir


def test_archive_source(server: tuple[str, Path], data_dir: Path) -> None:
    url, root = server
    _write_zip(root / "MNIST_Data.zip")
    result = ensure_mnist(str(data_dir), sources=[_archive(url + "MNIST_Data.zip")],
                          progress=False)
    assert result == data_dir
    _assert_installed(data_dir, gz=False)


def test_tar_gz_archive_with_gzipped_members(server: tuple[str, Path], data_dir: Path) -> None:
    url, root = server
    with tarfile.open(root / "mnist.tar.gz", "w:gz") as archive:
        for rel, data in GZ.items():
            info = tarfile.TarInfo(f"mnist/{rel}.gz")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    source = Source("archive", url + "mnist.tar.gz", md5=LOCAL_GZ_MD5)
    ensure_mnist(data_dir, sources=[source], progress=False)
    _assert_installed(data_dir, gz=True)


def test_files_source_replaces_stale_other_form(server: tuple[str, Path], data_dir: Path) -> None:
    url, root = server
    _write_files(root / "mnist")
    stale = data_dir / MNIST_FILES[0]
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a file from an earlier attempt")
    ensure_mnist(data_dir, sources=[_files(url + "mnist")], progress=False)
    _assert_installed(data_dir, gz=True)
    assert not stale.exists()


def test_falls_back_after_404(server: tuple[str, Path], data_dir: Path) -> None:
    url, root = server
    _write_files(root / "mirror")
    sources = [_archive(url + "gone.zip"), _files(url + "mirror/")]
    ensure_mnist(data_dir, sources=sources, progress=False)
    _assert_installed(data_dir, gz=True)


def test_sources_given_as_mappings(server: tuple[str, Path], data_dir: Path) -> None:
    url, root = server
    _write_files(root / "mirror")
    ensure_mnist(data_dir, sources=[{"kind": "files", "url": url + "mirror/",
                                     "md5": LOCAL_GZ_MD5}], progress=False)
    _assert_installed(data_dir, gz=True)


def test_checksum_mismatch_leaves_nothing(server: tuple[str, Path], data_dir: Path) -> None:
    url, root = server
    _write_zip(root / "MNIST_Data.zip")
    # The official sums cannot match the generated files.
    source = Source("archive", url + "MNIST_Data.zip")
    with pytest.raises(DataError, match="md5 checksum mismatch") as caught:
        ensure_mnist(data_dir, sources=[source], progress=False)
    assert RAW_MD5["train-images-idx3-ubyte"] in str(caught.value)
    _assert_nothing_left(data_dir)


def test_every_failure_is_reported(server: tuple[str, Path], data_dir: Path) -> None:
    url, root = server
    _write_files(root / "bad")
    (root / "bad" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"corrupt")
    sources = [_archive(url + "gone.zip"), _files(url + "bad/")]
    with pytest.raises(DataError) as caught:
        ensure_mnist(data_dir, sources=sources, progress=False)
    message = str(caught.value)
    assert f"(1) archive {url}gone.zip: HTTP 404 File not found; (2) files from" in message
    assert "md5 checksum mismatch for " + url + "bad/t10k-labels-idx1-ubyte.gz" in message
    assert "--data-source synthetic" in message
    _assert_nothing_left(data_dir)


@pytest.mark.parametrize(
    ("evil", "why"),
    [("../evil", "'..'"), ("MNIST_Data/../../evil", "'..'"), ("{tmp}/evil", "absolute path"),
     ("C:\\evil", "absolute path")],
)
def test_zip_member_escaping_is_refused(
    server: tuple[str, Path], data_dir: Path, tmp_path: Path, evil: str, why: str
) -> None:
    url, root = server
    _write_zip(root / "evil.zip", extra={evil.format(tmp=tmp_path): b"owned"})
    with pytest.raises(DataError, match=f"unsafe archive member .*{why}"):
        ensure_mnist(data_dir, sources=[_archive(url + "evil.zip")], progress=False)
    _assert_nothing_left(data_dir)
    assert not (tmp_path / "evil").exists()
    assert not (data_dir / "evil").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_tar_link_member_is_refused(
    server: tuple[str, Path], data_dir: Path, kind: bytes
) -> None:
    url, root = server
    with tarfile.open(root / "links.tar", "w") as archive:
        for rel, data in RAW.items():
            info = tarfile.TarInfo(f"MNIST_Data/{rel}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("MNIST_Data/train/passwd")
        link.type = kind
        link.linkname = "/etc/passwd"
        archive.addfile(link)
    with pytest.raises(DataError, match=r"unsafe archive member .*link to '/etc/passwd'"):
        ensure_mnist(data_dir, sources=[_archive(url + "links.tar")], progress=False)
    _assert_nothing_left(data_dir)


def test_not_an_archive(server: tuple[str, Path], data_dir: Path) -> None:
    url, root = server
    (root / "page.zip").write_text("<html>maintenance</html>")
    with pytest.raises(DataError, match="neither a zip nor a tar archive"):
        ensure_mnist(data_dir, sources=[_archive(url + "page.zip")], progress=False)
    _assert_nothing_left(data_dir)


def test_archive_without_the_files(server: tuple[str, Path], data_dir: Path) -> None:
    url, root = server
    with zipfile.ZipFile(root / "other.zip", "w") as archive:
        archive.writestr("README", b"not mnist")
    with pytest.raises(DataError, match="holds no train-images-idx3-ubyte"):
        ensure_mnist(data_dir, sources=[_archive(url + "other.zip")], progress=False)


def test_download_disabled_names_files_and_places(data_dir: Path) -> None:
    with pytest.raises(DataError) as caught:
        ensure_mnist(data_dir, allow_download=False)
    message = str(caught.value)
    for rel in MNIST_FILES:
        assert rel in message
    assert str(data_dir / "train") in message
    assert str(data_dir / "test") in message
    assert MINDSPORE_MNIST_URL in message
    assert "or pass --data-source synthetic to try the tool on generated digits" in message
    assert caught.value.exit_code == 2
    assert not data_dir.exists()


def test_unreachable_server(data_dir: Path, closed_url: str) -> None:
    with pytest.raises(DataError, match="Connection refused") as caught:
        ensure_mnist(data_dir, sources=[_archive(closed_url + "MNIST_Data.zip")],
                     progress=False)
    assert "every source failed" in str(caught.value)
    _assert_nothing_left(data_dir)


def test_silent_server_times_out(data_dir: Path) -> None:
    # Listening but never answering: the connection opens, the response never comes.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/MNIST_Data.zip"
        with pytest.raises(DataError, match=r"no answer within 0.3 s"):
            ensure_mnist(data_dir, sources=[_archive(url)], progress=False, timeout=0.3)
    _assert_nothing_left(data_dir)


def test_defaults_and_tables() -> None:
    assert DEFAULT_SOURCES[0] == Source("archive", MINDSPORE_MNIST_URL)
    mirrors = DEFAULT_SOURCES[1:]
    assert mirrors
    assert all(s.kind == "files" and s.md5 == GZ_MD5 for s in mirrors)
    assert set(DEFAULT_SOURCES[0].md5 or {}) == set(RAW_MD5) | set(GZ_MD5)
    assert len(MNIST_FILES) == len(RAW_MD5) == len(GZ_MD5) == 4
    assert Source("files", "http://x/", suffix="").md5 == RAW_MD5


def test_md5sum(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"mnist" * 1000)
    assert md5sum(path) == hashlib.md5(b"mnist" * 1000).hexdigest()


@pytest.mark.parametrize(
    "bad",
    [{"kind": "torrent", "url": "http://x/"}, {"kind": "files"}, {"kind": "files", "url": ""},
     {"kind": "files", "url": "http://x/", "mirror": True}, "http://x/"],
)
def test_malformed_sources_are_rejected(bad: object, data_dir: Path) -> None:
    with pytest.raises(ConfigError):
        ensure_mnist(data_dir, sources=[bad], progress=False)  # type: ignore[list-item]
