"""exit_process: a command's status, its buffered output and its atexit handlers survive the
skipped teardown."""

from __future__ import annotations

import gzip
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

SCRIPT = textwrap.dedent("""
    import atexit, gzip, sys, threading, time
    {imports}
    from trainer.cli.exit import exit_process
    atexit.register(lambda: open(sys.argv[1], "w").write("handler ran"))
    if "--thread" in sys.argv:
        def late():
            time.sleep(0.5)
            open(sys.argv[1] + ".thread", "w").write("thread done")
        threading.Thread(target=late).start()
    sys.stdout.write("buffered, no newline")  # a pipe: block-buffered until flushed
    # Left open, as a user's code may: a normal exit closes them, keeping every byte.
    text = open(sys.argv[1] + ".txt", "w")
    text.write("kept")
    packed = gzip.open(sys.argv[1] + ".gz", "wt")
    packed.write("kept too")
    exit_process(3)
""")


@pytest.mark.parametrize("imports, thread", [("import mindspore", False),
                                             ("", False), ("import mindspore", True)])
def test_status_output_and_handlers_survive(tmp_path, imports, thread):
    marker = tmp_path / "marker"
    args = [str(marker), *(["--thread"] if thread else [])]
    result = subprocess.run([sys.executable, "-c", SCRIPT.format(imports=imports), *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert result.stdout == "buffered, no newline"
    assert marker.read_text() == "handler ran"
    assert (tmp_path / "marker.txt").read_text() == "kept"
    with gzip.open(tmp_path / "marker.gz", "rt") as packed:  # complete, with its trailer
        assert packed.read() == "kept too"
    if thread:  # a thread that is not a daemon is waited for, as by a normal exit
        assert (tmp_path / "marker.thread").read_text() == "thread done"
