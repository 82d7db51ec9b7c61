"""Every source kapmonitor cites resolves inside the repository, in docs/sources.md.

Citation tags are ``[S<n>]`` / ``[P<n>]`` with an optional letter (``[S14b]``). A tag used in any
tracked file must be defined in docs/sources.md, and each definition must say where the source
can be found (URL, DOI, PMID, PMC id, ISBN or a standard number). No tracked file may point at
the team's notes outside the repository (their path, or a section of one of them).
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "docs" / "sources.md"

TAG = re.compile(r"\[([SP]\d+[a-z]?)\]")
DEFINITION = re.compile(r"^###\s+\[([SP]\d+[a-z]?)\]", re.MULTILINE)
IDENTIFIER = re.compile(
    r"https?://\S+"
    r"|\bdoi:10\.\d{4,}/\S+"
    r"|\bPMID \d+"
    r"|\bPMC\d+"
    r"|\bISBN [\d-]{10,}"
    r"|\bRFC \d+"
    r"|\bNDA \d+"
    r"|\b(?:IEC|ISO/IEEE|IEEE Std|IEEE) \d[\d-]*"
)
# Spelled in pieces so that this file does not trip its own checks.
OUTSIDE_PATHS = ("shared" + "/reference", ".." + "/shared")
# The team notes beside the repository; none of these files exists in it.
NOTE_NAMES = re.compile(r"(?<![\w/.-])(?:ble|serial|mqtt)\.md\b")
# A section sign after "alarms.md" means the team's alarm note: docs/alarms.md has no numbered
# sections.
NOTE_SECTION = re.compile(r"alarms\.md,?\s*" + "\N{SECTION SIGN}")
# Any other numbered section must follow the document it belongs to (RFC 1662, a third-party
# PROTOCOL.md, an IEC clause) within a few lines; a bare one is a section of a team note.
SECTION_NUMBER = re.compile("\N{SECTION SIGN}" + r"\s?\d")
NAMED_DOCUMENT = re.compile(r"\bRFC \d+|[\w-]+(?<!alarms)\.md\b|\bIEC [\d-]+|\bclause\b")
LOOKBACK = 160


@cache
def tracked_texts() -> dict[str, str]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    texts: dict[str, str] = {}
    for name in out.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary
        texts[name] = data.decode("utf-8", errors="replace")
    return texts


def definitions() -> dict[str, str]:
    """Tag → the text of its entry in docs/sources.md (heading to the next heading)."""
    text = SOURCES.read_text(encoding="utf-8")
    heads = list(DEFINITION.finditer(text))
    entries: dict[str, str] = {}
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        body = text[m.end() : end].split("\n## ", 1)[0]
        assert m.group(1) not in entries, f"{m.group(1)} is defined twice in docs/sources.md"
        entries[m.group(1)] = body
    return entries


def test_every_cited_tag_is_defined_in_sources() -> None:
    defined = definitions()
    missing: dict[str, set[str]] = {}
    for name, text in tracked_texts().items():
        if name == "docs/sources.md":
            continue
        for tag in TAG.findall(text):
            if tag not in defined:
                missing.setdefault(tag, set()).add(name)
    assert not missing, "tags not defined in docs/sources.md: " + "; ".join(
        f"{tag} in {', '.join(sorted(files))}" for tag, files in sorted(missing.items())
    )


def test_every_defined_source_says_where_to_find_it() -> None:
    entries = definitions()
    assert entries, "docs/sources.md defines no tags"
    lacking = [tag for tag, body in entries.items() if not IDENTIFIER.search(body)]
    assert not lacking, f"entries without a URL, DOI, PMID, PMC id or standard number: {lacking}"


def test_no_file_cites_notes_outside_the_repository() -> None:
    offenders: list[str] = []
    for name, text in tracked_texts().items():
        for lineno, line in enumerate(text.splitlines(), 1):
            if (
                any(p in line for p in OUTSIDE_PATHS)
                or NOTE_NAMES.search(line)
                or NOTE_SECTION.search(line)
            ):
                offenders.append(f"{name}:{lineno}: {line.strip()[:100]}")
    assert not offenders, "citations of notes outside the repository:\n" + "\n".join(offenders)


def test_alarm_docs_point_at_sources() -> None:
    text = (ROOT / "docs" / "alarms.md").read_text(encoding="utf-8")
    assert "docs/sources.md" in text


def test_section_numbers_name_their_document() -> None:
    bare: list[str] = []
    for name, text in tracked_texts().items():
        for m in SECTION_NUMBER.finditer(text):
            if not NAMED_DOCUMENT.search(text[max(0, m.start() - LOOKBACK) : m.start()]):
                lineno = text.count("\n", 0, m.start()) + 1
                line = text.splitlines()[lineno - 1].strip()
                bare.append(f"{name}:{lineno}: {line[:100]}")
    assert not bare, "section numbers without their document (a team note?):\n" + "\n".join(bare)
