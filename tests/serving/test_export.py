"""``train.py --export mindir|onnx``: a served file that computes what the checkpoint computes."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from tests.conftest import config_error, run_train, train_here
from trainer.cli import parse_args
from trainer.config import TrainConfig
from trainer.data.idx import read_idx

pytest_plugins = ["tests.trained"]

ERF_NET = textwrap.dedent("""
    from mindspore import nn, ops


    class Erf(nn.Cell):
        def construct(self, x):
            return ops.erf(x)


    def build(num_classes=10):
        return nn.SequentialCell(nn.Flatten(), nn.Dense(28 * 28, num_classes), Erf())
""")


def _network(trained_lenet):
    """The checkpoint's network, loaded in this process, and 50 of its test inputs."""
    from trainer.serving.loading import load_network
    from trainer.serving.predict import network_inputs

    loaded = load_network(trained_lenet.run_dir)
    images = read_idx(trained_lenet.data_dir / "test" / "t10k-images-idx3-ubyte")[:50]
    return loaded.cell, network_inputs(images, 32)


def _outputs(cell, x: np.ndarray) -> np.ndarray:
    import mindspore as ms

    return cell(ms.Tensor(x)).asnumpy()


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".") or ".tmp" in p.name]


# ------------------------------------------------------------------------------ MINDIR
def test_mindir_export_reproduces_the_checkpoint(trained_lenet):
    import mindspore as ms
    from mindspore import nn

    result = run_train(["--export", "mindir", "--ckpt", str(trained_lenet.run_dir), "--data-dir",
                        str(trained_lenet.data_dir)], cwd=trained_lenet.work)
    assert result.returncode == 0, result.stderr
    exported = trained_lenet.run_dir / "export" / "lenet.mindir"
    assert f"to {exported}: " in result.stdout, result.stdout
    assert "input [N, 1, 32, 32] float32" in result.stdout
    assert "outputs match the checkpoint on the first 32 test images" in result.stdout
    assert _leftovers(exported.parent) == []
    # Loaded here, independently of the export's own check: any batch size works.
    network, x = _network(trained_lenet)
    served = nn.GraphCell(ms.load(str(exported)))
    for batch in (x, x[:3]):
        np.testing.assert_allclose(_outputs(served, batch), _outputs(network, batch),
                                   rtol=1e-5, atol=1e-5)


def test_fixed_batch_and_results_dir(trained_lenet, tmp_path):
    import mindspore as ms
    from mindspore import nn

    from trainer.serving.export import export_checkpoint

    cfg = TrainConfig(net="lenet", data_dir=str(trained_lenet.data_dir))
    done = export_checkpoint(trained_lenet.run_dir, "mindir", config=cfg, batch=4,
                             out_dir=tmp_path / "served")
    assert done.path == tmp_path / "served" / "lenet.mindir" and done.batch == 4
    assert done.max_difference is not None and done.max_difference <= 1e-4
    network, x = _network(trained_lenet)
    served = nn.GraphCell(ms.load(str(done.path)))
    np.testing.assert_allclose(_outputs(served, x[:4]), _outputs(network, x[:4]), rtol=1e-5,
                               atol=1e-5)


def test_mismatch_leaves_no_file(trained_lenet, tmp_path, monkeypatch):
    import trainer.serving.export as export

    real = export._run_mindir
    monkeypatch.setattr(export, "_run_mindir", lambda *a: real(*a) + 1e-3)
    with pytest.raises(export.ExportMismatch, match="does not reproduce the checkpoint") as info:
        export.export_checkpoint(trained_lenet.run_dir, "mindir", out_dir=tmp_path,
                                 config=TrainConfig(data_dir=str(trained_lenet.data_dir)))
    assert info.value.exit_code == 1
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------------------- ONNX
def test_onnx_export(trained_lenet):
    from trainer.serving.export import _onnx_structure

    result = train_here(["--export", "onnx", "--ckpt", str(trained_lenet.checkpoint),
                         "--data-dir", str(trained_lenet.data_dir)], cwd=trained_lenet.work)
    assert result.returncode == 0, result.stderr
    exported = trained_lenet.run_dir / "export" / "lenet.onnx"
    assert exported.is_file() and _leftovers(exported.parent) == []
    assert "input [1, 1, 32, 32] float32" in result.stdout
    network, x = _network(trained_lenet)
    # The file's input shape and every weight, against this process's copy of the network: the
    # check export runs itself, whether or not onnxruntime is installed.
    assert "8 of 8 weights" in _onnx_structure(exported, network, 1, (1, 32))
    try:
        import onnxruntime as ort
    except ImportError:
        assert "NOT compared" in result.stdout and "8 of 8 weights identical" in result.stdout
        return
    assert "outputs match the checkpoint" in result.stdout
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {"image": x[i:i + 1]})[0] for i in range(len(x))])
    np.testing.assert_allclose(got, _outputs(network, x), rtol=1e-5, atol=1e-5)


def test_onnx_refuses_an_operator_it_cannot_express(tmp_path, monkeypatch, digits_dir):
    import mindspore as ms

    (tmp_path / "erfnet.py").write_text(ERF_NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    import erfnet

    ms.save_checkpoint(erfnet.build(), str(tmp_path / "erf.ckpt"))  # a plain checkpoint
    result = train_here(["--export", "onnx", "--net", "erfnet:build", "--ckpt", "erf.ckpt",
                         "--data-dir", str(digits_dir)], cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert message.startswith("error: ") and "Traceback" not in message
    assert "cannot export network 'erfnet:build' as ONNX" in message and "Erf" in message
    assert "--export mindir" in message
    assert not (tmp_path / "export" / "erfnet-build.onnx").exists()


# ------------------------------------------------------------------------ command line
def test_export_is_a_run_action():
    args = parse_args(["--export", "onnx", "--ckpt", "runs/x", "--export-batch", "8"])
    assert (args.export, args.ckpt, args.export_batch, args.eval_only) == ("onnx", "runs/x", 8,
                                                                          False)


@pytest.mark.parametrize("argv, expected", [
    (["--export", "mindir"], "required: --ckpt"),
    (["--export", "tflite", "--ckpt", "x"], "invalid choice"),
    (["--export", "mindir", "--eval-only", "--ckpt", "x"], "separate actions"),
    (["--export-batch", "4"], "only with --export"),
    (["--export", "mindir", "--ckpt", "x", "--export-batch", "0"], "at least 1"),
    (["--results-dir", "out"], "only used with --eval-only or --export"),
    (["--export", "mindir", "--ckpt", "x", "--resume", "auto"],
     "unrecognized arguments: --resume"),
])
def test_inconsistent_flags(argv, expected):
    assert expected in config_error(parse_args, argv)
