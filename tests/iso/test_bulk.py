"""Splitting bulk messages: every part schema-valid and passing the business rules, counts and sums right, every
transaction in exactly one part, nothing else changed, decimals as the sender wrote them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from switchd.examine import Examiner
from switchd.iso.bulk import format_total, split_document, split_part, splittable
from switchd.iso.catalogue import MessageDef
from switchd.iso.refs import MessageRefs, extract_refs
from switchd.iso.xml import ParsedMessage, parse_message
from switchd.schemas import load_schemas
from tests.builders import OMIT, SCHEMAS, PmtInf, Tx, make_txs, message_def, pacs008, pain001

PACS008 = message_def("pacs.008.001.08")
PAIN001 = message_def("pain.001.001.09")


@pytest.fixture(scope="module")
def examiner() -> Examiner:
    catalogue, schemas = load_schemas(Path(SCHEMAS))
    return Examiner(catalogue, schemas, max_message_bytes=50_000_000)


def parsed(raw: bytes) -> tuple[ParsedMessage, MessageDef, MessageRefs]:
    p = parse_message(raw, max_bytes=len(raw))
    defn = PACS008 if "pacs.008" in p.namespace else PAIN001
    return p, defn, extract_refs(defn, p.document)


def split(raw: bytes, groups: Sequence[Sequence[int]], ids: Sequence[str] | None = None) -> list[bytes]:
    p, defn, refs = parsed(raw)
    return split_document(p.document, defn, refs, groups, ids or [f"PART-{i}" for i in range(len(groups))])


def assert_valid(examiner: Examiner, part: bytes) -> None:
    """XSD and business rules (counts, sums, decimals, ...), sender authority off."""
    exam = examiner.examine(part, None)
    assert exam.rejection is None, exam.rejection.findings


def e2e_ids(part: bytes) -> list[str | None]:
    return [tx.end_to_end_id for tx in parsed(part)[2].transactions]


def tx_bytes(raw: bytes) -> dict[str, bytes]:
    """Each transaction element serialized, by EndToEndId: what a part must carry over untouched."""
    doc = parse_message(raw, max_bytes=len(raw)).document
    ns = {"d": etree.QName(doc).namespace}
    return {
        el.findtext("d:PmtId/d:EndToEndId", namespaces=ns): etree.tostring(el, with_tail=False)
        for el in doc.iterfind(".//d:CdtTrfTxInf", namespaces=ns)
    }


# -- pacs.008 -----------------------------------------------------------------------------------------------------


def test_one_group_with_everything_returns_the_original_document_msg_id_included() -> None:
    raw = pacs008(txs=make_txs(3), pretty=True)
    p, defn, refs = parsed(raw)

    def never(i: int) -> str:
        raise AssertionError("no new MsgId for a message that is not split")

    (part,) = split_document(p.document, defn, refs, [[2, 0, 1]], never)
    original = etree.tostring(p.document, xml_declaration=True, encoding="UTF-8", with_tail=False)
    assert part == original
    assert parsed(part)[2].msg_id == "MSG-1"


def test_pacs008_two_parts_counts_sums_and_decimals(examiner: Examiner) -> None:
    amounts = ["10.5", "3.25", "7", "0.75"]
    txs = [Tx(end_to_end_id=f"E2E-{i}", tx_id=f"TX-{i}", amount=a) for i, a in enumerate(amounts)]
    raw = pacs008(txs=txs, ctrl_sum="21.50", ttl="21.5")
    parts = split(raw, [[0, 2], [3, 1]], ["A-1", "A-2"])
    assert len(parts) == 2
    for part in parts:
        assert_valid(examiner, part)
    first, second = (parsed(part)[2] for part in parts)
    assert (first.msg_id, first.nb_of_txs, first.ctrl_sum_text, first.ttl_amount_text) == ("A-1", "2", "17.50", "17.5")
    assert (second.msg_id, second.nb_of_txs, second.ctrl_sum_text, second.ttl_amount_text) == (
        "A-2",
        "2",
        "4.00",
        "4.0",
    )
    assert first.ttl_ccy == second.ttl_ccy == "EUR"
    # document order inside a part, whatever order the group was given in
    assert e2e_ids(parts[1]) == ["E2E-1", "E2E-3"]


def test_pacs008_many_parts_each_transaction_exactly_once_and_unchanged(examiner: Examiner) -> None:
    raw = pacs008(txs=[replace(t, amount=f"{i}.{i:02d}") for i, t in enumerate(make_txs(10), 1)])
    groups = [[0, 3, 6, 9], [1, 4, 7], [2], [5, 8]]
    parts = split(raw, groups)
    originals = tx_bytes(raw)
    seen: list[str | None] = []
    for group, part in zip(groups, parts, strict=True):
        assert_valid(examiner, part)
        ids = e2e_ids(part)
        assert ids == [f"E2E-{i + 1}" for i in group]
        assert parsed(part)[2].ctrl_sum == sum(Decimal(f"{i + 1}.{i + 1:02d}") for i in group)
        for e2e, data in tx_bytes(part).items():
            assert data == originals[e2e]
        seen += ids
    assert sorted(seen, key=str) == sorted(originals, key=str)


def test_every_transaction_alone(examiner: Examiner) -> None:
    raw = pacs008(txs=make_txs(7))
    parts = split(raw, [[i] for i in range(7)])
    assert [e2e_ids(p) for p in parts] == [[f"E2E-{i}"] for i in range(1, 8)]
    for part in parts:
        assert_valid(examiner, part)
        assert parsed(part)[2].nb_of_txs == "1"


def test_group_header_otherwise_untouched_and_absent_totals_stay_absent(examiner: Examiner) -> None:
    raw = pacs008(txs=make_txs(3), ctrl_sum=OMIT, ttl=OMIT, sttlm_dt="2026-12-01")
    parts = split(raw, [[0], [1, 2]])
    original = parsed(raw)[0].document
    for part in parts:
        assert_valid(examiner, part)
        refs = parsed(part)[2]
        assert refs.ctrl_sum_text is None and refs.ttl_amount_text is None
        grp = parse_message(part, max_bytes=len(part)).document[0][0]
        orig_grp = original[0][0]
        changed = [
            etree.QName(a).localname
            for a, b in zip(grp, orig_grp, strict=True)
            if etree.tostring(a) != etree.tostring(b)
        ]
        assert changed == ["MsgId", "NbOfTxs"]


def test_the_original_tree_is_not_modified() -> None:
    raw = pacs008(txs=make_txs(4))
    p, defn, refs = parsed(raw)
    before = etree.tostring(p.root)
    split_document(p.document, defn, refs, [[0, 1], [2], [3]], ["X", "Y", "Z"])
    assert etree.tostring(p.root) == before


def test_a_document_inside_an_envelope_splits_into_standalone_documents(examiner: Examiner) -> None:
    raw = pacs008(txs=make_txs(2), app_hdr=True, pretty=True)
    p, defn, refs = parsed(raw)
    assert p.app_hdr is not None
    parts = split_document(p.document, defn, refs, [[1], [0]], ["P-1", "P-2"])
    for part in parts:
        assert_valid(examiner, part)
        root = etree.fromstring(part)
        assert etree.QName(root).localname == "Document"
        assert root.nsmap == {None: PACS008.namespace}


def test_large_message_split_by_creditor_agent(examiner: Examiner) -> None:
    banks = ["BBBBDEFFXXX", "CCCCFRPPXXX", "DDDDGB2LXXX"]
    txs = [replace(t, cdtr_agt_bic=banks[i % 3], amount=f"{i}.5") for i, t in enumerate(make_txs(600))]
    raw = pacs008(txs=txs)
    p, defn, refs = parsed(raw)
    groups = [[tx.index for tx in refs.transactions if tx.cdtr_agt_bic == bank] for bank in banks]
    parts = split_document(p.document, defn, refs, groups, lambda i: f"BULK-{i}")
    total = Decimal(0)
    for bank, part in zip(banks, parts, strict=True):
        assert_valid(examiner, part)
        part_refs = parsed(part)[2]
        assert part_refs.nb_of_txs == "200"
        assert {tx.cdtr_agt_bic for tx in part_refs.transactions} == {bank}
        total += part_refs.ctrl_sum or 0
    assert total == parsed(raw)[2].ctrl_sum


# -- pain.001 -----------------------------------------------------------------------------------------------------


def pain_three_blocks() -> bytes:
    return pain001(
        pmt_infs=[
            PmtInf("PMT-1", [Tx(end_to_end_id="E-1", amount="10.10"), Tx(end_to_end_id="E-2", amount="5")]),
            PmtInf("PMT-2", [Tx(end_to_end_id="E-3", amount="1.5")], ctrl_sum=OMIT),
            PmtInf("PMT-3", [Tx(end_to_end_id=f"E-{i}", amount="2.25") for i in (4, 5, 6)], nb_of_txs=OMIT),
        ],
        pretty=True,
    )


def pmt_infs(part: bytes) -> list[tuple[str | None, str | None, str | None, int]]:
    return [(pi.pmt_inf_id, pi.nb_of_txs, pi.ctrl_sum_text, pi.tx_count) for pi in parsed(part)[2].payment_infos]


def test_pain001_parts_keep_only_their_transactions_and_drop_empty_blocks(examiner: Examiner) -> None:
    raw = pain_three_blocks()
    parts = split(raw, [[0, 3, 4], [1, 2, 5]], ["C-1", "C-2"])
    for part in parts:
        assert_valid(examiner, part)
    first, second = parts
    # PMT-2 holds only E-3, which is in the second part: the first part has no PMT-2 at all.
    assert pmt_infs(first) == [("PMT-1", "1", "10.10", 1), ("PMT-3", None, "4.50", 2)]
    assert pmt_infs(second) == [("PMT-1", "1", "5.00", 1), ("PMT-2", "1", None, 1), ("PMT-3", None, "2.25", 1)]
    assert e2e_ids(first) == ["E-1", "E-4", "E-5"]
    assert e2e_ids(second) == ["E-2", "E-3", "E-6"]
    refs1, refs2 = parsed(first)[2], parsed(second)[2]
    assert (refs1.msg_id, refs1.nb_of_txs, refs1.ctrl_sum_text) == ("C-1", "3", "14.60")
    assert (refs2.msg_id, refs2.nb_of_txs, refs2.ctrl_sum_text) == ("C-2", "3", "8.75")
    originals = tx_bytes(raw)
    for part in parts:
        for e2e, data in tx_bytes(part).items():
            assert data == originals[e2e]


def test_pain001_whole_blocks_are_copied_as_they_are() -> None:
    raw = pain_three_blocks()
    first, _ = split(raw, [[2], [0, 1, 3, 4, 5]])
    doc = parse_message(first, max_bytes=len(first)).document
    original = parse_message(raw, max_bytes=len(raw)).document
    assert etree.tostring(doc[0][1], with_tail=False) == etree.tostring(original[0][2], with_tail=False)  # PMT-2


def test_pain001_group_without_ctrl_sum(examiner: Examiner) -> None:
    raw = pain001(txs=make_txs(3), ctrl_sum=OMIT)
    parts = split(raw, [[0], [1, 2]])
    for part in parts:
        assert_valid(examiner, part)
        assert parsed(part)[2].ctrl_sum_text is None
    assert [pmt_infs(p) for p in parts] == [[("PMT-1", "1", "100.00", 1)], [("PMT-1", "2", "200.00", 2)]]


def test_pain001_one_group_is_the_original() -> None:
    raw = pain_three_blocks()
    p, defn, refs = parsed(raw)
    (part,) = split_document(p.document, defn, refs, [range(6)], [])
    assert part == etree.tostring(p.document, xml_declaration=True, encoding="UTF-8")


# -- one part at a time -----------------------------------------------------------------------------------------------


def test_split_part_is_the_same_part_split_document_builds() -> None:
    for raw in (pacs008(txs=make_txs(5)), pain_three_blocks()):
        p, defn, refs = parsed(raw)
        groups = [[0, 3], [1, 2, 4], [5]] if defn is PAIN001 else [[0, 3], [1, 2, 4]]
        whole = split_document(p.document, defn, refs, groups, ["G-0", "G-1", "G-2"][: len(groups)])
        for g, group in enumerate(groups):
            assert split_part(p.document, defn, refs, group, f"G-{g}") == whole[g]


def test_split_part_of_everything_is_the_original() -> None:
    p, defn, refs = parsed(pacs008(txs=make_txs(3)))
    assert split_part(p.document, defn, refs, {2, 1, 0}, "NEW") == etree.tostring(
        p.document, xml_declaration=True, encoding="UTF-8", with_tail=False
    )


@pytest.mark.parametrize(
    ("indexes", "msg_id", "match"),
    [
        ([], "A", "group 0 is empty"),
        ([0, 0], "A", "transaction 0 is in more than one group"),
        ([3], "A", "3 is not a transaction index"),
        ([0], "", "part 0: MsgId"),
    ],
)
def test_split_part_refusals(indexes: list[int], msg_id: str, match: str) -> None:
    p, defn, refs = parsed(pacs008(txs=make_txs(3)))
    with pytest.raises(ValueError, match=match):
        split_part(p.document, defn, refs, indexes, msg_id)


# -- decimals -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "original", "written"),
    [
        ("17.50", "21.50", "17.50"),
        ("17.5", "21.50", "17.50"),  # the sender writes two decimals: so do we
        ("17.50", "21.5", "17.5"),  # one decimal is enough and is how the sender wrote it
        ("17.25", "21.5", "17.25"),  # never lose precision
        ("17", "21", "17"),
        ("17.125", "21.00", "17.125"),
        ("100", "350.50", "100.00"),
        ("1E+2", "350", "100"),
        ("123456789012345.12345", "200000000000000.1", "123456789012345.12345"),
    ],
)
def test_format_total(total: str, original: str, written: str) -> None:
    assert format_total(Decimal(total), original) == written


def test_sums_are_exact_for_long_amounts(examiner: Examiner) -> None:
    # 18 significant digits each (the XSD's totalDigits): float arithmetic would round these
    txs = [replace(t, amount="1234567890123.12345", ccy="BHD") for t in make_txs(4)]
    raw = pacs008(txs=txs, ttl=OMIT, ctrl_sum="4938271560492.4938")
    parts = split(raw, [[0, 1, 2], [3]])
    assert parsed(parts[0])[2].ctrl_sum_text == "3703703670369.37035"
    assert parsed(parts[1])[2].ctrl_sum_text == "1234567890123.12345"


# -- other versions and types ----------------------------------------------------------------------------------------


def test_other_versions_split_by_family_without_code_changes() -> None:
    # pacs.008.001.09 has the same shape in another namespace: a MessageDef is all it takes.
    raw = pacs008(txs=make_txs(3)).replace(b"pacs.008.001.08", b"pacs.008.001.09")
    defn = MessageDef("pacs.008.001.09", "FIToFICstmrCdtTrf", "payment", None)
    doc = parse_message(raw, max_bytes=len(raw)).document
    parts = split_document(doc, defn, extract_refs(defn, doc), [[0, 2], [1]], ["N-1", "N-2"])
    refs = [extract_refs(defn, parse_message(p, max_bytes=len(p)).document) for p in parts]
    assert [(r.msg_id, r.nb_of_txs, r.ctrl_sum_text) for r in refs] == [("N-1", "2", "200.00"), ("N-2", "1", "100.00")]


def test_reports_are_not_splittable() -> None:
    report = message_def("pacs.002.001.10")
    assert not splittable(report) and splittable(PACS008) and splittable(PAIN001)
    p, _, refs = parsed(pacs008())
    with pytest.raises(ValueError, match="cannot be split"):
        split_document(p.document, report, refs, [[0]], ["X"])


# -- refusals -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("groups", "ids", "match"),
    [
        ([], [], "no groups"),
        ([[0, 1], []], ["A", "B"], "group 1 is empty"),
        ([[0, 1]], ["A"], "1 transactions are in no group: 2"),
        ([[0, 1], [1, 2]], ["A", "B"], "transaction 1 is in more than one group"),
        ([[0, 0, 1, 2]], ["A"], "transaction 0 is in more than one group"),
        ([[0, 1], [2, 3]], ["A", "B"], "3 is not a transaction index"),
        ([[0, 1], [-1, 2]], ["A", "B"], "-1 is not a transaction index"),
        ([[0, True], [2]], ["A", "B"], "True is not a transaction index"),
        ([[0, 1], [2]], ["A"], "1 MsgIds for 2 parts"),
        ([[0, 1], [2]], ["A", "A"], "part MsgIds repeat"),
        ([[0, 1], [2]], ["A", "B" * 36], "part 1: MsgId"),
        ([[0, 1], [2]], ["A", ""], "part 1: MsgId"),
        ([[0, 1], [2]], [" A", "B"], "part 0: MsgId"),
        ([[0, 1], [2]], "AB", "one string"),
    ],
)
def test_bad_partitions_and_ids_are_refused(groups: list[list[int]], ids: list[str], match: str) -> None:
    p, defn, refs = parsed(pacs008(txs=make_txs(3)))
    with pytest.raises(ValueError, match=match):
        split_document(p.document, defn, refs, groups, ids)


def test_refs_of_another_message_are_refused() -> None:
    p, defn, _ = parsed(pacs008(txs=make_txs(3)))
    other = parsed(pacs008(txs=make_txs(2)))[2]
    with pytest.raises(ValueError, match="refs describe"):
        split_document(p.document, defn, other, [[0], [1, 2]], ["A", "B"])
    with pytest.raises(ValueError, match="not the Document"):
        split_document(p.document, PAIN001, parsed(pain001())[2], [[0]], ["A"])


def test_an_unreadable_amount_is_refused_when_a_total_needs_it() -> None:
    raw = pacs008(txs=make_txs(2)).replace(b">100.00</IntrBkSttlmAmt>", b">1OO</IntrBkSttlmAmt>", 1)
    p, defn, refs = parsed(raw)
    with pytest.raises(ValueError, match="no readable amount"):
        split_document(p.document, defn, refs, [[0], [1]], ["A", "B"])
