"""`switchctl validate` lists every error of an invalid file, each with the line and path of the element at fault.

Files come from `bench.validate_bench.invalid_pain001`, which injects one schema error into 4 of every 7
transactions and knows, from the text it wrote, the line and path of each. Also: the offline validator answers
exactly as the daemon's examiner does, and the daemon's own reports keep their cap but say what they left out.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from lxml import etree

from bench.validate_bench import Injected, invalid_pain001
from switchd.ctl.validate_files import MAX_FILE_BYTES, FileValidator, on_demand_schemas
from switchd.examine import Examiner
from switchd.iso.catalogue import Catalogue
from switchd.iso.validate import MAX_FINDINGS, SchemaSet, compile_schema
from switchd.iso.xml import parse_message
from switchd.schemas import load_schemas
from tests.builders import HEAD_NS, SAMPLES, SCHEMAS, Tx, message_def, pacs008, pain001
from tests.conftest import REPO, switchctl

N_TXS = 420  # 240 injected errors: well past the daemon's MAX_FINDINGS, in 5 PmtInf blocks


@pytest.fixture(scope="module")
def schemas() -> tuple[Catalogue, SchemaSet]:
    return load_schemas(SCHEMAS)


def _expected(injected: list[Injected]) -> Counter[tuple[int, str]]:
    return Counter((i.line, i.path) for i in injected)


def test_every_injected_error_is_listed_with_its_line_and_path(tmp_path: Path, config_file: Path) -> None:
    data, injected = invalid_pain001(N_TXS, app_hdr=True)
    assert len(injected) > MAX_FINDINGS  # the file has more errors than a daemon report lists
    bad = tmp_path / "bulk.xml"
    bad.write_bytes(data)

    r = switchctl(config_file, "--json", "validate", str(bad))
    assert r.returncode == 1, r.stderr
    [result] = json.loads(r.stdout)
    assert set(result) == {"file", "valid", "message_type", "msg_id", "errors"}
    assert (result["file"], result["valid"], result["message_type"], result["msg_id"]) == (
        str(bad),
        False,
        "pain.001.001.09",
        "PAIN-V",
    )
    errors = result["errors"]
    assert all(set(e) == {"code", "detail", "path", "line"} and e["code"] == "FF01" for e in errors)
    assert Counter((e["line"], e["path"]) for e in errors) == _expected(injected)
    # each error is about the injected value, not merely somewhere on the same line
    by_place = {(i.line, i.path): i.marker for i in injected}
    assert all(by_place[(e["line"], e["path"])] in e["detail"] for e in errors)

    text = switchctl(config_file, "validate", str(bad))
    assert text.returncode == 1
    out = text.stdout.splitlines()
    assert out[0] == f"{bad}: INVALID ({len(injected)} error(s))"
    # "  line 89: FF01 <detail> [/Document/...]": the detail may hold brackets too, the path is the last " [/"
    listed = Counter((line.split(":")[0].strip(), "/" + line.rsplit(" [/", 1)[1][:-1]) for line in out[1:])
    assert listed == Counter((f"line {line}", path) for line, path in _expected(injected).elements())


def test_business_rule_errors_are_listed_with_their_line_and_path(tmp_path: Path, config_file: Path) -> None:
    bad_iban = "GB00NWBK60161331926819"  # schema-valid, wrong check digits: rule AC03
    txs = [
        Tx(end_to_end_id=f"E2E-{i}", creditor_iban=bad_iban if i % 4 == 0 else Tx.creditor_iban) for i in range(1, 21)
    ]
    data = pain001(txs=txs, pretty=True)
    bad = tmp_path / "rules.xml"
    bad.write_bytes(data)
    iban_lines = [n for n, line in enumerate(data.decode().splitlines(), start=1) if bad_iban in line]

    r = switchctl(config_file, "--json", "validate", str(bad))
    assert r.returncode == 1, r.stderr
    errors = json.loads(r.stdout)[0]["errors"]
    assert [(e["code"], e["line"], e["path"]) for e in errors] == [
        ("AC03", line, f"/Document/CstmrCdtTrfInitn/PmtInf/CdtTrfTxInf[{i}]/CdtrAcct/Id/IBAN")
        for line, i in zip(iban_lines, range(4, 21, 4), strict=True)
    ]


def test_valid_and_invalid_files_together(tmp_path: Path, config_file: Path) -> None:
    good = SAMPLES / "pain.001.001.09-valid.xml"
    data, injected = invalid_pain001(14)
    bad = tmp_path / "small.xml"
    bad.write_bytes(data)
    missing = tmp_path / "missing.xml"

    r = switchctl(config_file, "--json", "validate", str(good), str(bad), str(missing))
    assert r.returncode == 1
    results = json.loads(r.stdout)
    assert [x["file"] for x in results] == [str(good), str(bad), str(missing)]
    assert results[0]["valid"] is True and results[0]["errors"] == []
    assert len(results[1]["errors"]) == len(injected) == 8
    assert results[2]["valid"] is False and results[2]["errors"][0]["detail"]

    ok = switchctl(config_file, "validate", str(good))
    assert ok.returncode == 0
    assert ok.stdout.strip() == f"{good}: valid pain.001.001.09 (MsgId PAIN-1)"


def test_prefixed_documents_get_the_same_paths(schemas: tuple[Catalogue, SchemaSet]) -> None:
    """A sender that writes `<p:Document xmlns:p=...>` is told the same paths as one using a default namespace."""
    data, injected = invalid_pain001(30)
    plain = etree.fromstring(data)
    ns = etree.QName(plain).namespace
    prefixed = etree.Element(f"{{{ns}}}Document", nsmap={"p": ns})
    prefixed.extend(list(plain))
    raw = etree.tostring(prefixed, xml_declaration=True, encoding="UTF-8", pretty_print=True)

    catalogue, schema_set = schemas
    result = FileValidator(catalogue, schema_set).validate(raw, None)
    assert sorted(e["path"] for e in result["errors"]) == sorted(i.path for i in injected)


def _examiner_answer(examiner: Examiner, raw: bytes, sender_bics: frozenset[str] | None) -> dict[str, object]:
    exam = examiner.examine(raw, sender_bics)
    rej = exam.rejection
    return {
        "valid": rej is None,
        "message_type": exam.defn.id if exam.defn else None,
        "msg_id": exam.msg_id,
        "errors": [f.as_json() for f in rej.findings] if rej else [],
    }


def _cases() -> dict[str, bytes]:
    wrong_order = (
        pacs008(msg_id="ORDER")
        .replace(b"<MsgId>ORDER</MsgId>", b"")
        .replace(b"<NbOfTxs>", b"<MsgId>ORDER</MsgId><NbOfTxs>")
    )
    unknown_hdr = pacs008(msg_id="HDR").replace(HEAD_NS.encode(), b"urn:iso:std:iso:20022:tech:xsd:head.001.001.99")
    samples = {p.name: p.read_bytes() for p in sorted(SAMPLES.glob("*.xml"))}
    return {
        **samples,
        "bad-bics-in-bulk": invalid_pain001(40)[0],
        "bad-apphdr-and-document": invalid_pain001(20, app_hdr=True)[0],
        "wrong-order": wrong_order,
        "unknown-apphdr-version": unknown_hdr,
        "unknown-apphdr-version-and-bad-bic": unknown_hdr.replace(b"<BICFI>BBBBDEFFXXX</BICFI>", b"<BICFI>x</BICFI>"),
        "unsupported-namespace": pain001().replace(b"pain.001.001.09", b"pain.001.001.99"),
        "not-well-formed": pain001()[:-20],
        "doctype": b'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY a "b">]>\n' + pain001().split(b"\n", 1)[1],
        "empty": b"",
        "pacs008-too-many-decimals": pacs008(txs=[Tx(amount="1.123456")]),
    }


SENDERS = {"no authority check": None, "own BIC": frozenset({"AAAAUS33XXX"}), "foreign": frozenset({"ZZZZUS33XXX"})}


@pytest.mark.parametrize("sender", sorted(SENDERS))
@pytest.mark.parametrize("case", sorted(_cases()))
def test_offline_answer_is_the_examiners(case: str, sender: str, schemas: tuple[Catalogue, SchemaSet]) -> None:
    """Below the daemon's cap, `switchctl validate` answers exactly as the daemon's examiner would."""
    catalogue, schema_set = schemas
    raw = _cases()[case]
    offline = FileValidator(catalogue, schema_set).validate(raw, SENDERS[sender])
    daemon = _examiner_answer(Examiner(catalogue, schema_set, MAX_FILE_BYTES), raw, SENDERS[sender])
    assert offline == daemon
    # the samples' valid messages (with and without AppHdr) are sent in AAAAUS33XXX's name
    if case.endswith(("-valid.xml", "-bare.xml")) and sender != "foreign":
        assert offline["valid"] is True
    else:
        assert offline["valid"] is False and offline["errors"]


def test_daemon_reports_keep_their_cap_and_say_what_they_left_out(schemas: tuple[Catalogue, SchemaSet]) -> None:
    data, injected = invalid_pain001(N_TXS)
    parsed = parse_message(data, max_bytes=MAX_FILE_BYTES)
    defn = message_def("pain.001.001.09")
    _, schema_set = schemas

    capped = schema_set.validate(defn, parsed.document)
    assert len(capped) == MAX_FINDINGS + 1
    first = sorted(injected, key=lambda i: i.line)[:MAX_FINDINGS]
    assert [(f.line, f.path) for f in capped[:-1]] == [(i.line, i.path) for i in first]
    assert capped[-1].path is None
    assert capped[-1].detail == f"{len(injected) - MAX_FINDINGS} more schema error(s) not listed; the first 100 are"

    every = schema_set.validate(defn, parsed.document, limit=None)
    assert Counter((f.line, f.path) for f in every) == _expected(injected)


def test_on_demand_schemas_compile_only_what_is_used_and_check_the_namespace(tmp_path: Path) -> None:
    catalogue, schema_set = on_demand_schemas(SCHEMAS)
    assert set(schema_set.schemas) == {d.id for d in catalogue}
    raw = pain001(txs=[Tx(cdtr_agt_bic="x")])
    result = FileValidator(catalogue, schema_set).validate(raw, None)
    assert [e["path"] for e in result["errors"]] == [
        "/Document/CstmrCdtTrfInitn/PmtInf/CdtTrfTxInf/CdtrAgt/FinInstnId/BICFI"
    ]
    compiled = schema_set.schemas._compiled  # type: ignore[attr-defined]
    assert set(compiled) == {"pain.001.001.09"}

    with pytest.raises(ValueError, match="targetNamespace"):
        compile_schema(message_def("pacs.008.001.08"), (SCHEMAS / "pain.001.001.09.xsd").read_bytes())


def test_validate_does_not_import_the_journal_or_trio(tmp_path: Path, config_file: Path) -> None:
    """`switchctl validate` needs neither, whatever the file breaks: importing them would cost ~0.4 s of its second."""
    bad = tmp_path / "bad.xml"
    bad.write_bytes(invalid_pain001(7)[0])
    rules = SAMPLES / "pain.001.001.09-AM19-nboftxs.xml"
    probe = (
        "import sys\n"
        "from switchd.ctl.main import main\n"
        f"rc = main(['--config', {str(config_file)!r}, 'validate', {str(bad)!r}, {str(rules)!r}])\n"
        "heavy = sorted(m for m in ('trio', 'sqlite_utils', 'switchd.journal', 'switchd.examine', 'httpx') "
        "if m in sys.modules)\n"
        "print('RESULT', rc, ','.join(heavy))\n"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "RESULT 1 "
