"""The systemd unit and ``kapmonitor install-service``: the shipped copies, ``systemd-analyze
verify`` and ``security --offline`` (where systemd-analyze is installed), and an install under
``--root`` whose accounts, owners and modes let the service user read its config while other
users cannot."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kapmonitor.install import SHIPPED_BIN, render_unit, shipped_example_config, shipped_unit

ROOT = Path(__file__).resolve().parents[1]
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="install-service needs root")
KAPMONITOR = str(Path(sys.executable).parent / "kapmonitor")


def test_the_wheel_ships_the_unit_and_the_example_config() -> None:
    assert shipped_unit() == (ROOT / "config/kapmonitor.service").read_text()
    assert shipped_example_config() == (ROOT / "config/example.toml").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"data/*.service"' in pyproject and '"data/*.toml"' in pyproject


def unit_settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_unit_settings_the_daemon_relies_on() -> None:
    s = unit_settings(shipped_unit())
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["WatchdogSec"] == ["30s"]
    assert s["RestartPreventExitStatus"] == ["2"]
    assert s["SupplementaryGroups"] == ["bluetooth dialout"]
    assert s["StateDirectory"] == ["kapmonitor"]
    # Serial ports stay reachable and D-Bus (AF_UNIX) stays allowed.
    assert "PrivateDevices" not in s
    assert {"char-ttyUSB rw", "char-ttyACM rw"} <= set(s["DeviceAllow"])
    assert "AF_UNIX" in s["RestrictAddressFamilies"][0].split()
    # A credential whose file is missing would stop the unit from starting at all.
    assert "LoadCredential" not in s


def exposure(unit: Path) -> float:
    assert ANALYZE is not None
    out = subprocess.run([ANALYZE, "security", "--offline=yes", str(unit)],
                         capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out.stdout + out.stderr)
    assert m, out.stdout + out.stderr
    return float(m.group(1))


@needs_analyze
def test_unit_exposure_is_at_most_2(tmp_path: Path) -> None:
    unit = tmp_path / "kapmonitor.service"
    unit.write_text(shipped_unit())
    assert exposure(unit) <= 2.0
    # The check can fail: the unit of the old docs scored far worse.
    bare = tmp_path / "bare.service"
    bare.write_text("[Service]\nType=notify\nExecStart=/bin/true\nUser=kapmonitor\n"
                    "NoNewPrivileges=yes\nProtectSystem=strict\nProtectHome=yes\n"
                    "PrivateTmp=yes\n")
    assert exposure(bare) > 5.0


@needs_analyze
def test_unit_verifies_with_this_installations_command(tmp_path: Path) -> None:
    unit = tmp_path / "kapmonitor.service"
    unit.write_text(render_unit(KAPMONITOR))
    assert SHIPPED_BIN not in unit.read_text()
    out = subprocess.run([ANALYZE or "", "verify", str(unit)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    # ... and verify does notice a command that is not there.
    unit.write_text(render_unit("/nonexistent/kapmonitor"))
    out = subprocess.run([ANALYZE or "", "verify", str(unit)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0 and "not executable" in out.stderr


@pytest.fixture
def image_root() -> Iterator[Path]:
    """A root directory with this host's account files, traversable by unprivileged users
    (pytest's tmp_path is not), so the test can read as the service user."""
    root = Path(tempfile.mkdtemp(prefix="kapmonitor-root-", dir="/tmp"))
    root.chmod(0o755)
    (root / "etc").mkdir(mode=0o755)
    for name in ("passwd", "group", "shadow", "gshadow"):
        src = Path("/etc") / name
        if src.exists():
            shutil.copy(src, root / "etc" / name)
    # The case from the field: a fresh machine where bluez (and its group) is not installed.
    group = root / "etc/group"
    group.write_text("".join(line + "\n" for line in group.read_text().splitlines()
                             if not line.startswith(("bluetooth:", "kapmonitor:"))))
    passwd = root / "etc/passwd"
    passwd.write_text("".join(line + "\n" for line in passwd.read_text().splitlines()
                              if not line.startswith("kapmonitor:")))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def account(root: Path, db: str, name: str) -> list[str]:
    for line in (root / "etc" / db).read_text().splitlines():
        if line.split(":")[0] == name:
            return line.split(":")
    raise AssertionError(f"{name} not in {db}")


def can_read(path: Path, uid: int, gid: int) -> bool:
    out = subprocess.run(["cat", str(path)], user=uid, group=gid, extra_groups=[],
                         capture_output=True, timeout=30)
    return out.returncode == 0


@needs_root
@pytest.mark.skipif(shutil.which("useradd") is None, reason="useradd is not installed")
def test_install_service_under_a_root(image_root: Path) -> None:
    run = subprocess.run([KAPMONITOR, "install-service", "--root", str(image_root)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "groupadd" in run.stdout  # bluetooth was missing and is created
    user = account(image_root, "passwd", "kapmonitor")
    uid, gid = int(user[2]), int(user[3])
    assert user[6] == "/usr/sbin/nologin"
    for group in ("bluetooth", "dialout"):
        assert "kapmonitor" in account(image_root, "group", group)[3].split(","), group

    etc = image_root / "etc/kapmonitor"
    config = etc / "config.toml"
    for path, owner, mode in ((etc, (0, gid), 0o750), (config, (0, gid), 0o640),
                              (image_root / "var/lib/kapmonitor", (uid, gid), 0o750)):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == owner, path
        assert stat.S_IMODE(st.st_mode) == mode, path
    assert config.read_text() == shipped_example_config()
    # The service user can read its config; any other unprivileged user cannot.
    assert can_read(config, uid, gid)
    assert not can_read(config, 65534, 65534)
    unit = (image_root / "etc/systemd/system/kapmonitor.service").read_text()
    assert f"ExecStart={KAPMONITOR} run --config /etc/kapmonitor/config.toml" in unit

    # A re-run keeps the clinic's edited config and changes nothing else.
    config.write_text("# edited by the clinic\n")
    again = subprocess.run([KAPMONITOR, "install-service", "--root", str(image_root)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "groupadd" not in again.stdout and "useradd" not in again.stdout
    assert config.read_text() == "# edited by the clinic\n"
    assert "(kept)" in again.stdout


def test_install_service_dry_run_changes_nothing(tmp_path: Path) -> None:
    run = subprocess.run([KAPMONITOR, "install-service", "--dry-run", "--root", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "would: directory /etc/kapmonitor root:kapmonitor 0750" in run.stdout
    assert "would: file /etc/kapmonitor/config.toml root:kapmonitor 0640" in run.stdout
    assert list(tmp_path.iterdir()) == []


def test_clock_synchronisation_is_read_from_timesyncd(tmp_path: Path) -> None:
    from kapmonitor.clock import system_clock_synchronized

    assert system_clock_synchronized(tmp_path / "absent") is None
    (tmp_path / "timesync").mkdir()
    assert system_clock_synchronized(tmp_path / "timesync") is False
    (tmp_path / "timesync" / "synchronized").touch()
    assert system_clock_synchronized(tmp_path / "timesync") is True
