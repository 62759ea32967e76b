"""Compiling the native kernels on the machine that runs them, once, into the cache.

The C++ source ships in the package (``kernels.cc``). The first run that asks for the kernels
compiles it into ``cache_root()/kernels/KEY/``, where ``KEY`` is a digest of the compiler (its
path and ``--version``), the flags, the source and the CPU's features, so another compiler, a
changed source or another CPU builds anew instead of loading a library made for something else.
The library is built in a staging folder beside the final one and renamed into place, so a
half-built library is never loaded; a lock file makes concurrent processes (``msrun``'s
workers) build once, the others waiting and then loading what the first built. A manifest
beside the library holds its SHA-256, checked before every load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("kernels.cc")
LIBRARY = "libmstrain_kernels.so"
MANIFEST = "manifest.json"
# A build takes a few seconds; one that takes minutes is stuck (or the machine is), and training
# goes on with MindSpore's operators instead of waiting.
BUILD_TIMEOUT_S = 180
# The library is about 100 KB; the manifest a few hundred bytes.
MAX_LIBRARY_BYTES = 16 * 1024 * 1024
MAX_MANIFEST_BYTES = 64 * 1024

# The instruction sets the kernels are written for, best first: the CPU features each needs and
# the compiler flags that enable exactly those (never -march=native, so the key names them all).
ISAS = (
    ("avx512", ("avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma"),
     ("-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx2", "-mfma")),
    ("avx2", ("avx2", "fma"), ("-mavx2", "-mfma")),
)
# -ffp-contract=fast: the vector products and sums become FMA instructions (kernels.cc).
# -z nodelete: the library's worker threads run its code until the process ends, so it must
# stay mapped when the framework closes its last handle to it.
BASE_FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-pthread", "-Wl,-z,nodelete",
              "-ffp-contract=fast", "-fno-math-errno")


class Unavailable(Exception):
    """The kernels cannot be used here; the message says why, in a few words."""


@dataclass(frozen=True)
class Built:
    """A library ready to load."""

    path: Path
    isa: str
    seconds: float  # the build's time, 0.0 when it came from the cache


def cpu_features() -> set[str]:
    """The CPU's feature flags as Linux lists them (empty where /proc/cpuinfo is absent)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def choose_isa(features: set[str]) -> tuple[str, tuple[str, ...]]:
    """The best instruction set the CPU has, and its flags.

    Raises:
        Unavailable: the CPU has neither AVX-512 nor AVX2 with FMA (the kernels would not beat
            MindSpore's).
    """
    for name, needs, flags in ISAS:
        if all(f in features for f in needs):
            return name, flags
    raise Unavailable("this CPU has neither AVX-512 nor AVX2 with FMA")


def find_compiler() -> str:
    """The C++ compiler to use: ``$CXX``, else ``g++``, else ``c++``, as an absolute path.

    Raises:
        Unavailable: none is found.
    """
    wanted = os.environ.get("CXX")
    for name in ([wanted] if wanted else ["g++", "c++"]):
        found = shutil.which(name)
        if found:
            return found
    raise Unavailable(f"no C++ compiler found ({'CXX=' + wanted if wanted else 'g++'} is not "
                      "on PATH)")


def compiler_version(compiler: str) -> str:
    try:
        done = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"the C++ compiler {compiler} does not run ({exc})") from None
    if done.returncode != 0:
        raise Unavailable(f"the C++ compiler {compiler} does not run")
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else compiler


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_key(compiler: str, version: str, flags: tuple[str, ...], source: bytes,
              features: set[str]) -> str:
    """The cache folder's name for one build: everything that decides the library's bytes."""
    blob = json.dumps({"compiler": compiler, "version": version, "flags": list(flags),
                       "source": _digest(source), "features": sorted(features)},
                      sort_keys=True)
    return _digest(blob.encode())[:20]


def _check(folder: Path) -> Path | None:
    """The library in ``folder`` if its manifest is intact and its digest matches, else None."""
    from trainer.fileio import read_bounded

    try:
        manifest = json.loads(read_bounded(folder / MANIFEST, MAX_MANIFEST_BYTES))
        library = folder / LIBRARY
        if not isinstance(manifest, dict) or manifest.get("library") != LIBRARY:
            return None
        if _digest(read_bounded(library, MAX_LIBRARY_BYTES)) != manifest.get("sha256"):
            return None
        return library
    except (OSError, ValueError):
        return None


def kernels_folder(root: Path | None = None) -> Path:
    """Where built libraries are kept: ``$MSTRAIN_KERNELS_DIR`` when set (one build shared by
    runs that keep their data in caches of their own), else ``kernels/`` in the cache."""
    from trainer.fileio import cache_root

    named = os.environ.get("MSTRAIN_KERNELS_DIR")
    if named and root is None:
        return Path(named).expanduser()
    return (root or cache_root()) / "kernels"


def build(root: Path | None = None) -> Built:
    """The kernels' library for this machine, from the cache or compiled into it now.

    Args:
        root: The cache folder that holds ``kernels/``. Defaults to `trainer.fileio.cache_root()`.

    Raises:
        Unavailable: no compiler, an unsupported CPU, a failed build, or a cache that cannot be
            written.
    """
    from trainer.fileio import hold_lock, remove_stale_staging

    isa, isa_flags = choose_isa(cpu_features())
    compiler = find_compiler()
    version = compiler_version(compiler)
    source = SOURCE.read_bytes()
    flags = (*BASE_FLAGS, *isa_flags)
    key = cache_key(compiler, version, flags, source, cpu_features())
    base = kernels_folder(root)
    final = base / key
    found = _check(final)
    if found is not None:
        return Built(found, isa, 0.0)
    try:
        base.mkdir(parents=True, exist_ok=True)
        lock = hold_lock(base / f".{key}.lock")
    except OSError as exc:
        raise Unavailable(f"cannot write the cache folder {base} ({exc.strerror})") from None
    try:
        found = _check(final)  # another process built it while this one waited
        if found is not None:
            return Built(found, isa, 0.0)
        remove_stale_staging(base)
        start = time.perf_counter()
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".tmp", dir=base))
        try:
            _compile(compiler, flags, staging)
            data = (staging / LIBRARY).read_bytes()
            (staging / MANIFEST).write_text(json.dumps({
                "library": LIBRARY, "sha256": _digest(data), "isa": isa,
                "compiler": version, "flags": list(flags)}, indent=1))
            if final.exists():  # a damaged earlier build: replaced, never loaded
                shutil.rmtree(final, ignore_errors=True)
            os.replace(staging, final)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        found = _check(final)
        if found is None:
            raise Unavailable(f"the library built in {final} does not read back")
        return Built(found, isa, time.perf_counter() - start)
    except OSError as exc:
        raise Unavailable(f"cannot write the cache folder {base} ({exc.strerror})") from None
    finally:
        lock.close()


def _compile(compiler: str, flags: tuple[str, ...], staging: Path) -> None:
    # The source is copied next to the output, so the command names nothing outside staging.
    source = staging / SOURCE.name
    shutil.copyfile(SOURCE, source)
    command = [compiler, *flags, "-o", str(staging / LIBRARY), str(source)]
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S, check=False, cwd=staging)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"the build took more than {BUILD_TIMEOUT_S} s") from None
    except OSError as exc:
        raise Unavailable(f"the C++ compiler {compiler} does not run ({exc.strerror})") from None
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "error" in line]
        first = (errors or done.stderr.strip().splitlines() or ["no output"])[0]
        raise Unavailable(f"the build failed: {first.strip()[:200]}")
