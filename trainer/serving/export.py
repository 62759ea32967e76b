"""Export a trained network for serving, and prove the file computes what the checkpoint does.

``python train.py --export mindir --ckpt runs/demo`` writes ``runs/demo/export/lenet.mindir``
(``--export onnx``: ``lenet.onnx``). The file is written in a temporary folder, loaded back and run
on a batch of inputs (the first 32 test images when the test split is at hand, random images
otherwise); only when its outputs match the network's (``numpy.allclose`` with rtol and atol
1e-5) is it copied atomically into place. A file that does not match is never left behind.

* MINDIR (``mindspore.export``) keeps the batch dimension dynamic by default: the input is
  ``[N, C, S, S]`` float32 (the channels and side the checkpoint records) for any N, checked
  with batches of two sizes (31 images, then 1).
  ``--export-batch N`` fixes it. It is loaded back with ``mindspore.load`` and ``nn.GraphCell``.
* ONNX (``mindspore.onnx.export``, input ``image``, output ``logits``) needs a fixed batch in
  MindSpore 2.7 (its dynamic axes leave the output declared with batch 1), so it is exported with
  batch 1 unless ``--export-batch N`` says otherwise. It is run with onnxruntime when that is
  installed (the ``onnx`` extra); without it only the file's structure is checked:
  the input and output shapes, and that every weight of the network is stored unchanged.
  The outputs are then not compared, and the message says so.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.config import TrainConfig
from trainer.errors import ConfigError, OutputError, UserError, os_fault
from trainer.extras import install_hint
from trainer.fileio import atomic_path
from trainer.serving import FORMATS

logger = logging.getLogger("mstrain")

SUFFIXES = {"mindir": ".mindir", "onnx": ".onnx"}  # one per format of trainer.serving.FORMATS
VERIFY_COUNT = 32
RTOL = ATOL = 1e-5
# MindSpore refuses file names with other characters (spaces, non-ASCII) when exporting.
_SAFE_NAME = re.compile(r"^[0-9a-zA-Z@_\-.:/\\]+$")


class ExportMismatch(UserError):
    """The exported file does not compute what the checkpoint computes."""


@dataclass
class ExportResult:
    """What :func:`export_checkpoint` wrote and how it was checked."""

    path: Path
    batch: int | None  # None: dynamic
    max_difference: float | None  # None: outputs not compared (structure only)
    checked_on: str


def export_checkpoint(ckpt: str | os.PathLike, fmt: str, *, config: TrainConfig | None = None,
                      net: str | None = None, batch: int | None = None,
                      out_dir: str | os.PathLike | None = None,
                      recorded: bool = False) -> ExportResult:
    """Exports a checkpoint's network as MINDIR or ONNX, verified against the checkpoint.

    Args:
        ckpt: A bundle, a plain MindSpore checkpoint, a ``latest.json`` or a run directory.
        fmt: ``"mindir"`` or ``"onnx"``.
        config: Names the device and the data folder whose test split supplies the
            verification images. Defaults to `None`: the defaults.
        net: The network to build instead of the one the checkpoint records. Defaults to
            `None`.
        batch: Fixed batch size of the exported input. Defaults to `None`: dynamic for MINDIR,
            1 for ONNX.
        out_dir: Folder for the file. Defaults to `None`: ``RUN/export`` for a checkpoint of a
            run directory, else ``export/`` beside the checkpoint.
        recorded: Verify on the data the checkpoint's run recorded. Defaults to `False`.

    Returns:
        An :class:`ExportResult`.

    Raises:
        ConfigError: unknown format, a bad batch size, or a network the format cannot express.
        CheckpointError: the checkpoint is missing, damaged or of another network.
        ExportMismatch: the exported file's outputs differ from the checkpoint's (exit 1).
    """
    from trainer.extras import check_tracking
    from trainer.fileio import slug
    from trainer.serving.evaluate import output_folder
    from trainer.serving.loading import load_network, recorded_data
    from trainer.tracking import report_serving

    if fmt not in FORMATS:
        raise ConfigError(f"Export format {fmt!r} is not supported; choose one of: "
                          f"{', '.join(FORMATS)}.")
    if batch is not None and batch < 1:
        raise ConfigError(f"--export-batch is {batch}; it must be at least 1 (or left out for "
                          "the default).")
    if fmt == "onnx" and batch is None:
        batch = 1
    cfg = (config or TrainConfig()).validate()
    check_tracking(cfg.trackers())  # a missing extra is refused before any work
    loaded = load_network(ckpt, net=net, device=cfg.device, mode=cfg.mode)
    bundle, network, size, name = loaded.bundle, loaded.cell, loaded.image_size, loaded.net
    cfg = recorded_data(cfg, bundle) if recorded else cfg
    channels = loaded.in_channels
    folder = Path(out_dir) if out_dir else output_folder(bundle.path) / "export"
    target = folder / f"{slug(name)}{SUFFIXES[fmt]}"
    inputs, checked_on = verification_inputs(cfg, loaded)

    with tempfile.TemporaryDirectory(prefix="mstrain-export-") as work:
        if not _SAFE_NAME.match(work):
            raise ConfigError(f"The temporary folder {work} has characters MindSpore refuses in "
                              "export paths; set TMPDIR to a plain ASCII path such as /tmp.")
        written = _export(network, Path(work) / "model", fmt, batch, (channels, size), name)
        difference, structure, checked_on = _verify(written, network, fmt, batch,
                                                    (channels, size), inputs, checked_on, target)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(target, suffix=SUFFIXES[fmt]) as tmp:
                shutil.copyfile(written, tmp)
        except OSError as exc:
            raise OutputError(f"Cannot write {target}: {os_fault(exc)}. Pass "
                              "--results-dir DIR, a folder you may write to.") from None

    shape = f"[{batch if batch else 'N'}, {channels}, {size}, {size}] float32"
    if difference is not None:
        how = (f"outputs match the checkpoint on {checked_on} (largest difference "
               f"{difference:.2g})")
    else:
        how = (f"structure checked ({structure}); the outputs were NOT compared because "
               f"onnxruntime is not installed ({install_hint('onnxruntime')} to compare them)")
    logger.info("Exported %s (%s) to %s: input %s; %s.", bundle.path, name, target, shape,
                how)
    report_serving(cfg, bundle, output_folder(bundle.path), {}, [(target, "model")],
                   what="export")
    return ExportResult(target, batch, difference, checked_on)


def _verify(written: Path, network, fmt: str, batch: int | None, size: tuple[int, int],
            inputs: np.ndarray, checked_on: str,
            target: Path) -> tuple[float | None, str | None, str]:
    """Runs the exported file on ``inputs`` and compares it with the network.

    Returns:
        ``(largest difference or None when not compared, structure checked, what it ran on)``.

    Raises:
        ExportMismatch: the outputs differ (nothing is written to ``target``).
    """
    expected = _run_network(network, inputs)
    if fmt == "mindir":
        got, structure = _run_mindir(written, inputs, batch), None
    else:
        got, structure = _run_onnx(written, inputs, batch), _onnx_structure(
            written, network, batch, size)
    if got is None:
        return None, structure, "no inputs (structure only)"
    difference = None
    if got.shape != expected.shape:
        why = f"its outputs have shape {got.shape}, the network's {expected.shape}"
    else:
        difference = float(np.abs(got - expected).max())
        why = f"its outputs differ by up to {difference:.3g} (allowed: rtol and atol {RTOL:g})"
    if difference is None or not np.allclose(got, expected, rtol=RTOL, atol=ATOL):
        other = "Export as MINDIR instead, or" if fmt == "onnx" else "Please"
        raise ExportMismatch(
            f"The exported {fmt.upper()} file does not reproduce the checkpoint: on "
            f"{checked_on} {why}. Nothing was written to {target}. {other} report the network "
            "and MindSpore's version to the MindSpore project.", exit_code=1)
    return difference, structure, checked_on


def verification_inputs(cfg: TrainConfig, loaded) -> tuple[np.ndarray, str]:
    """Network inputs to compare on: the first test images of the configuration's data source
    when they are at hand (of the checkpoint's channels), else random images.

    Nothing is downloaded or generated for this.

    Returns:
        ``([32, C, S, S] float32, description)``.
    """
    from trainer.data.cache import decode_split
    from trainer.data.sources import make_source
    from trainer.data.transforms import value_table
    from trainer.errors import DataError

    size, channels = loaded.image_size, loaded.in_channels
    images, where = None, ""
    try:
        source = make_source(cfg, progress=False)
        info = source.prepare(fetch=False)
        if info.channels == channels:
            images = decode_split(source, "test", image_size=size,
                                   num_classes=info.num_classes,
                                   channels=channels)[0][:VERIFY_COUNT]
            where = f"the first {len(images)} test images of {info.about}"
    except (DataError, ConfigError) as exc:
        logger.warning("Not verifying on the test split: %s", str(exc).split(". ")[0])
    if images is None:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, size=(VERIFY_COUNT, channels, size, size), dtype=np.uint8)
        where = f"{VERIFY_COUNT} random images (no test split in {cfg.resolved_data_dir()})"
    values = value_table(loaded.normalisation) if loaded.normalisation is not None else None
    if values is None:
        return (np.asarray(images, dtype=np.float32) / 255.0), where
    out = np.empty(images.shape, dtype=np.float32)
    for channel in range(channels):
        out[:, channel] = values[channel][images[:, channel]]
    return out, where


def _export(network, stem: Path, fmt: str, batch: int | None, shape: tuple[int, int],
            net: str) -> Path:
    """Writes ``stem`` + suffix (MindSpore appends the suffix itself) and returns its path;
    the input is ``[batch, C, S, S]`` for ``shape`` ``(C, S)``."""
    import mindspore as ms

    channels, size = shape
    try:
        if fmt == "mindir":
            shape = [batch, channels, size, size] if batch else [None, channels, size, size]
            ms.export(network, ms.Tensor(shape=shape, dtype=ms.float32), file_name=str(stem),
                      file_format="MINDIR")
        else:
            example = ms.Tensor(np.zeros((batch, channels, size, size), dtype=np.float32))
            ms.onnx.export(network, example, file_name=str(stem), input_names=["image"],
                           output_names=["logits"])
    except (RuntimeError, ValueError, TypeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        other = " Export it as MINDIR (--export mindir) instead." if fmt == "onnx" else ""
        raise ConfigError(f"MindSpore {ms.__version__} cannot export network {net!r} as "
                          f"{fmt.upper()}: {reason}.{other}") from None
    path = stem.with_name(stem.name + SUFFIXES[fmt])
    if not path.is_file():
        raise ConfigError(f"MindSpore reported no error but wrote no {fmt.upper()} file for "
                          f"network {net!r}; export it as MINDIR instead.")
    return path


def _run_network(network, inputs: np.ndarray) -> np.ndarray:
    import mindspore as ms

    return network(ms.Tensor(inputs)).asnumpy()


def _in_batches(run, inputs: np.ndarray, batch: int | None) -> np.ndarray:
    """Runs ``run`` over ``inputs`` in calls of exactly ``batch`` rows (the last one padded)."""
    if not batch:
        return run(inputs)
    outs = []
    for start in range(0, len(inputs), batch):
        x = inputs[start:start + batch]
        real = len(x)
        if real < batch:
            x = np.concatenate([x, np.zeros((batch - real, *x.shape[1:]), dtype=x.dtype)])
        outs.append(run(x)[:real])
    return np.concatenate(outs)


def _run_mindir(path: Path, inputs: np.ndarray, batch: int | None) -> np.ndarray:
    import mindspore as ms
    from mindspore import nn

    cell = nn.GraphCell(ms.load(str(path)))

    def run(x: np.ndarray) -> np.ndarray:
        return cell(ms.Tensor(x)).asnumpy()

    if batch:
        return _in_batches(run, inputs, batch)
    # A dynamic batch must take batches of different sizes: run all but the last, then one.
    return np.concatenate([run(inputs[:-1]), run(inputs[-1:])])


def _run_onnx(path: Path, inputs: np.ndarray, batch: int | None) -> np.ndarray | None:
    """Outputs through onnxruntime, or None when it is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return _in_batches(lambda x: session.run(None, {name: x})[0], inputs, batch)


# ------------------------------------------------------------------ ONNX structure, no packages
def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _fields(data: bytes) -> list[tuple[int, Any]]:
    """Decodes one protobuf message into ``(field number, value)`` pairs (wire format only)."""
    out, i = [], 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 2:
            length, i = _varint(data, i)
            value, i = data[i:i + length], i + length
            if i > len(data):
                raise ValueError("truncated field")
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, i = data[i:i + width], i + width
        else:
            raise ValueError(f"wire type {wire}")
        out.append((number, value))
    return out


def _onnx_dims(value_info: bytes) -> list[int | str]:
    """``ValueInfoProto`` -> its tensor's dimensions (``dim_value`` or ``dim_param``)."""
    type_proto = next(v for n, v in _fields(value_info) if n == 2)
    tensor = next(v for n, v in _fields(type_proto) if n == 1)
    shape = next(v for n, v in _fields(tensor) if n == 2)
    dims: list[int | str] = []
    for _, dim in (f for f in _fields(shape) if f[0] == 1):
        parts = dict(_fields(dim))
        dims.append(parts[1] if 1 in parts else bytes(parts.get(2, b"?")).decode())
    return dims


def _onnx_structure(path: Path, network, batch: int, shape: tuple[int, int]) -> str:
    """Checks an ONNX file without onnx packages: shapes, and every weight stored unchanged.

    Returns:
        A short description of what was checked.

    Raises:
        ExportMismatch: the file is not an ONNX model of this network.
    """
    def fail(why: str):
        return ExportMismatch(f"The exported ONNX file is not a valid model of the network: "
                              f"{why}. Export as MINDIR instead.", exit_code=1)

    try:
        model = _fields(path.read_bytes())
        graph = _fields(next(v for n, v in model if n == 7))
        nodes = [v for n, v in graph if n == 1]
        inits = {}
        for _, tensor in (f for f in graph if f[0] == 5):
            parts = _fields(tensor)
            name = next((bytes(v).decode() for n, v in parts if n == 8), "")
            raw = next((bytes(v) for n, v in parts if n == 9), None)
            inits[name] = ([v for n, v in parts if n == 1], raw)
        inputs = [_onnx_dims(v) for n, v in graph if n == 11]
        outputs = [_onnx_dims(v) for n, v in graph if n == 12]
    except (StopIteration, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise fail(f"it cannot be decoded ({exc or 'a required field is missing'})") from None
    if not nodes:
        raise fail("its graph has no operators")
    channels, size = shape
    if inputs != [[batch, channels, size, size]]:
        raise fail(f"its inputs are {inputs}, expected [[{batch}, {channels}, {size}, {size}]]")
    if len(outputs) != 1 or outputs[0][0] != batch:
        raise fail(f"its outputs are {outputs}, expected one of batch {batch}")
    params = list(network.get_parameters())
    compared = 0
    for p in params:
        value = p.asnumpy().astype(np.float32)
        if p.name not in inits:
            continue
        dims, raw = inits[p.name]
        if tuple(dims) != value.shape or raw != value.tobytes():
            raise fail(f"weight {p.name} differs from the checkpoint's")
        compared += 1
    total = len(params)
    if compared == 0:
        raise fail("none of the network's weights is stored under its name")
    return (f"{len(nodes)} operators, input [{batch}, {channels}, {size}, {size}], {compared} "
            f"of {total} weights identical to the checkpoint's")
