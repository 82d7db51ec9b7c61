"""A recorded session as a FHIR R4 Bundle (JSON): vital-sign Observations and alarm issues.

What belongs here: the mapping from a :class:`~kapmonitor.history.record.SessionRecord` to
FHIR R4 resources, as plain JSON (no FHIR library at run time; the tests validate the output
with the ``fhir.resources`` models):

- a ``Bundle`` of type ``collection`` with one ``Device`` per device that delivered data;
- ``Observation``s following the R4 vital-signs profiles: category ``vital-signs``, the
  profile's LOINC code plus the IEEE 11073-10101 (MDC) code of the metric, a UCUM
  ``valueQuantity``, ``effectiveDateTime``, ``device``, ``status`` ``final``, a
  ``referenceRange`` and an ``interpretation`` (H/L/N) against it. Continuous metrics are
  sampled: the first valid reading in every ``every_s`` window (a real measurement with its own
  time, never an average); every NIBP measurement is one blood-pressure panel Observation
  (LOINC 85354-9) with systolic, diastolic and mean as components;
- every alarm as a ``DetectedIssue`` (severity from its priority, ``identifiedPeriod`` from
  raised to cleared, the acknowledgement as ``mitigation`` with its time and who did it). The
  choice over ``Flag`` is argued in docs/history.md.

The subject is a logical reference (an identifier), never a name: the session's ``patient_id``
when the session was started with one, else the session id.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from kapmonitor.history.record import AlarmSpan, SessionRecord, Trend, iso
from kapmonitor.model import METRICS

LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
PROFILE = "http://hl7.org/fhir/StructureDefinition/"
KAP = "urn:kapmonitor:"

# metric → (R4 vital-signs profile, the profile's LOINC code and display, extra LOINC coding)
PROFILES: dict[str, tuple[str, str, str, str | None]] = {
    "spo2": ("oxygensat", "2708-6", "Oxygen saturation in Arterial blood", "59408-5"),
    "pulse_rate": ("heartrate", "8867-4", "Heart rate", "8889-8"),
    "heart_rate": ("heartrate", "8867-4", "Heart rate", None),
    "resp_rate": ("resprate", "9279-1", "Respiratory rate", None),
}
# Reference ranges: the NEWS2 zero-score bands (Royal College of Physicians, 2017).
RANGES: dict[str, tuple[float, float]] = {
    "spo2": (96.0, 100.0), "pulse_rate": (51.0, 90.0), "heart_rate": (51.0, 90.0),
    "resp_rate": (12.0, 20.0), "nibp_sys": (111.0, 219.0),
}
SEVERITY = {"high": "high", "medium": "moderate", "low": "low", "info": "low"}


def _id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9\-.]", "-", text)[:64]


def _urn(*parts: str) -> str:
    return "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, "kapmonitor:" + "/".join(parts)))


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": round(value, 2), "unit": unit, "system": UCUM, "code": unit}


def _interpretation(metric: str, value: float) -> tuple[list[dict[str, Any]], list[Any]]:
    rng = RANGES.get(metric)
    if rng is None:
        return [], []
    lo, hi = rng
    code = "L" if value < lo else "H" if value > hi else "N"
    return _INTERPRETATIONS[code], _range(metric)


_INTERPRETATIONS = {code: [{"coding": [{"system": INTERP, "code": code, "display": text}]}]
                    for code, text in (("L", "Low"), ("H", "High"), ("N", "Normal"))}


@functools.cache
def _range(metric: str) -> list[Any]:
    """The metric's reference range (one per metric, shared by its Observations)."""
    lo, hi = RANGES[metric]
    unit = METRICS[metric].unit
    return [{"low": _quantity(lo, unit), "high": _quantity(hi, unit),
             "text": "NEWS2 zero-score band"}]


@functools.cache
def _coding(metric: str) -> list[dict[str, Any]]:
    """The metric's codings (one list per metric, shared by its Observations)."""
    info = METRICS[metric]
    out: list[dict[str, Any]] = []
    prof = PROFILES.get(metric)
    if prof is not None:
        out.append({"system": LOINC, "code": prof[1], "display": prof[2]})
        if prof[3]:
            out.append({"system": LOINC, "code": prof[3], "display": info.label})
    elif info.loinc:
        out.append({"system": LOINC, "code": info.loinc, "display": info.label})
    if info.mdc is not None:
        out.append({"system": MDC, "code": str(info.mdc), "display": info.mdc_ref or info.label})
    return out


def bundle(rec: SessionRecord, every_s: float = 60.0) -> dict[str, Any]:
    """The Bundle as JSON-ready dicts. Observations of one metric share their coding and
    reference-range objects: serialise the Bundle, do not edit it in place."""
    b = _Builder(rec)
    b.trend_observations(every_s)
    b.nibp_panels()
    b.detected_issues()
    return {
        "resourceType": "Bundle", "id": _id(f"session-{rec.session_id}"), "type": "collection",
        "timestamp": iso(rec.end),
        "identifier": {"system": KAP + "session", "value": rec.session_id},
        "entry": b.entries,
    }


def write(rec: SessionRecord, path: Path) -> Path:
    path.write_text(json.dumps(bundle(rec), separators=(",", ":")), encoding="utf-8")
    return path


class _Builder:
    """The Bundle's entries, in order: each Device is added where it is first referenced,
    Observations keep their URLs by metric so a DetectedIssue can cite one as evidence."""

    def __init__(self, rec: SessionRecord) -> None:
        self.rec = rec
        self.sid = sid = rec.session_id
        pid = rec.info.start.get("patient_id")
        self.subject = {"identifier": {"system": KAP + ("patient" if pid else "session"),
                                       "value": str(pid or sid)},
                        "display": f"patient of session {sid} (bed {rec.bed})"}
        self.entries: list[dict[str, Any]] = []
        self.devices: dict[str, str] = {}
        self.obs_refs: dict[str, list[tuple[float, str]]] = {}
        self.base = {"resourceType": "Observation", "status": "final",
                     "category": [{"coding": [{"system": CATEGORY, "code": "vital-signs",
                                               "display": "Vital Signs"}]}],
                     "subject": self.subject}

    def device_ref(self, dev: str) -> dict[str, Any]:
        if dev not in self.devices:
            self.devices[dev] = _urn(self.sid, "device", dev)
            self.entries.append({"fullUrl": self.devices[dev], "resource": {
                "resourceType": "Device", "id": _id(dev),
                "identifier": [{"system": KAP + "device", "value": dev}],
                "deviceName": [{"name": dev, "type": "user-friendly-name"}],
            }})
        return {"reference": self.devices[dev], "display": dev}

    def add_obs(self, key: str, t: float, resource: dict[str, Any], metric: str) -> None:
        url = _urn(self.sid, "obs", key)
        self.entries.append({"fullUrl": url, "resource": resource})
        self.obs_refs.setdefault(metric, []).append((t, url))

    # -- Observations from the trends: the first valid reading in every every_s window --
    def trend_observations(self, every_s: float) -> None:
        rec = self.rec
        for metric, tr in rec.trends.items():
            if metric not in METRICS or METRICS[metric].loinc is None:
                continue
            ok = np.flatnonzero(~np.isnan(tr.v) & (tr.t >= rec.started) & (tr.t <= rec.end))
            # the first valid reading of every window (the trend is in time order)
            bucket = np.floor((tr.t[ok] - rec.started) / every_s)
            first = ok[np.flatnonzero(np.diff(bucket, prepend=-np.inf) != 0)]
            for i in first.tolist():
                t, v = float(tr.t[i]), float(tr.v[i])
                self.add_obs(f"{metric}-{i}", t,
                             self._trend_observation(metric, tr, i, t, v), metric)

    def _trend_observation(self, metric: str, tr: Trend, i: int, t: float,
                           v: float) -> dict[str, Any]:
        interp, ranges = _interpretation(metric, v)
        prof = PROFILES.get(metric)
        res: dict[str, Any] = dict(self.base)
        res.update({
            "id": _id(f"{self.sid}-{metric}-{i}"),
            "code": {"coding": _coding(metric), "text": METRICS[metric].label},
            "effectiveDateTime": iso(t),
            "valueQuantity": _quantity(v, METRICS[metric].unit),
            "device": self.device_ref(tr.devices[i]),
        })
        if prof is not None:
            res["meta"] = {"profile": [PROFILE + prof[0], PROFILE + "vitalsigns"]}
        if interp:
            res["interpretation"], res["referenceRange"] = interp, ranges
        flags = [f for f in tr.flags[i].split(",") if f]
        if flags:
            res["note"] = [{"text": "device quality flags: " + ", ".join(flags)}]
        return res

    # -- the NIBP panel: one Observation per measurement, its parts as components --
    def nibp_panels(self) -> None:
        for n, m in enumerate(self.rec.nibp):
            if m.sys is None or m.dia is None:
                continue
            comps = [_bp_component(name, part) for name, part in
                     (("nibp_sys", m.sys), ("nibp_dia", m.dia), ("nibp_mean", m.mean))
                     if part is not None]
            res: dict[str, Any] = dict(self.base)
            res.update({
                "id": _id(f"{self.sid}-bp-{n}"),
                "meta": {"profile": [PROFILE + "bp", PROFILE + "vitalsigns"]},
                "code": {"coding": [
                    {"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"},
                    {"system": MDC, "code": "150020", "display": "MDC_PRESS_BLD_NONINV"},
                ], "text": "Non-invasive blood pressure"},
                "effectiveDateTime": iso(m.t),
                "device": self.device_ref(m.device),
                "component": comps,
            })
            if m.flags:
                res["note"] = [{"text": "device quality flags: " + ", ".join(m.flags)}]
            self.add_obs(f"bp-{n}", m.t, res, "nibp_sys")

    # -- a DetectedIssue per alarm, citing the latest Observation before it as evidence --
    def detected_issues(self) -> None:
        for a in self.rec.alarms:
            self.entries.append({"fullUrl": _urn(self.sid, "issue", a.alert_id),
                                 "resource": self._issue(a)})

    def _issue(self, a: AlarmSpan) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "resourceType": "DetectedIssue", "id": _id(a.alert_id),
            "identifier": [{"system": KAP + "alert", "value": a.alert_id}],
            "status": "final",
            "code": {"coding": [{"system": KAP + "alarm-rule", "code": a.rule}],
                     "text": f"{a.kind} alarm {a.rule}"},
            "severity": SEVERITY.get(a.priority, "low"),
            "patient": self.subject,
            "identifiedPeriod": {"start": iso(a.raised),
                                 **({"end": iso(a.cleared)} if a.cleared is not None else {})},
            "detail": f"{a.priority} priority: {a.text}",
        }
        if a.acked_at is not None:
            issue["mitigation"] = [{
                "action": {"text": "alarm acknowledged"},
                "date": iso(a.acked_at),
                **({"author": {"display": a.acked_by}} if a.acked_by else {}),
            }]
        about = _metric_of(a.rule, a.text) or ""
        ev = [url for t, url in self.obs_refs.get(about, []) if a.raised - 120 <= t <= a.raised]
        if ev:
            issue["evidence"] = [{"detail": [{"reference": ev[-1]}]}]
        return issue


def _bp_component(name: str, v: float) -> dict[str, Any]:
    comp: dict[str, Any] = {"code": {"coding": _coding(name), "text": METRICS[name].label},
                            "valueQuantity": _quantity(v, "mm[Hg]")}
    interp, ranges = _interpretation(name, v)
    if interp:
        comp["interpretation"], comp["referenceRange"] = interp, ranges
    return comp


def _metric_of(rule: str, text: str) -> str | None:
    for m in ("spo2", "pulse_rate", "heart_rate", "resp_rate"):
        if m in rule:
            return m
    if rule.startswith(("bp", "nibp")) or "mmHg" in text:
        return "nibp_sys"
    if rule.startswith("hr") or "Pulse" in text or "Heart" in text:
        return "pulse_rate"
    return None
