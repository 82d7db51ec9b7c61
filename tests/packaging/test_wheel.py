"""The distribution as a user gets it: a wheel built from this tree, installed into a fresh
virtualenv, run from outside the repository.

To stay offline and quick the wheel is built without build isolation (the dev extra brings
setuptools) and installed with ``--no-deps``. Its dependencies come from this test environment,
but only the closure of what the wheel's own metadata requires (without extras, or with
``demo``), linked into a directory the fresh virtualenv puts on its path: exactly the packages
``pip install kapmonitor`` (or ``kapmonitor[demo]``) brings, and nothing else. So a dependency
missing from the metadata, a module missing from the wheel, or a product import of simulator
code fails here.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers.daemon import clinic_config, write_toml
from tests.helpers.mqtt import Broker, subscribe
from tests.helpers.paths import CONFIG, ROOT, TRACES

pytestmark = pytest.mark.slow

SOURCES = ("pyproject.toml", "README.md", "kapmonitor", "simulators")


@dataclass
class Venv:
    root: Path
    site: Path
    cwd: Path  # an empty directory outside the repository

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def run(self, *args: str | Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return subprocess.run(
            [str(a) for a in args], cwd=self.cwd, env=env, capture_output=True, text=True,
            timeout=timeout,
        )

    def kapmonitor(
        self, *args: str | Path, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return self.run(self.root / "bin" / "kapmonitor", *args, timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once per run, from a copy of the tree (the build writes into its source)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(work / "dist"), str(src)],
        check=True, capture_output=True, timeout=180,
    )
    (built,) = (work / "dist").glob("kapmonitor-*.whl")
    return built


def requirements_closure(requires: list[str], extras: set[str]) -> set[str]:
    """Names of the distributions that ``requires`` (with ``extras``) pulls in, transitively."""
    seen: set[str] = set()
    todo: list[tuple[list[str], set[str]]] = [(requires, extras)]
    while todo:
        reqs, active = todo.pop()
        for text in reqs:
            req = Requirement(text)
            if req.marker is not None and not any(
                req.marker.evaluate({"extra": e}) for e in ({""} | active)
            ):
                continue
            name = canonicalize_name(req.name)
            key = f"{name}[{','.join(sorted(req.extras))}]"
            if key in seen:
                continue
            seen.add(key)
            todo.append((importlib.metadata.requires(req.name) or [], set(req.extras)))
    return {key.split("[")[0] for key in seen}


def link_distributions(names: set[str], into: Path) -> None:
    """Symlink every top-level file and folder of the installed distributions ``names``."""
    into.mkdir()
    for name in names:
        dist = importlib.metadata.distribution(name)
        for f in dist.files or ():
            top = f.parts[0]
            if top == ".." or top.endswith(".pth") or (into / top).exists():
                continue
            target = Path(str(dist.locate_file(top)))
            if target.exists():
                (into / top).symlink_to(target)


def wheel_metadata(built: Path) -> email.message.Message:
    with zipfile.ZipFile(built) as zf:
        (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(zf.read(meta).decode())


def make_venv(root: Path, built: Path, extras: set[str]) -> Venv:
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(root)], check=True, timeout=60)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"), "install", "-q",
         "--no-deps", "--no-index", str(built)],
        check=True, capture_output=True, timeout=120,
    )
    (site,) = (root / "lib").glob("python3.*/site-packages")
    requires = wheel_metadata(built).get_all("Requires-Dist") or []
    link_distributions(requirements_closure(requires, extras), root / "deps")
    (site / "_kapmonitor_test_deps.pth").write_text(str(root / "deps") + "\n")
    cwd = root / "cwd"
    cwd.mkdir()
    return Venv(root, site, cwd)


@pytest.fixture(scope="module")
def lean(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    return make_venv(tmp_path_factory.mktemp("lean") / "venv", wheel, set())


@pytest.fixture(scope="module")
def with_demo(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    return make_venv(tmp_path_factory.mktemp("demo") / "venv", wheel, {"demo"})


def test_the_wheel_claims_only_our_import_names(wheel: Path, lean: Venv) -> None:
    with zipfile.ZipFile(wheel) as zf:
        tops = {n.split("/")[0] for n in zf.namelist()}
    tops = {t for t in tops if not t.endswith(".dist-info")}
    assert tops == {"kapmonitor", "kapmonitor_simulators"}
    assert not (lean.site / "simulators").exists()
    probe = lean.run(
        lean.python, "-c", "import importlib.util as u; print(u.find_spec('simulators'))"
    )
    assert probe.stdout.strip() == "None", probe.stdout + probe.stderr


def test_the_lean_install_has_no_demo_dependencies(lean: Venv) -> None:
    for module in ("rich", "amqtt", "kapmonitor_simulators.demo"):
        probe = lean.run(lean.python, "-c", f"import {module}")
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, module
    assert lean.run(lean.python, "-c", "import kapmonitor.cli, kapmonitor.daemon").returncode == 0


def test_check_config_decode_and_replay_run_from_the_installed_wheel(lean: Venv) -> None:
    for name in ("example.toml", "demo.toml"):  # demo.toml: the `sim` driver, by entry point
        shutil.copy2(CONFIG / name, lean.cwd / name)
        p = lean.kapmonitor("check-config", name)
        assert p.returncode == 0, p.stdout + p.stderr
    p = lean.kapmonitor("decode", "nonin-ascii", "SPO2=097 HR=072")
    assert p.returncode == 0, p.stderr
    assert {json.loads(line)["metric"] for line in p.stdout.splitlines()} >= {"spo2", "pulse_rate"}
    shutil.copy2(TRACES / "bp_crisis.csv", lean.cwd / "trace.csv")
    p = lean.kapmonitor("replay", "trace.csv")
    assert p.returncode == 0, p.stderr
    assert any(json.loads(line).get("rule") == "bp_crisis" for line in p.stdout.splitlines())


def test_demo_without_the_extra_says_what_to_install(lean: Venv) -> None:
    p = lean.kapmonitor("demo", "--for", "3")
    assert p.returncode == 2
    assert "pip install 'kapmonitor[demo]'" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.broker
async def test_run_drives_the_sim_driver_from_the_installed_wheel(
    lean: Venv, broker: Broker
) -> None:
    cfg = clinic_config(lean.root / "state", broker.address, interval=0.2)
    config = write_toml(lean.cwd / "run.toml", cfg)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    async with subscribe(broker.address, "kapmonitor/t1/bed/+/reading") as sub:
        proc = subprocess.Popen(
            [str(lean.root / "bin" / "kapmonitor"), "run", "--config", str(config)],
            cwd=lean.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            await sub.wait_for(lambda m: len(m) >= 3, timeout=30)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out


@pytest.mark.broker  # the demo starts its own broker (Mosquitto, else the embedded one)
def test_demo_runs_with_the_extra_outside_the_repository(with_demo: Venv) -> None:
    p = with_demo.kapmonitor(
        "demo", "--for", "6", "--speed", "60", "--beds", "2", "--seed", "3", "--no-view",
        timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "messages acknowledged by the broker" in p.stdout
    assert "Traceback" not in p.stderr

