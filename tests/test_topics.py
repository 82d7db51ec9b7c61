"""kapmonitor.topics: every topic kind builds and parses back, foreign or malformed topics are
rejected, and payloads are strict compact JSON."""

from __future__ import annotations

import ast
import json
import logging
import math
import re
from pathlib import Path

import pytest
from paho.mqtt.client import topic_matches_sub

from kapmonitor.topics import (
    MAX_TOPIC_BYTES,
    BedChannel,
    Kind,
    NodePatterns,
    StationTopics,
    Topic,
    Topics,
    encode,
)

T = Topics("kapmonitor/t1")
PACKAGE = Path(__file__).resolve().parents[1] / "kapmonitor"

# One example of every kind, with the exact wire spelling (the public topic tree).
EXAMPLES: dict[Kind, tuple[str | None, str]] = {
    Kind.BRIDGE_STATE: (None, "kapmonitor/t1/bridge/state"),
    Kind.BRIDGE_INFO: (None, "kapmonitor/t1/bridge/info"),
    Kind.BRIDGE_DEVICES: (None, "kapmonitor/t1/bridge/devices"),
    Kind.BRIDGE_HEALTH: (None, "kapmonitor/t1/bridge/health"),
    Kind.BRIDGE_EVENT: (None, "kapmonitor/t1/bridge/event"),
    Kind.REQUEST: ("session/symptom_clear", "kapmonitor/t1/bridge/request/session/symptom_clear"),
    Kind.RESPONSE: ("alert/ack", "kapmonitor/t1/bridge/response/alert/ack"),
    Kind.DEVICE_STATUS: ("ox1", "kapmonitor/t1/device/ox1/status"),
    Kind.BED_VITALS: ("bed1", "kapmonitor/t1/bed/bed1/vitals"),
    Kind.BED_READING: ("bed1", "kapmonitor/t1/bed/bed1/reading"),
    Kind.BED_ALERT: ("bed-2.a", "kapmonitor/t1/bed/bed-2.a/alert"),
    Kind.BED_ALARMS: ("bed1", "kapmonitor/t1/bed/bed1/alarms"),
    Kind.BED_SESSION: ("bed1", "kapmonitor/t1/bed/bed1/session"),
    Kind.HA_DISCOVERY: ("kapmonitor_t1_bed1", "homeassistant/device/kapmonitor_t1_bed1/config"),
    Kind.DISPLAY_STATE: (None, "kapmonitor/t1/display/state"),
    Kind.DISPLAY_CONFIRM: (None, "kapmonitor/t1/display/confirm"),
}


def test_every_kind_has_an_example() -> None:
    assert set(EXAMPLES) == set(Kind)


@pytest.mark.parametrize("kind", list(Kind), ids=lambda k: k.value)
def test_build_and_parse_round_trip(kind: Kind) -> None:
    ident, wire = EXAMPLES[kind]
    topic = Topic(kind, ident)
    assert T.build(topic) == wire
    assert T.parse(wire) == topic
    assert topic_matches_sub(T.wildcard(kind), wire)


def test_named_builders_spell_the_tree() -> None:
    assert T.bridge_state == "kapmonitor/t1/bridge/state"
    assert T.request("republish") == "kapmonitor/t1/bridge/request/republish"
    assert T.response("device/assign") == "kapmonitor/t1/bridge/response/device/assign"
    assert T.device_status("cuff1") == "kapmonitor/t1/device/cuff1/status"
    assert [T.vitals("b"), T.reading("b"), T.alert("b"), T.alarms("b"), T.session("b")] == [
        f"kapmonitor/t1/bed/b/{c.value}" for c in
        (BedChannel.VITALS, BedChannel.READING, BedChannel.ALERT, BedChannel.ALARMS,
         BedChannel.SESSION)
    ]
    assert T.discovery("x") == "homeassistant/device/x/config"
    assert Topics("a/b", "ha").discovery("x") == "ha/device/x/config"
    assert T.wildcard(Kind.REQUEST) == "kapmonitor/t1/bridge/request/#"


def test_parsed_topic_names_its_id() -> None:
    bed = T.parse("kapmonitor/t1/bed/bed1/alert")
    assert bed is not None and (bed.bed, bed.device, bed.command) == ("bed1", None, None)
    dev = T.parse("kapmonitor/t1/device/ox1/status")
    assert dev is not None and (dev.bed, dev.device) == (None, "ox1")
    req = T.parse("kapmonitor/t1/bridge/request/bp/measure")
    assert req is not None and req.kind is Kind.REQUEST and req.command == "bp/measure"


@pytest.mark.parametrize("topic", [
    "kapmonitor/t2/bed/bed1/reading",          # another node
    "kapmonitor/t1x/bed/bed1/reading",         # a base that only starts like ours
    "other/bed/bed1/reading",
    "kapmonitor/t1",                           # the base itself
    "kapmonitor/t1/",
    "kapmonitor/t1/bed/bed1/readings",         # unknown leaf
    "kapmonitor/t1/bed/bed1/reading/extra",    # extra level
    "kapmonitor/t1/bed//reading",              # empty id
    "kapmonitor/t1/bed/+/reading",             # wildcards are filters, not topics
    "kapmonitor/t1/bed/#",
    "kapmonitor/t1/bed/-bed/reading",          # ids start with a letter or digit
    "kapmonitor/t1/bed/" + "b" * 65 + "/reading",  # ids are at most 64 characters
    "kapmonitor/t1/device/ox1",
    "kapmonitor/t1/device/ox1/status/x",
    "kapmonitor/t1/bridge/state/x",
    "kapmonitor/t1/bridge/request/",           # no command
    "kapmonitor/t1/bridge/request/a//b",       # empty command level
    "kapmonitor/t1/bridge/request/a/",
    "kapmonitor/t1/bridge/request/a+b",
    "kapmonitor/t1/bridge/request/" + "a" * 129,  # command names are at most 128 characters
    "kapmonitor/t1/bridge/other/x",
    "kapmonitor/t1/node/x/status",
    "homeassistant/device/x/state",
    "homeassistant/device/x/config/y",
    "homeassistant/device/a.b/config",         # HA object ids have no dots
    "homeassistant/status",                    # the birth topic is configured, not parsed
    "",
])
def test_foreign_or_malformed_topics_are_rejected(topic: str) -> None:
    assert T.parse(topic) is None


def test_discovery_prefix_under_the_base_topic() -> None:
    t = Topics("site/node", "site/node")
    assert t.parse(t.discovery("x")) == Topic(Kind.HA_DISCOVERY, "x")
    assert t.parse(t.device_status("x")) == Topic(Kind.DEVICE_STATUS, "x")


def test_topics_longer_than_mqtt_allows_are_rejected() -> None:
    long_base = "k/" + "x" * 30000
    t = Topics(long_base)
    ok = t.reading("bed1")
    assert t.parse(ok) == Topic(Kind.BED_READING, "bed1")
    assert T.parse("kapmonitor/t1/bed/bed1/reading" + "/x" * MAX_TOPIC_BYTES) is None
    # A multi-byte character counts for its UTF-8 bytes, not its code points.
    assert T.parse("kapmonitor/t1/bed/" + "é" * 40000) is None
    with pytest.raises(ValueError, match="too long"):
        Topics("k/" + "x" * 40000)


@pytest.mark.parametrize(("build", "arg"), [
    (T.reading, "bed/1"), (T.reading, "+"), (T.reading, ""), (T.reading, "b" * 65),
    (T.device_status, "ox#"), (T.request, "a//b"), (T.request, ""), (T.response, "a" * 129),
    (T.discovery, "a.b"),
])
def test_building_refuses_what_would_not_parse(build: object, arg: str) -> None:
    with pytest.raises(ValueError):
        build(arg)  # type: ignore[operator]


@pytest.mark.parametrize("base", ["", "a/#", "a/+/b", "a/", "/a", "a//b"])
def test_base_topic_must_be_a_plain_topic(base: str) -> None:
    with pytest.raises(ValueError):
        Topics(base)


def test_payloads_are_compact_utf8_json() -> None:
    body = {"bed": "Zimmer ä", "value": 97.5, "quality": [], "x": None}
    data = encode(body)
    assert data == '{"bed":"Zimmer ä","value":97.5,"quality":[],"x":null}'.encode()
    assert json.loads(data) == body


def test_non_finite_numbers_never_reach_a_payload(caplog: pytest.LogCaptureFixture) -> None:
    def no_constants(name: str) -> None:
        raise AssertionError(f"payload contains {name}")

    with caplog.at_level(logging.ERROR, logger="kapmonitor.topics"):
        data = encode({"a": math.nan, "b": [1.0, math.inf], "c": {"d": -math.inf}, "e": 2})
    assert json.loads(data, parse_constant=no_constants) == {
        "a": None, "b": [1.0, None], "c": {"d": None}, "e": 2}
    assert "non-finite" in caplog.text


# Pieces of the tree (with "{}" where an f-string puts a value); command names such as
# "device/assign" are not topics.
_TOPIC_TEXT = re.compile(r"bridge/(state|info|devices|health|event|request/|response/)|"
                         r"(^|/)bed/[^/]*/(vitals|reading|alert|alarms|session)|"
                         r"(^|/)device/[^/]*/(status|config)")


def _docstrings(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def test_no_module_but_topics_spells_a_topic() -> None:
    """Every topic in kapmonitor/ comes from Topics: no f-string or literal spells one."""
    found: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "topics.py" and path.parent == PACKAGE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                text = "{}".join(v.value for v in node.values
                                 if isinstance(v, ast.Constant) and isinstance(v.value, str))
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and id(node) not in skip):
                text = node.value
            else:
                continue
            if _TOPIC_TEXT.search(text) and "\n" not in text and " " not in text:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {text!r}")
    assert found == []


def test_publishing_modules_encode_payloads_only_through_encode() -> None:
    """The modules that publish (or hand payloads to the publisher) never call the json
    module's encoders for a payload: topics.encode is the one encoder. (State files written
    with ``path.write_text(json.dumps(...))`` are not payloads.)"""
    publishing = [PACKAGE / "mqtt.py", PACKAGE / "pipeline.py", PACKAGE / "commands.py",
                  PACKAGE / "daemon.py", *sorted((PACKAGE / "services").glob("*.py"))]
    found: list[str] = []
    for path in publishing:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        state_files = {
            id(arg.func) for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "write_text"
            for arg in node.args if isinstance(arg, ast.Call)
        }
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id == "json" and node.attr in ("dumps", "JSONEncoder")
                    and id(node) not in state_files):
                found.append(f"{path.name}:{node.lineno}: json.{node.attr}")
    assert found == []


def test_station_topics_and_node_patterns() -> None:
    """The central station's own tree, and many nodes' topics read through one pattern."""
    st = StationTopics()
    assert st.heartbeat("desk") == "kapmonitor-station/desk/heartbeat"
    assert st.state("desk") == "kapmonitor-station/desk/state"
    assert st.heartbeats == "kapmonitor-station/+/heartbeat"
    assert st.station_of("kapmonitor-station/desk/heartbeat") == "desk"
    assert st.station_of("kapmonitor-station/desk/other") is None
    assert st.station_of("elsewhere/desk/heartbeat") is None
    with pytest.raises(ValueError):
        st.heartbeat("a/b")
    p = NodePatterns(["kapmonitor/+", "site/kap/n9"])
    assert p.filters([Kind.BED_ALERT, Kind.BRIDGE_STATE]) == [
        "kapmonitor/+/bed/+/alert", "kapmonitor/+/bridge/state",
        "site/kap/n9/bed/+/alert", "site/kap/n9/bridge/state"]
    node = p.topics("kapmonitor/n1/bed/b1/vitals")
    assert node is not None and node.base == "kapmonitor/n1"
    assert node.parse("kapmonitor/n1/bed/b1/vitals") == Topic(Kind.BED_VITALS, "b1")
    assert p.topics("site/kap/n8/bridge/state") is None
    with pytest.raises(ValueError):
        NodePatterns(["kapmonitor/#"])
