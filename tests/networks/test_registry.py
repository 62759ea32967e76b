"""Networks: LeNet-5 and the MLP, the registry, and users' ``pkg.module:factory`` networks."""

from __future__ import annotations

import importlib
import itertools
import sys
import textwrap

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")

from mindspore import nn  # noqa: E402

from trainer.errors import ConfigError  # noqa: E402
from trainer.networks import (  # noqa: E402
    MLP,
    NETWORKS,
    BuiltNetwork,
    LeNet5,
    build_network,
    resolve_factory,
)
from trainer.plugins import import_object  # noqa: E402

_names = itertools.count()


def forward(cell: nn.Cell, batch: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.normal(size=(batch, 1, size, size)).astype(np.float32))
    return cell(x).asnumpy()


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """``user_module(source)`` writes a uniquely named module into tmp_path (the current folder)
    and returns its name; the module and the path entry are removed afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    written = []

    def _write(source: str) -> str:
        name = f"usernet_{next(_names)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return name

    yield _write
    for name in written:
        sys.modules.pop(name, None)


TINY_NET = textwrap.dedent("""
    from mindspore import nn

    class Tiny(nn.Cell):
        def __init__(self, num_classes):
            super().__init__()
            self.flatten = nn.Flatten()
            self.dense = nn.Dense(SIZE * SIZE, num_classes)

        def construct(self, x):
            return self.dense(self.flatten(x))

    def build(num_classes=10):
        return Tiny(num_classes)
""")


# ----------------------------------------------------------------------------- built-in networks
def test_lenet_maps_32x32_images_to_logits():
    built = build_network("lenet")
    assert isinstance(built, BuiltNetwork) and isinstance(built.cell, LeNet5)
    assert built.image_size == 32
    out = forward(built.cell, 4, built.image_size)
    assert out.shape == (4, 10) and out.dtype == np.float32 and np.isfinite(out).all()


def test_mlp_maps_28x28_images_to_logits():
    built = build_network("mlp")
    assert isinstance(built.cell, MLP) and built.image_size == 28
    out = forward(built.cell, 3, built.image_size)
    assert out.shape == (3, 10) and np.isfinite(out).all()


@pytest.mark.parametrize("name", ["lenet", "mlp"])
def test_number_of_classes_sets_the_output_width(name):
    built = build_network(name, num_classes=4)
    assert forward(built.cell, 2, built.image_size).shape == (2, 4)


def test_lenet_has_the_tutorial_layers():
    shapes = {p.name: tuple(p.shape) for p in LeNet5().trainable_params()}
    assert shapes["conv1.weight"] == (6, 1, 5, 5)
    assert shapes["conv2.weight"] == (16, 6, 5, 5)
    assert shapes["fc1.weight"] == (120, 400)
    assert shapes["fc2.weight"] == (84, 120)
    assert shapes["fc3.weight"] == (10, 84)


def test_registry_names_build_networks():
    for name in NETWORKS.names():
        entry = NETWORKS.entry(name)
        factory = resolve_factory(name)
        assert factory.__module__ == entry.module
        assert factory is vars(importlib.import_module(entry.module))[factory.__name__]
        assert isinstance(build_network(name).cell, nn.Cell)


# ------------------------------------------------------------------------------ user factories
def test_factory_from_a_module_in_the_current_folder(user_module):
    name = user_module(TINY_NET.replace("SIZE", "28"))
    built = build_network(f"{name}:build", num_classes=3)
    assert type(built.cell).__name__ == "Tiny"
    assert built.image_size == 28  # MNIST's own size when the factory does not say
    assert forward(built.cell, 2, 28).shape == (2, 3)


def test_factory_declares_its_image_size(user_module):
    source = TINY_NET.replace("SIZE", "32") + "\nbuild.image_size = 32\n"
    name = user_module(source)
    built = build_network(f"{name}:build")
    assert built.image_size == 32
    assert forward(built.cell, 2, 32).shape == (2, 10)


def test_cell_declares_its_image_size(user_module):
    source = TINY_NET.replace("SIZE", "20") + "\nTiny.image_size = 20\n"
    built = build_network(f"{user_module(source)}:Tiny")  # a class is a factory too
    assert built.image_size == 20


def test_factory_from_a_package_on_the_path(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "zoo_pkg_net"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(textwrap.dedent(TINY_NET.replace("SIZE", "28")))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    try:
        built = build_network("zoo_pkg_net.models:build")
        assert forward(built.cell, 1, 28).shape == (1, 10)
    finally:
        for mod in ("zoo_pkg_net.models", "zoo_pkg_net"):
            sys.modules.pop(mod, None)


def net_error(spec: str) -> str:
    with pytest.raises(ConfigError) as info:
        build_network(spec)
    assert info.value.exit_code == 2
    return " ".join(str(info.value).split())


def test_missing_module_is_a_config_error(user_module):
    message = net_error("no_such_module_xyz:build")
    assert "'no_such_module_xyz'" in message and "cannot be imported" in message
    assert "PYTHONPATH" in message


def test_missing_attribute_is_a_config_error(user_module):
    name = user_module(TINY_NET.replace("SIZE", "28"))
    message = net_error(f"{name}:buld")
    assert f"'{name}'" in message and "no attribute 'buld'" in message
    assert "build" in message  # lists what the module defines


def test_non_callable_is_a_config_error(user_module):
    name = user_module("build = 42\n")
    message = net_error(f"{name}:build")
    assert "'build'" in message and "not callable" in message


def test_factory_returning_no_cell_is_a_config_error(user_module):
    name = user_module("def build(num_classes=10):\n    return [num_classes]\n")
    message = net_error(f"{name}:build")
    assert f"'{name}:build'" in message and "list" in message and "mindspore.nn.Cell" in message


def test_factory_raising_is_a_config_error(user_module):
    name = user_module("def build(num_classes=10):\n    raise RuntimeError('no GPU here')\n")
    message = net_error(f"{name}:build")
    assert f"'{name}:build'" in message and "RuntimeError" in message
    assert "no GPU here" in message and "num_classes=10" in message


def test_factory_without_num_classes_is_refused_before_it_is_called(user_module, tmp_path):
    name = user_module("import pathlib\ndef build():\n    pathlib.Path('called').touch()\n")
    message = net_error(f"{name}:build")
    assert "num_classes" in message and "not called" in message
    assert not (tmp_path / "called").exists()


@pytest.mark.parametrize("spec", ["os:system", "subprocess:run", "subprocess:Popen", "json:loads",
                                  "os:environ", "os"])
def test_code_that_is_not_a_network_is_never_called(spec):
    message = net_error(spec)
    assert "not called" in message or "pkg.module:Name" in message


@pytest.mark.parametrize("source, fault", [
    ("def build(num_classes=10):\n    x = (\n", "SyntaxError"),
    ("raise ValueError('broken at import')\n", "broken at import"),
    ("import no_such_dependency_xyz\n", "no_such_dependency_xyz"),
])
def test_module_failing_at_import_is_a_config_error(user_module, source, fault):
    name = user_module(source)
    message = net_error(f"{name}:build")
    assert f"'{name}'" in message and fault in message


@pytest.mark.parametrize("spec", ["mymodule:", ":build", "justaname"])
def test_malformed_spec_is_a_config_error(spec):
    with pytest.raises(ConfigError) as info:
        import_object(spec, what="network", option="net", hint="a factory")
    assert repr(spec) in str(info.value) and "pkg.module:Name" in str(info.value)


def test_dotted_attribute_path(user_module):
    name = user_module(TINY_NET.replace("SIZE", "28") + "\nclass Zoo:\n    make = build\n")
    built = build_network(f"{name}:Zoo.make")
    assert type(built.cell).__name__ == "Tiny"
