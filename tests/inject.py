"""Runs ``train.py`` or ``predict.py`` with one write failure injected, for the fault tests.

    python tests/inject.py FAULT PROGRAM [ARGS...]

FAULT is one of:

* ``enospc-checkpoint-N``: the N-th checkpoint write fails with ENOSPC after writing part of its
  temporary file, as a full disk does;
* ``erofs-checkpoints``: every checkpoint write fails with EROFS, as in a read-only folder;
* ``enospc-config``: writing ``config.yaml`` fails with ENOSPC;
* ``erofs-mkdir``: creating any folder under the run's output directory fails with EROFS.

The tests use a real small tmpfs or a read-only bind mount when the machine lets them (a user
and mount namespace); this is the fallback where it does not, so that no case is skipped.
"""

from __future__ import annotations

import errno
import os
import runpy
import sys
from pathlib import Path


def _fail(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _inject(fault: str) -> None:
    if fault.startswith("enospc-checkpoint-") or fault == "erofs-checkpoints":
        import mindspore as ms

        real = ms.save_checkpoint
        calls = {"n": 0}
        nth = int(fault.rsplit("-", 1)[1]) if fault.startswith("enospc") else 1

        def save_checkpoint(save_obj, ckpt_file_name, *args, **kwargs):
            calls["n"] += 1
            if fault == "erofs-checkpoints":
                raise _fail(errno.EROFS)
            if calls["n"] == nth:
                # MindSpore writes NAME.tmp first; a full disk leaves part of it behind.
                Path(ckpt_file_name).with_suffix(".tmp").write_bytes(b"\0" * 4096)
                raise _fail(errno.ENOSPC)
            return real(save_obj, ckpt_file_name, *args, **kwargs)

        ms.save_checkpoint = save_checkpoint
    elif fault == "enospc-config":
        import trainer.fileio as fileio

        real_text = fileio.atomic_write_text

        def atomic_write_text(path, text):
            if Path(path).name == "config.yaml":
                raise _fail(errno.ENOSPC)
            return real_text(path, text)

        fileio.atomic_write_text = atomic_write_text
    elif fault == "erofs-mkdir":
        real_mkdir = Path.mkdir

        def mkdir(self, *args, **kwargs):
            if "runs" in self.parts:
                raise _fail(errno.EROFS)
            return real_mkdir(self, *args, **kwargs)

        Path.mkdir = mkdir
    else:
        sys.exit(f"unknown fault {fault!r}")


def main() -> None:
    fault, program, *args = sys.argv[1:]
    sys.path.insert(0, str(Path(program).resolve().parent))
    from trainer.engine.stop import block_signals

    block_signals()  # as the command line does, before MindSpore starts its threads
    _inject(fault)
    sys.argv = [program, *args]
    runpy.run_path(program, run_name="__main__")


if __name__ == "__main__":
    main()
