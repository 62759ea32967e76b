"""The one table of optional packages names, for each, an extra that setup.cfg declares and
that brings it."""

from __future__ import annotations

import configparser
from pathlib import Path

from trainer.extras import EXTRAS, install_hint
from trainer.registry import TRACKERS

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> dict[str | None, str]:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    found: dict[str | None, str] = dict(setup["options.extras_require"])
    found[None] = setup["options"]["install_requires"]
    return found


def test_every_optional_package_comes_with_the_extra_the_table_names():
    requirements = _requirements()
    for package, extra in EXTRAS.items():
        assert extra in requirements, f"{package}: setup.cfg has no extra {extra!r}"
        names = [line.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0]
                 .strip().lower() for line in requirements[extra].splitlines()]
        assert package in names, f"{package} is not in {extra or 'install_requires'}"


def test_every_trackers_package_is_in_the_table():
    for name in TRACKERS.names():
        package = TRACKERS.info(name, "package") or name
        assert package in EXTRAS
        assert f"[{EXTRAS[package]}]" in install_hint(package)
