"""Our schemas against official XSDs known only by their recorded structure fingerprint, and the proof that the
fingerprint agrees with the element-by-element comparison (`_xsdcompare.compare`) it stands in for."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from . import _xsdcompare as xc
from . import fingerprint as fp
from .test_conformance import (
    MESSAGES,
    ROOT,
    ROOT_ELEMENT,
    SCHEMA_EDITS,
    SCHEMAS,
    XSD_REFERENCES,
    _in_type,
    _replace,
    package_dir,
)

# ------------------------------------------------------------------------------- the recorded official references


def test_recorded_references_are_well_formed():
    records = fp.recorded()
    assert records, "no official reference recorded: the checks below would check nothing"
    assert set(records) <= set(MESSAGES)
    assert not set(records) & set(XSD_REFERENCES), "a version with a shipped official XSD is compared directly"
    for message, entry in records.items():
        assert re.fullmatch(r"[0-9a-f]{40}", entry["commit"]), message
        assert re.fullmatch(r"[0-9a-f]{64}", entry["file_sha256"]), message
        assert re.fullmatch(r"[0-9a-f]{64}", entry["fingerprint"]), message
        assert entry["path"].endswith(f"{message}.xsd"), message
        assert entry["generated_by"].startswith("Standards Editor (build:"), message
        # Differences are recorded only with the generator finding that explains them (see the next tests).
        assert entry["differences"] == len(entry.get("known_differences", [])), message
        assert ("generator_finding" in entry) == bool(entry["differences"]), message
        assert entry["paths_compared"] > (100 if ROOT_ELEMENT[message] == "AppHdr" else 300), message


MATCHED = sorted(m for m, entry in fp.recorded().items() if "generator_finding" not in entry)
FINDINGS = sorted(m for m, entry in fp.recorded().items() if "generator_finding" in entry)


@pytest.mark.parametrize("message", MATCHED)
def test_structure_matches_recorded_official_fingerprint(message):
    entry = fp.recorded()[message]
    ours = fp.file_fingerprint(SCHEMAS / f"{message}.xsd")
    assert ours == entry["fingerprint"], (
        f"schemas/iso20022/{message}.xsd no longer has the structure of the official {entry['repository']}"
        f"@{entry['commit'][:12]}:{entry['path']}: fetch that file and diff the two"
        " `python -m tests.schemas.fingerprint --render` outputs to see where"
    )


def _choice_members_optional(text: str, choice: str) -> str:
    """Our XSD with every member of complexType `choice` made optional, as the official XSD has them."""
    start = text.index(f'<xs:complexType name="{choice}">')
    end = text.index("</xs:complexType>", start)
    block = text[start:end]
    assert "minOccurs" not in block, f"{choice} already has optional members: the generator finding is fixed"
    return text[:start] + block.replace("<xs:element name=", '<xs:element minOccurs="0" name=') + text[end:]


@pytest.mark.parametrize("message", FINDINGS)
def test_known_generator_finding_is_the_only_difference(message, tmp_path):
    """An official XSD we do not match yet (a generate.py finding, see official_fingerprints.toml): our schema differs
    from it exactly by the recorded choice's members being mandatory - with them optional, it has the official
    fingerprint. Fails once generate.py is fixed, so that the entry then becomes a plain match."""
    entry = fp.recorded()[message]
    ours = SCHEMAS / f"{message}.xsd"
    assert fp.file_fingerprint(ours) != entry["fingerprint"], f"{message} matches now: drop its generator_finding"
    fixed = tmp_path / ours.name
    fixed.write_text(_choice_members_optional(ours.read_text(), entry["generator_finding"]))
    assert fp.file_fingerprint(fixed) == entry["fingerprint"]
    # and what the recorded differences say is what that edit changes
    differences = xc.compare(fp.schema_root(ours), fp.schema_root(fixed)).differences
    assert differences == entry["known_differences"]


# ------------------------------------------------------------------ the fingerprint method, against compare


def _official(pkg: str, rel: str) -> Path:
    return package_dir(pkg) / rel


@pytest.mark.parametrize(
    ("message", "reference"),
    [(m, f"{pkg}/{rel}") for m, refs in XSD_REFERENCES.items() for pkg, rel in refs],
)
def test_fingerprint_equal_where_compare_finds_nothing(message, reference):
    """On every official XSD shipped by the PyPI packages, both methods give the same verdict: no difference."""
    official = _official(*reference.split("/", 1))
    ours = SCHEMAS / f"{message}.xsd"
    assert xc.compare(fp.schema_root(ours), fp.schema_root(official)).differences == []
    assert fp.file_fingerprint(ours) == fp.file_fingerprint(official)
    # The files themselves differ (ours are generated, with our own header): the fingerprint is not a file hash.
    assert hashlib.sha256(ours.read_bytes()).digest() != hashlib.sha256(official.read_bytes()).digest()


def _move_first_type_to_end(text: str) -> str:
    start = text.index("<xs:complexType ")
    end = text.index("</xs:complexType>", start) + len("</xs:complexType>")
    block = text[start:end]
    rest = text[:start] + text[end:]
    return rest.replace("</xs:schema>", block + "\n</xs:schema>")


# Edits that change the structure beyond SCHEMA_EDITS' (each of which also must change the fingerprint).
STRUCTURAL_EDITS: dict[str, Callable[[str], str]] = {
    **{name: change for name, (change, _) in SCHEMA_EDITS.items()},
    "enumeration-value": _replace('<xs:enumeration value="DLVY"/>', '<xs:enumeration value="DLVZ"/>'),
    "enumeration-order": _replace(
        '<xs:enumeration value="ADDR"/>\n            <xs:enumeration value="PBOX"/>',
        '<xs:enumeration value="PBOX"/>\n            <xs:enumeration value="ADDR"/>',
    ),
    "enumeration-name": _replace('"AddressType2Code"', '"AddressType9Code"', count=-1),
    "fraction-digits": _replace('<xs:fractionDigits value="5"/>', '<xs:fractionDigits value="4"/>'),
    "pattern": _replace('value="[A-Z]{3,3}"', 'value="[A-Z]{3,4}"'),
    "min-length": _replace('<xs:minLength value="1"/>', '<xs:minLength value="2"/>'),
    "namespace": _replace("tech:xsd:pacs.008.001.08", "tech:xsd:pacs.008.001.98", count=-1),
    "wildcard-namespace": _replace('namespace="##any"', 'namespace="##other"'),
    "choice-member-optional": _in_type(
        "AccountIdentification4Choice", '<xs:element name="Othr"', '<xs:element minOccurs="0" name="Othr"'
    ),
    "base-type": _in_type("GroupHeader93", 'name="CreDtTm" type="ISODateTime"', 'name="CreDtTm" type="ISODate"'),
}
# Edits that leave the structure alone: compare finds nothing, and the fingerprint must not move either.
NEUTRAL_EDITS: dict[str, Callable[[str], str]] = {
    "simple-type-renamed": _replace('"Max35Text"', '"Max35Txt"', count=-1),
    "crlf-line-ends": lambda text: text.replace("\n", "\r\n"),
    "definitions-reordered": _move_first_type_to_end,
    "header-comment": lambda text: text.replace("<xs:schema", "<!-- another generator -->\n<xs:schema", 1),
    "attribute-order": _replace(
        'maxOccurs="unbounded" minOccurs="0" name="SplmtryData"',
        'name="SplmtryData" minOccurs="0" maxOccurs="unbounded"',
    ),
}
BASE = "pacs.008.001.08"


def _edited(change: Callable[[str], str], tmp_path: Path) -> Path:
    path = tmp_path / f"{BASE}.xsd"
    path.write_text(change((SCHEMAS / f"{BASE}.xsd").read_text()), newline="")
    return path


@pytest.mark.parametrize("edit", sorted(STRUCTURAL_EDITS))
def test_fingerprint_changes_with_every_structural_edit(edit, tmp_path):
    official = _official(*XSD_REFERENCES[BASE][0])
    path = _edited(STRUCTURAL_EDITS[edit], tmp_path)
    assert xc.compare(fp.schema_root(path), fp.schema_root(official)).differences != []
    assert fp.file_fingerprint(path) != fp.file_fingerprint(official)


@pytest.mark.parametrize("edit", sorted(NEUTRAL_EDITS))
def test_fingerprint_ignores_what_compare_ignores(edit, tmp_path):
    official = _official(*XSD_REFERENCES[BASE][0])
    path = _edited(NEUTRAL_EDITS[edit], tmp_path)
    assert path.read_bytes() != (SCHEMAS / f"{BASE}.xsd").read_bytes()
    assert xc.compare(fp.schema_root(path), fp.schema_root(official)).differences == []
    assert fp.file_fingerprint(path) == fp.file_fingerprint(official)


def test_fingerprints_of_versions_differ():
    prints = {m: fp.file_fingerprint(SCHEMAS / f"{m}.xsd") for m in MESSAGES}
    assert len(set(prints.values())) == len(MESSAGES)


def test_format_change_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(fp, "FORMAT", "switchd-structure-fingerprint/0")
    fp.recorded.cache_clear()
    try:
        with pytest.raises(ValueError, match="structure-fingerprint/1 fingerprints"):
            fp.recorded()
    finally:
        monkeypatch.undo()
        fp.recorded.cache_clear()


# ------------------------------------------------------------------------------------------------------ CLI


def test_cli_prints_fingerprint_file_hash_and_rendering():
    path = SCHEMAS / "head.001.001.03.xsd"
    run = subprocess.run(
        [sys.executable, "-m", "tests.schemas.fingerprint", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    fingerprint, file_sha, name = run.stdout.split()
    assert fingerprint == fp.file_fingerprint(path)
    assert file_sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert name == str(path)
    rendering = subprocess.run(
        [sys.executable, "-m", "tests.schemas.fingerprint", "--render", str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert rendering.startswith(
        fp.FORMAT + "\n/AppHdr element ns=urn:iso:std:iso:20022:tech:xsd:head.001.001.03 1..1\n"
    )
    assert hashlib.sha256(rendering.encode()).hexdigest() == fingerprint
