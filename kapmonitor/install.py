"""``kapmonitor install-service``: the systemd unit, the service account and the config folder.

What belongs here: the steps that put an installed kapmonitor under systemd on a Debian or
Raspberry Pi OS host, and nothing the daemon itself runs. The unit and the example config are
shipped inside the package (``kapmonitor/data/``, copies of ``config/kapmonitor.service`` and
``config/example.toml``), so a wheel installed into any virtualenv can install its own service.

The steps, each idempotent (a re-run changes nothing that is already right):

1. the groups ``bluetooth`` (BLE through BlueZ's D-Bus policy) and ``dialout`` (serial ports)
   exist: they are created as system groups when bluez is not installed yet, so that
   ``SupplementaryGroups=`` in the unit never fails;
2. the system user ``kapmonitor`` (no login shell, home = the state directory), a member of
   both groups, so that ``sudo -u kapmonitor kapmonitor scan`` sees what the service sees (the
   unit also sets them with ``SupplementaryGroups=``);
3. ``/etc/kapmonitor`` as ``root:kapmonitor 0750`` and ``config.toml`` in it as
   ``root:kapmonitor 0640`` (the service reads it but cannot change it; an existing config is
   kept, only its owner and mode are fixed);
4. ``/var/lib/kapmonitor`` as ``kapmonitor:kapmonitor 0750`` (systemd's ``StateDirectory=``
   also does this at every start; here it is for ``check-config`` and manual runs);
5. the unit in ``/etc/systemd/system/kapmonitor.service`` with ``ExecStart`` pointing at this
   installation's ``kapmonitor`` command, then ``systemctl daemon-reload`` and ``enable``
   (``--now`` also starts it).

``--root DIR`` applies everything under ``DIR`` (accounts through ``useradd --prefix``; no
``systemctl``): for building images and for the tests. ``--dry-run`` prints the steps only.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

UNIT_NAME = "kapmonitor.service"
SHIPPED_BIN = "/opt/kapmonitor/bin/kapmonitor"
GROUPS = ("bluetooth", "dialout")


def shipped_unit() -> str:
    """The unit file shipped in the package (a copy of ``config/kapmonitor.service``)."""
    return resources.files("kapmonitor").joinpath("data", UNIT_NAME).read_text()


def shipped_example_config() -> str:
    """The example config shipped in the package (a copy of ``config/example.toml``)."""
    return resources.files("kapmonitor").joinpath("data", "example.toml").read_text()


def installed_command() -> str:
    """The ``kapmonitor`` console script of the running installation."""
    beside = Path(sys.executable).parent / "kapmonitor"
    if beside.exists():
        return str(beside)
    found = shutil.which("kapmonitor")
    return found or SHIPPED_BIN


def render_unit(command: str, config_path: str = "/etc/kapmonitor/config.toml") -> str:
    """The unit with this installation's command and config path."""
    text = shipped_unit().replace(SHIPPED_BIN, command)
    return text.replace("/etc/kapmonitor/config.toml", config_path)


@dataclass
class Options:
    root: Path
    user: str
    command: str
    now: bool
    dry_run: bool

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    @property
    def rooted(self) -> bool:
        return self.root != Path("/")


class Installer:
    """Carries out (or, dry, prints) the steps in the module docstring."""

    def __init__(self, opts: Options) -> None:
        self.o = opts
        self.done: list[str] = []

    def say(self, text: str) -> None:
        self.done.append(text)
        print(("would: " if self.o.dry_run else "") + text)

    def run(self, cmd: list[str]) -> None:
        self.say("run " + " ".join(cmd))
        if not self.o.dry_run:
            subprocess.run(cmd, check=True)

    # -- account database (the host's, or the one under --root) -----------------------------
    def _db(self, name: str) -> list[list[str]]:
        path = self.o.path(f"/etc/{name}")
        try:
            return [line.split(":") for line in path.read_text().splitlines() if line]
        except FileNotFoundError:
            return []

    def gid(self, group: str) -> int | None:
        if not self.o.rooted:
            try:
                return grp.getgrnam(group).gr_gid
            except KeyError:
                return None
        for row in self._db("group"):
            if row[0] == group:
                return int(row[2])
        return None

    def uid(self, user: str) -> int | None:
        if not self.o.rooted:
            try:
                return pwd.getpwnam(user).pw_uid
            except KeyError:
                return None
        for row in self._db("passwd"):
            if row[0] == user:
                return int(row[2])
        return None

    def _prefix(self) -> list[str]:
        return ["--prefix", str(self.o.root)] if self.o.rooted else []

    def ensure_group(self, group: str) -> None:
        if self.gid(group) is not None:
            self.say(f"group {group} exists")
            return
        self.run(["groupadd", *self._prefix(), "--system", group])

    def members(self, group: str) -> set[str]:
        if not self.o.rooted:
            try:
                return set(grp.getgrnam(group).gr_mem)
            except KeyError:
                return set()
        for row in self._db("group"):
            if row[0] == group:
                return {m for m in row[3].split(",") if m}
        return set()

    def ensure_user(self) -> None:
        user = self.o.user
        if self.uid(user) is None:
            self.run(["useradd", *self._prefix(), "--system", "--user-group",
                      "--groups", ",".join(GROUPS),
                      "--home-dir", "/var/lib/kapmonitor", "--no-create-home",
                      "--shell", "/usr/sbin/nologin", "--comment", "kapmonitor service", user])
            return
        missing = [g for g in GROUPS if user not in self.members(g)]
        if missing:
            self.run(["usermod", *self._prefix(), "--append", "--groups", ",".join(missing),
                      user])
        else:
            self.say(f"user {user} exists, in groups {', '.join(GROUPS)}")

    def _owner(self, user: str, group: str) -> tuple[int, int]:
        uid, gid = self.uid(user), self.gid(group)
        if self.o.dry_run and (uid is None or gid is None):
            return -1, -1  # the account is only planned
        if uid is None or gid is None:
            raise RuntimeError(f"account {user}:{group} is missing after creating it")
        return uid, gid

    def ensure_dir(self, absolute: str, user: str, group: str, mode: int) -> None:
        path = self.o.path(absolute)
        self.say(f"directory {absolute} {user}:{group} {mode:04o}")
        if self.o.dry_run:
            return
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, *self._owner(user, group))
        path.chmod(mode)

    def ensure_file(self, absolute: str, text: str, user: str, group: str, mode: int,
                    *, replace: bool) -> None:
        path = self.o.path(absolute)
        keep = path.exists() and not replace
        self.say(f"file {absolute} {user}:{group} {mode:04o}" + (" (kept)" if keep else ""))
        if self.o.dry_run:
            return
        if not keep:
            tmp = path.with_name(path.name + ".new")
            tmp.write_text(text)
            tmp.replace(path)
        os.chown(path, *self._owner(user, group))
        path.chmod(mode)

    def install(self) -> None:
        o = self.o
        for group in GROUPS:
            self.ensure_group(group)
        self.ensure_user()
        self.ensure_dir("/etc/kapmonitor", "root", o.user, 0o750)
        self.ensure_file("/etc/kapmonitor/config.toml", shipped_example_config(), "root", o.user,
                         0o640, replace=False)
        self.ensure_dir("/var/lib/kapmonitor", o.user, o.user, 0o750)
        self.ensure_dir("/etc/systemd/system", "root", "root", 0o755)
        self.ensure_file(f"/etc/systemd/system/{UNIT_NAME}", render_unit(o.command), "root",
                         "root", 0o644, replace=True)
        if o.rooted:
            self.say("skipped systemctl (--root)")
            return
        if shutil.which("systemctl") is None:
            self.say("systemctl not found: enable the unit yourself")
            return
        self.run(["systemctl", "daemon-reload"])
        self.run(["systemctl", "enable", *(["--now"] if o.now else []), UNIT_NAME])


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="kapmonitor install-service",
        description="Install kapmonitor as a systemd service: groups, the kapmonitor user, "
        "/etc/kapmonitor with an example config, the state directory and the unit.",
    )
    p.add_argument("--root", type=Path, default=Path("/"),
                   help="install under this directory instead of / (images, tests)")
    p.add_argument("--user", default="kapmonitor", help="service account (default kapmonitor)")
    p.add_argument("--command", default=None,
                   help="kapmonitor command for ExecStart (default: this installation's)")
    p.add_argument("--now", action="store_true", help="also start the service")
    p.add_argument("--dry-run", action="store_true", help="print the steps, change nothing")
    args = p.parse_args(argv)
    if os.geteuid() != 0 and not args.dry_run:
        print("install-service must run as root (try --dry-run to see the steps)",
              file=sys.stderr)
        return 1
    opts = Options(root=args.root.resolve(), user=args.user,
                   command=args.command or installed_command(), now=args.now,
                   dry_run=args.dry_run)
    try:
        Installer(opts).install()
    except (OSError, subprocess.CalledProcessError, RuntimeError) as exc:
        print(f"install-service failed: {exc}", file=sys.stderr)
        return 1
    if not opts.dry_run:
        print("next: edit /etc/kapmonitor/config.toml, check it with "
              f"`sudo -u {opts.user} {opts.command} check-config /etc/kapmonitor/config.toml`, "
              "then `sudo systemctl start kapmonitor` (see docs/deploy.md)")
    return 0
