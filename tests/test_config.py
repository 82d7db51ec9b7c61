"""check-config: every problem named with file, field path and fix; exit 2; no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kapmonitor.cli import main
from kapmonitor.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
state_dir = "{state}"
[node]
site = "test"
node_id = "n1"
[mqtt]
host = "127.0.0.1"
port = 1883
[[beds]]
id = "bed1"
[[devices]]
id = "ox1"
driver = "sim"
bed = "bed1"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "k.toml"
    p.write_text(text.format(state=tmp_path / "state"))
    return p


def problems(tmp_path: Path, text: str) -> list[str]:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    for line in exc.value.problems:
        assert line.startswith(f"{p}: "), line
    return exc.value.problems


def test_valid_config_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.base_topic == "kapmonitor/n1"
    assert cfg.client_id == "kapmonitor-n1"
    assert cfg.devices[0].driver == "sim"


def test_unknown_field_names_path(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD + 'colour = "red"\n')
    assert out == [f"{tmp_path / 'k.toml'}: devices.0.colour: unknown field; remove it or check "
                   "its spelling"]
    out = problems(tmp_path, GOOD.replace('[mqtt]', '[mqtt]\nhots = "x"'))
    assert any("mqtt.hots: unknown field" in line for line in out)


def test_wrong_type(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD + 'interval = "fast"\n')
    assert len(out) == 1 and "devices.0.interval:" in out[0] and "'fast'" in out[0]


def test_missing_device_bed(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace('bed = "bed1"', 'bed = "bed9"'))
    assert len(out) == 1
    assert "devices.0.bed: bed 'bed9' of device 'ox1' is not defined" in out[0]
    assert "[[beds]]" in out[0]  # says how to fix it


def test_device_without_bed_field(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace('bed = "bed1"\n', ""))
    assert any("devices.0.bed: required field is missing" in line for line in out)


def test_duplicate_ids(tmp_path: Path) -> None:
    text = GOOD + '[[devices]]\nid = "ox1"\ndriver = "sim"\nbed = "bed1"\n[[beds]]\nid = "bed1"\n'
    out = problems(tmp_path, text)
    assert any("duplicate bed id 'bed1'" in line for line in out)
    assert any("duplicate device id 'ox1'" in line for line in out)


@pytest.mark.parametrize("port", ["0", "70000", '"x"'])
def test_bad_port(tmp_path: Path, port: str) -> None:
    out = problems(tmp_path, GOOD.replace("port = 1883", f"port = {port}"))
    assert len(out) == 1 and "mqtt.port:" in out[0]


def test_unknown_driver_lists_known(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace('driver = "sim"', 'driver = "nope"'))
    assert len(out) == 1 and "devices.0" in out[0] and "sim" in out[0]


def test_toml_syntax_error(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD + "[[devices]\n")
    assert "TOML syntax error" in out[0]


def test_password_and_file_conflict(tmp_path: Path) -> None:
    out = problems(
        tmp_path, GOOD.replace("[mqtt]", '[mqtt]\npassword = "a"\npassword_file = "/x"')
    )
    assert "set either password or password_file" in out[0]


def test_missing_password_file(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("[mqtt]", '[mqtt]\npassword_file = "/nonexistent/pw"'))
    assert "mqtt.password_file" in out[0] and "does not exist" in out[0]


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, GOOD)
    assert main(["check-config", str(good)]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.format(state=tmp_path) + "oops = 1\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "devices.0.oops: unknown field" in err and "Traceback" not in err


def test_run_refuses_bad_config_before_starting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.format(state=tmp_path / "st") + "oops = 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "kapmonitor.cli", "run", "--config", str(bad)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "devices.0.oops: unknown field" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "st").exists()  # nothing started


@pytest.mark.parametrize("name", ["demo.toml", "example.toml"])
def test_shipped_configs_are_valid(name: str) -> None:
    cfg = load_config(ROOT / "config" / name)
    assert cfg.beds and cfg.devices


def test_example_documents_every_field() -> None:
    """config/example.toml mentions every field of every model (the docs can't drift)."""
    from kapmonitor.config import Config
    from kapmonitor.drivers.registry import drivers

    text = (ROOT / "config" / "example.toml").read_text()
    missing: list[str] = []

    def walk(model: type, prefix: str) -> None:
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            table = (prefix.split("[")[0] + "." if "[" in prefix else prefix) + name
            if f"{name} =" not in text and f"[{table}]" not in text and \
                    f"[[{table}]]" not in text and f"[[{prefix}{name}]]" not in text:
                missing.append(prefix + name)
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann, f"{prefix}{name}.")

    walk(Config, "")
    for cls in drivers().values():
        walk(cls.config_model, f"devices[{cls.name}].")
        assert f'driver = "{cls.name}"' in text, f"no example of driver {cls.name}"
    assert not missing, f"config/example.toml does not document: {missing}"
