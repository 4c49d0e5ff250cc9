"""The message catalogue shipped in schemas/iso20022: every issue-4 version, identified by namespace, each answered
by the status report of its version family."""

from __future__ import annotations

import pytest

from switchd.iso.catalogue import Catalogue, MessageDef
from tests.builders import SCHEMAS, catalogue

CATALOGUE = catalogue()

# The versions participants send (issue 4), and the status report each must get.
EXPECTED_REPORT = {
    "pacs.008.001.08": "pacs.002.001.10",
    "pacs.008.001.09": "pacs.002.001.11",
    "pacs.009.001.08": "pacs.002.001.10",
    "pacs.009.001.09": "pacs.002.001.11",
    "pacs.004.001.09": "pacs.002.001.10",
    "pacs.004.001.10": "pacs.002.001.11",
    "pacs.028.001.03": "pacs.002.001.10",
    "pacs.028.001.04": "pacs.002.001.11",
    "camt.056.001.08": "pacs.002.001.10",
    "camt.056.001.09": "pacs.002.001.11",
    "camt.029.001.09": "pacs.002.001.10",
    "camt.029.001.10": "pacs.002.001.11",
    "pain.001.001.09": "pain.002.001.10",
    "pain.001.001.10": "pain.002.001.11",
    "pain.008.001.08": "pain.002.001.10",
    "pain.008.001.09": "pain.002.001.11",
}
REPORTS = {"pacs.002.001.10", "pacs.002.001.11", "pain.002.001.10", "pain.002.001.11"}
HEADERS = {"head.001.001.02", "head.001.001.03"}


def test_catalogue_holds_every_issue4_version_with_its_schema():
    assert {d.id for d in CATALOGUE} == set(EXPECTED_REPORT) | REPORTS | HEADERS
    for d in CATALOGUE:
        assert (SCHEMAS / d.schema_file).is_file(), d.id


@pytest.mark.parametrize("message_id", sorted(EXPECTED_REPORT))
def test_report_follows_the_senders_version_family(message_id):
    defn = CATALOGUE.get(message_id)
    assert defn is not None and defn.role == "payment"
    report = CATALOGUE.report_for(defn)
    assert report is not None and report.id == EXPECTED_REPORT[message_id]
    assert report.role == "report"


def test_versions_are_told_apart_by_namespace():
    v08 = CATALOGUE.by_namespace("urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08")
    v09 = CATALOGUE.by_namespace("urn:iso:std:iso:20022:tech:xsd:pacs.008.001.09")
    assert v08 is not None and v09 is not None and (v08.id, v09.id) == ("pacs.008.001.08", "pacs.008.001.09")
    assert CATALOGUE.by_namespace("urn:iso:std:iso:20022:tech:xsd:pacs.008.001.07") is None
    assert CATALOGUE.header("urn:iso:std:iso:20022:tech:xsd:head.001.001.03") is not None
    assert CATALOGUE.header("urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08") is None
    assert [d.id for d in CATALOGUE.family("camt.056")] == ["camt.056.001.08", "camt.056.001.09"]


def test_roots():
    roots = {d.family: d.root for d in CATALOGUE}
    assert roots == {
        "pacs.008": "FIToFICstmrCdtTrf",
        "pacs.009": "FICdtTrf",
        "pacs.004": "PmtRtr",
        "pacs.028": "FIToFIPmtStsReq",
        "camt.056": "FIToFIPmtCxlReq",
        "camt.029": "RsltnOfInvstgtn",
        "pacs.002": "FIToFIPmtStsRpt",
        "pain.001": "CstmrCdtTrfInitn",
        "pain.008": "CstmrDrctDbtInitn",
        "pain.002": "CstmrPmtStsRpt",
        "head.001": "AppHdr",
    }


def _defs(*entries: tuple[str, str, str | None]) -> list[MessageDef]:
    return [MessageDef(id=i, root="X", role=role, report=report) for i, role, report in entries]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("entries", "error"),
    [
        (_defs(("pacs.008.001.08", "payment", "pacs.002.001.10")), "is not in the catalogue"),
        (
            _defs(("pain.001.001.09", "payment", "pacs.002.001.10"), ("pacs.002.001.10", "report", None)),
            "is not a pain.002 status report",
        ),
        (
            _defs(("camt.056.001.08", "payment", "pain.002.001.10"), ("pain.002.001.10", "report", None)),
            "is not a pacs.002 status report",
        ),
        (
            _defs(("pacs.008.001.08", "payment", "pacs.009.001.08"), ("pacs.009.001.08", "payment", None)),
            "is not a pacs.002 status report",
        ),
        (_defs(("pacs.008.001.08", "payment", None), ("pacs.008.001.08", "payment", None)), "listed twice"),
        (_defs(("pacs.8", "payment", None)), "is not a message id"),
    ],
)
def test_inconsistent_catalogue_is_refused(entries, error):
    with pytest.raises(ValueError, match=error):
        Catalogue(entries)


def test_from_toml_names_the_missing_key():
    with pytest.raises(ValueError, match=r"message\[0\]: missing key 'root'"):
        Catalogue.from_toml('[[message]]\nid = "pacs.008.001.08"\nrole = "payment"\n')
