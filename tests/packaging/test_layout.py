"""The source layout against the packaging: every package is shipped, and the product does not
import the simulators (they plug in through entry points)."""

from __future__ import annotations

import ast
import configparser
import re
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def package_folders() -> set[str]:
    """Dotted names of the folders with an ``__init__.py``, simulators/ under its installed
    name."""
    names = set()
    for top, installed in (("kapmonitor", "kapmonitor"), ("simulators", "kapmonitor_simulators")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            names.add(".".join((installed, *rel)))
    return names


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert package_folders() <= listed, sorted(package_folders() - listed)
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {
        "kapmonitor_simulators": "simulators"
    }
    assert not any(name.split(".")[0] == "simulators" for name in listed)


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def test_the_product_never_imports_simulator_code() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in (ROOT / "kapmonitor").rglob("*.py")
        for module in imported_modules(path)
        if module.split(".")[0] in ("simulators", "kapmonitor_simulators")
    }
    assert not offenders, sorted(offenders)


def test_the_scanner_sees_a_planted_import(tmp_path: Path) -> None:
    planted = tmp_path / "m.py"
    planted.write_text(
        "def f():\n    from kapmonitor_simulators.ward import Ward\n"
        "    importlib.import_module('simulators.ble')\n"
    )
    assert imported_modules(planted) == {"kapmonitor_simulators.ward", "simulators.ble"}


def test_the_simulators_plug_in_through_entry_points() -> None:
    from kapmonitor_simulators.ble.radio import PLUGIN
    from kapmonitor_simulators.demo import main as demo_main
    from kapmonitor_simulators.driver import SimDriver

    from kapmonitor.ble.radio import radio_plugin
    from kapmonitor.drivers.registry import drivers

    assert drivers()["sim"] is SimDriver
    assert radio_plugin("simulated") is PLUGIN
    (demo,) = entry_points(group="kapmonitor.commands", name="demo")
    assert demo.load() is demo_main


def test_a_missing_radio_plug_in_is_named() -> None:
    from kapmonitor.ble.radio import RadioUnavailable, radio_plugin

    with pytest.raises(RadioUnavailable, match="'nonesuch' is not installed"):
        radio_plugin("nonesuch")


def test_every_part_of_kapmonitor_has_a_layer() -> None:
    """A module left out of the layers contract (.importlinter) would be free to import
    anything: each top-level module and package of kapmonitor must have its layer."""
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    layers = config["importlinter:contract:layers"]["layers"]
    listed = {name.strip() for line in layers.splitlines() for name in re.split(r"[:|]", line)
              if name.strip()}
    parts = {f"kapmonitor.{p.stem}" for p in (ROOT / "kapmonitor").iterdir()
             if (p.suffix == ".py" and not p.stem.startswith("__"))
             or (p.is_dir() and (p / "__init__.py").exists())}
    assert parts - listed == set(), "add these to a layer in .importlinter"
    assert listed - parts == set(), "these layers name modules that do not exist"
