"""Users and login: argon2 hashes in a 0600 file, roles, rate limit, CSRF comparison,
``kapmonitor station adduser`` and ``check-config``."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest

from kapmonitor.cli import main as kap_main
from kapmonitor.station.config import StationConfigError, load_station_config
from kapmonitor.station.users import Auth, LoginSession, add_user


def test_users_file_login_roles_and_rate_limit(tmp_path: Path) -> None:
    path = tmp_path / "u.json"
    add_user(path, "alice", "long enough", "clinician", "Dr Alice")
    add_user(path, "vic", "long enough", "viewer")
    data = json.loads(path.read_text())
    assert data["users"]["alice"]["hash"].startswith("$argon2id$")
    assert "long enough" not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(ValueError):
        add_user(path, "bob", "short", "clinician")
    with pytest.raises(ValueError):
        add_user(path, "bob", "long enough", "root")

    auth = Auth(path, session_s=3600, attempts=3, window_s=60)
    s = auth.login("alice", "long enough", "10.0.0.1")
    assert isinstance(s, LoginSession) and s.user.may_act and s.user.display == "Dr Alice"
    assert auth.session(s.token) is s and auth.session("nope") is None
    assert auth.csrf_ok(s, s.csrf) and not auth.csrf_ok(s, None) and not auth.csrf_ok(s, "x")
    v = auth.login("vic", "long enough", "10.0.0.1")
    assert isinstance(v, LoginSession) and not v.user.may_act
    for _ in range(3):
        assert auth.login("alice", "wrong", "10.0.0.2") == "invalid"
    # Blocked now, even with the right password, for this user name...
    assert auth.login("alice", "long enough", "10.0.0.3") == "rate_limited"
    # ...and for the client address, whatever the user name.
    assert auth.login("vic", "long enough", "10.0.0.2") == "rate_limited"
    assert auth.login("nobody", "x", "10.0.0.4") == "invalid"
    auth.logout(s.token)
    assert auth.session(s.token) is None


def test_adduser_and_check_config_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "station.toml"
    conf.write_text('[station]\nstation_id = "desk"\nusers_file = "users.json"\n'
                    'nodes = ["kapmonitor/+"]\n')
    monkeypatch.setattr("sys.stdin", io.StringIO("a good password\n"))
    assert kap_main(["station", "adduser", "--config", str(conf), "nina", "--role", "admin",
                     "--password-stdin"]) == 0
    assert json.loads((tmp_path / "users.json").read_text())["users"]["nina"]["role"] == "admin"
    assert kap_main(["station", "check-config", str(conf)]) == 0
    conf.write_text('[station]\nstation_id = "desk"\ncolour = "red"\nnodes = ["a/#"]\n')
    assert kap_main(["station", "check-config", str(conf)]) == 2
    err = capsys.readouterr().err
    assert "station.colour: unknown field" in err and "'#' is not allowed" in err
    with pytest.raises(StationConfigError):
        conf.write_text('[station]\ntls_cert = "c.pem"\n')
        load_station_config(conf)
    example = Path(__file__).parents[2] / "config" / "station.toml"
    assert load_station_config(example).station_id
