"""The cache is checked, not trusted: every entry against the SHA-256s of its manifest, once per
run, links out of an entry or of the cache refused, values checked, a damaged entry rebuilt with
one line naming it; and ``mstrain cache`` lists and clears it without touching entries in use."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from trainer.config import TrainConfig
from trainer.data import entries
from trainer.data.cache import decoded_split
from trainer.data.idx import SPLIT_FILES, read_idx, write_idx
from trainer.data.pipeline import build_run_data, prepare_data
from trainer.data.splits import prepare_split
from trainer.errors import DataError

TRAIN_IMAGES, TRAIN_LABELS = SPLIT_FILES["train"]
TEST_IMAGES, TEST_LABELS = SPLIT_FILES["test"]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private cache folder; the entries this process holds are let go afterwards."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("MSTRAIN_CACHE", str(folder))
    entries.release_all()
    yield folder / "mstrain"
    entries.release_all()


@pytest.fixture
def warnings():
    """The lines the tool logs at WARNING (what train.py prints), as strings."""
    records: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("mstrain")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _new_run() -> None:
    """What a new process starts with: no entry checked or held yet."""
    entries.release_all()


def _labels_of(digits: Path, count_from: int = 0) -> Path:
    """A copy of ``digits`` whose labels are shifted by one class: another data set of the same
    sizes."""
    for split, (_, labels_name) in SPLIT_FILES.items():
        path = digits / split / labels_name
        write_idx(path, ((read_idx(path).astype(int) + 1 + count_from) % 10).astype(np.uint8))
    return digits


def _rebuilt(warnings: list[str], entry: Path, fault: str) -> None:
    lines = [w for w in warnings if w.startswith("Cache entry")]
    assert len(lines) == 1, warnings
    assert str(entry) in lines[0] and fault in lines[0] and "rebuilding it" in lines[0]


def _raw(digits: Path):
    """The raw copies of a gzipped training split: the entry and its folder."""
    split = prepare_split(digits, "train")
    return split.folder.parent, split.folder


def ensure_data(cfg, progress: bool = False) -> Path:
    return prepare_data(cfg, progress=progress).source.data_dir


# ------------------------------------------------------------------------------- the checks
def test_an_entry_records_every_file_and_is_hashed_once_per_run(cache, digits_gz_dir,
                                                                monkeypatch):
    entry, folder = _raw(digits_gz_dir)
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["kind"] == "idx" and manifest["key"] == entry.name
    assert set(manifest["files"]) == {f"train/{TRAIN_IMAGES}", f"train/{TRAIN_LABELS}"}
    record = manifest["files"][f"train/{TRAIN_LABELS}"]
    assert record["size"] == (folder / TRAIN_LABELS).stat().st_size
    assert len(record["sha256"]) == 64
    hashed = []
    real = entries._digest
    monkeypatch.setattr(entries, "_digest", lambda path, **kw: hashed.append(path) or
                        real(path, **kw))
    _new_run()
    _raw(digits_gz_dir)
    assert len(hashed) == 2  # a new run checks every file once
    _raw(digits_gz_dir)
    decoded_split(folder, "train", image_size=28)
    assert len(hashed) == 2 + 2  # the same run again: only the new decoded entry is hashed


def test_labels_edited_in_place_are_caught_and_rebuilt(cache, digits_gz_dir, warnings):
    entry, folder = _raw(digits_gz_dir)
    labels = folder / TRAIN_LABELS
    good = labels.read_bytes()
    write_idx(labels, ((read_idx(labels).astype(int) + 1) % 10).astype(np.uint8))
    assert labels.stat().st_size == len(good)  # same size: only the digest tells
    _new_run()
    assert _raw(digits_gz_dir)[0] == entry
    _rebuilt(warnings, entry, f"train/{TRAIN_LABELS} does not match its recorded SHA-256")
    assert labels.read_bytes() == good


def test_a_link_to_another_data_sets_split_is_refused(cache, digits_gz_dir, tmp_path, warnings):
    other = Path(shutil.copytree(digits_gz_dir, tmp_path / "other"))
    for split, (_, labels_name) in SPLIT_FILES.items():
        path = other / split / f"{labels_name}.gz"
        write_idx(path, ((read_idx(path).astype(int) + 1) % 10).astype(np.uint8))
    entry, folder = _raw(digits_gz_dir)
    other_entry = _raw(other)[0]
    good = (folder / TRAIN_LABELS).read_bytes()
    kept = (other_entry / "train" / TRAIN_LABELS).read_bytes()
    assert kept != good and len(kept) == len(good)
    shutil.rmtree(entry)
    entry.symlink_to(other_entry)  # the same sizes, another data set
    _new_run()
    assert _raw(digits_gz_dir)[0] == entry
    _rebuilt(warnings, entry, "it is a link to")
    assert not entry.is_symlink() and (folder / TRAIN_LABELS).read_bytes() == good
    assert (other_entry / "train" / TRAIN_LABELS).read_bytes() == kept  # not followed


def test_a_file_linked_out_of_its_entry_is_refused(cache, digits_dir, tmp_path, warnings):
    other = _labels_of(Path(shutil.copytree(digits_dir, tmp_path / "other")))
    split = prepare_split(digits_dir, "test")  # raw files in place: no entry
    decoded_split(split.folder, "test", image_size=28)
    twin = prepare_split(other, "test")
    decoded_split(twin.folder, "test", image_size=28)
    [mine, theirs] = sorted((cache / "decoded").iterdir(),
                            key=lambda p: "other" in json.loads(
                                (p / "manifest.json").read_text())["meta"]["origin"])
    (mine / "labels.npy").unlink()
    (mine / "labels.npy").symlink_to(theirs / "labels.npy")
    _new_run()
    _, labels = decoded_split(split.folder, "test", image_size=28)
    _rebuilt(warnings, mine, "labels.npy is a link to")
    np.testing.assert_array_equal(labels, read_idx(digits_dir / "test" / TEST_LABELS))


def _forge(entry: Path, name: str, array: np.ndarray) -> None:
    """Replaces an array and records its digest in the manifest, as a careful forger would:
    only the values check can tell."""
    np.save(entry / name, array, allow_pickle=False)
    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["files"][name] = entries._digest(entry / name)
    (entry / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("name, change, fault", [
    ("labels.npy", lambda a: np.where(np.arange(len(a)) == 3, 12, a).astype(np.int32),
     "labels outside 0-9"),
    ("labels.npy", lambda a: a.astype(np.int64), "not int32"),
    ("images.npy", lambda a: np.ascontiguousarray(a[:, :, :20, :20]), "not uint8"),
    ("images.npy", lambda a: a[:-1], "not uint8"),
])
def test_decoded_arrays_are_checked_for_their_values(cache, digits_dir, warnings, name, change,
                                                     fault):
    split = prepare_split(digits_dir, "test")
    images, labels = (np.array(a) for a in decoded_split(split.folder, "test", image_size=28))
    [entry] = (cache / "decoded").iterdir()
    _forge(entry, name, change(np.load(entry / name)))
    _new_run()
    again = decoded_split(split.folder, "test", image_size=28)
    _rebuilt(warnings, entry, fault)
    np.testing.assert_array_equal(again[0], images)
    np.testing.assert_array_equal(again[1], labels)


def _fifo_for_labels(folder: Path) -> None:
    (folder / TRAIN_LABELS).unlink()
    os.mkfifo(folder / TRAIN_LABELS)


@pytest.mark.parametrize("plant, fault", [
    (lambda d: shutil.copy(d / TRAIN_LABELS, d / f"{TRAIN_LABELS}.bak"), "was added"),
    (_fifo_for_labels, "is not a regular file"),
    (lambda d: (d / TRAIN_IMAGES).unlink(), "is missing"),
    (lambda d: (d.parent / "manifest.json").write_text("{"), "cannot be read"),
])
def test_raw_copies_with_a_file_added_replaced_or_missing(cache, digits_gz_dir, warnings, plant,
                                                          fault):
    # MindSpore's reader would take a planted .bak; a FIFO would hang whoever opens it.
    split = prepare_split(digits_gz_dir, "train")
    plant(split.folder)
    _new_run()
    start = time.monotonic()
    again = prepare_split(digits_gz_dir, "train")
    assert time.monotonic() - start < 10
    _rebuilt(warnings, split.folder.parent, fault)
    assert sorted(p.name for p in again.folder.iterdir()) == sorted(SPLIT_FILES["train"])
    assert len(read_idx(again.folder / TRAIN_LABELS)) == again.count == 640


def test_a_kind_folder_linked_out_of_the_cache_is_replaced(cache, digits_gz_dir, tmp_path,
                                                           warnings):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    cache.mkdir(parents=True)
    (cache / "idx").symlink_to(outside)
    split = prepare_split(digits_gz_dir, "test")
    assert not (cache / "idx").is_symlink() and cache / "idx" in split.folder.parents
    assert list(outside.iterdir()) == []  # nothing written through the link
    assert any("outside the cache" in w for w in warnings)


def test_nothing_is_written_into_the_data_folder(cache, digits_gz_dir, tmp_path):
    data = Path(shutil.copytree(digits_gz_dir, tmp_path / "data"))
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    cfg = TrainConfig(data_dir=str(data), download=False, val_split=0.1).validate()
    prepared = prepare_data(cfg, progress=False)
    build_run_data(cfg, prepared, 28)  # held-out rows, decoded splits: all in the cache
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before
    assert {p.parent.parent.name for p in cache.glob("*/*/manifest.json")} == {"idx", "decoded"}


# -------------------------------------------------------------------------- generated digits
def test_generated_digits_of_other_sizes_are_refused(tmp_path):
    data = tmp_path / "syn"
    made = TrainConfig(data_source="synthetic", data_dir=str(data), synthetic_train_size=40,
                       synthetic_test_size=20).validate()
    ensure_data(made, progress=False)
    ensure_data(made, progress=False)  # the same sizes: used as they are
    before = {p: p.stat().st_mtime_ns for p in data.rglob("*")}
    other = TrainConfig(data_source="synthetic", data_dir=str(data), synthetic_train_size=30,
                        synthetic_test_size=20).validate()
    with pytest.raises(DataError) as info:
        ensure_data(other, progress=False)
    message = " ".join(str(info.value).split())
    assert message.startswith(f"The data folder {data} holds 40 training and 20 test digits, "
                              "but this run asks for 30 and 20")
    assert "--synthetic-train-size 40" in message and "--synthetic-test-size" in message
    assert {p: p.stat().st_mtime_ns for p in data.rglob("*")} == before


# --------------------------------------------------------------------------- list and clear
def test_list_and_select_by_age_and_size(cache, digits_gz_dir):
    prepare_split(digits_gz_dir, "train")
    prepare_split(digits_gz_dir, "test")
    old, new = sorted((cache / "idx").iterdir())
    week_ago = time.time() - 8 * 86400
    for name in ("manifest.json", ".in-use"):
        os.utime(old / name, (week_ago, week_ago))
    rows = entries.list_entries()
    assert [r.path for r in rows] == [old, new]  # least recently used first
    assert all(r.state == "in use" and r.kind == "idx" and r.about.startswith("raw copy of")
               for r in rows)
    assert min(r.size for r in rows) > 160 * 28 * 28  # the 160 test digits at least
    assert entries.select_entries(rows, max_bytes=rows[1].size) == []  # the run uses both
    entries.release_all()
    rows = entries.list_entries()
    assert [r.state for r in rows] == ["", ""]
    assert [r.path for r in entries.select_entries(rows, older_than_days=7)] == [old]
    assert entries.select_entries(rows, older_than_days=30) == []
    assert [r.path for r in entries.select_entries(rows, max_bytes=rows[1].size)] == [old]
    assert len(entries.select_entries(rows)) == 2


def test_clear_keeps_entries_in_use_and_being_built(cache, digits_gz_dir, tmp_path):
    prepare_split(digits_gz_dir, "test")  # held by this process, as by a running training
    [used] = (cache / "idx").iterdir()
    building = cache / "decoded" / ".train-28-0123.abcd.tmp"
    building.mkdir(parents=True)
    holder = open_lock_elsewhere(building / ".building")
    abandoned = cache / "decoded" / ".test-28-4567.efgh.tmp"
    abandoned.mkdir()
    hour_ago = time.time() - 3600
    os.utime(abandoned, (hour_ago, hour_ago))
    young = cache / "decoded" / ".test-28-89ab.ijkl.tmp"  # another writer's, without .building
    young.mkdir()
    lock = cache / "decoded" / ".other.lock"  # a lock file another writer holds
    other = open_lock_elsewhere(lock)
    (cache / "mindvision").mkdir()
    (cache / "mindvision" / "old-links").symlink_to(tmp_path)  # an earlier version's links
    try:
        removed, kept = entries.clear_entries(entries.list_entries())
    finally:
        for process in (holder, other):
            process.kill()
            process.wait()
    assert {r.path for r in kept} == {used, building, young, lock}
    assert {r.path for r in removed} == {abandoned, cache / "mindvision" / "old-links"}
    assert used.is_dir() and building.is_dir() and tmp_path.is_dir()
    entries.release_all()  # the run ends
    removed, kept = entries.clear_entries(entries.list_entries())
    assert used in {r.path for r in removed} and not used.exists()
    assert [p for p in (cache / "idx").iterdir()] == []


def open_lock_elsewhere(lock: Path) -> subprocess.Popen:
    """Another process holding ``lock`` (a build in progress)."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, time\n"
        f"h = open({str(lock)!r}, 'a+'); fcntl.flock(h, fcntl.LOCK_EX)\n"
        "print('held', flush=True); time.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_run_starting_while_its_entry_is_cleared_builds_it_again(cache, digits_gz_dir,
                                                                    monkeypatch):
    split = prepare_split(digits_gz_dir, "test")
    entries.release_all()
    rows = entries.list_entries()
    real_hold = entries._hold

    def cleared_meanwhile(target):  # clear takes the entry between our lookup and our lock
        if rows:
            entries.clear_entries([rows.pop()])
        return real_hold(target)

    monkeypatch.setattr(entries, "_hold", cleared_meanwhile)
    again = prepare_split(digits_gz_dir, "test")
    monkeypatch.setattr(entries, "_hold", real_hold)
    assert again.folder == split.folder and len(read_idx(again.folder / TEST_LABELS)) == 160


def test_cache_command_lists_and_clears(cache, digits_gz_dir, capsys):
    from trainer.cli.commands import main

    prepare_split(digits_gz_dir, "test")
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"Cache folder: {cache}" and "[in use]" in out[1] and "idx/" in out[1]
    assert out[-1].startswith("1 entry, ") and "in all" in out[-1]
    assert main(["cache", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["entries"][0]["state"] == "in use" and listed["total_bytes"] > 0
    assert main(["cache", "clear", "--dry-run"]) == 0
    assert "1 in use kept" in capsys.readouterr().out
    entries.release_all()
    assert main(["cache", "clear", "--older-than", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Removed idx/") and "Removed 1 entry" in out
    assert list((cache / "idx").iterdir()) == []


@pytest.mark.parametrize("argv, first", [
    (["cache"], "'mstrain cache' needs an action: list or clear"),
    (["cache", "clear", "--max-size", "lots"], "expected a size such as 500M"),
    (["cache", "clear", "--older-than", "nan"], "must be from 0 to 36,500 days"),
    (["cache", "clear", "--older-than", "-1"], "must be from 0 to 36,500 days"),
    (["cache", "drop"], "invalid choice: 'drop'"),
])
def test_cache_command_mistakes(cache, capsys, argv, first):
    from trainer.cli.commands import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert first in " ".join(err.split()) and "Traceback" not in err
