"""The route table on its own: first match wins per transaction, each condition narrows, refusals carry their code."""

from __future__ import annotations

from decimal import Decimal

from switchd.iso.refs import MessageRefs, TxRefs
from switchd.routing import UNROUTABLE, Route, RouteTable

P8 = "pacs.008.001.08"


def refs(*txs: TxRefs, instd_mmb: str | None = None) -> MessageRefs:
    return MessageRefs(
        P8, "/Document/FIToFICstmrCdtTrf", "M", None, None, None, None, None, None, None, None, None, (), txs,
        instd_agt_mmb_id=instd_mmb,
    )  # fmt: skip


def tx(i: int, **kw: object) -> TxRefs:
    return TxRefs(i, f"/Document/FIToFICstmrCdtTrf/CdtTrfTxInf[{i + 1}]", **kw)  # type: ignore[arg-type]


def test_first_matching_route_takes_each_transaction_and_parts_keep_document_order() -> None:
    table = RouteTable(
        (
            Route("big", connector="slow", min_amount=Decimal("1000")),
            Route("de", connector="de-bank", creditor_agent="????DE*"),
            Route("default", connector="hub"),
        )
    )
    r = refs(
        tx(0, amount=Decimal("5"), cdtr_agt_bic="BBBBDEFFXXX"),
        tx(1, amount=Decimal("5000"), cdtr_agt_bic="BBBBDEFFXXX"),
        tx(2, amount=Decimal("5"), cdtr_agt_bic="CCCCGB2LXXX"),
        tx(3, amount=Decimal("7"), cdtr_agt_bic="DDDDDEFFXXX"),
    )
    plan = table.plan(P8, "bank-a", r)
    assert [(p.route.name, p.tx_indexes) for p in plan.parts] == [("de", (0, 3)), ("big", (1,)), ("default", (2,))]
    assert plan.refused == ()


def test_clearing_member_falls_back_to_the_group_instructed_agent() -> None:
    table = RouteTable((Route("rtgs", connector="rtgs", clearing_member="0210*"),))
    assert table.plan(P8, "bank-a", refs(tx(0), instd_mmb="021000021")).parts[0].route.name == "rtgs"
    assert table.plan(P8, "bank-a", refs(tx(0, cdtr_agt_mmb_id="021000089"))).parts[0].route.name == "rtgs"
    refused = table.plan(P8, "bank-a", refs(tx(0, cdtr_agt_mmb_id="999"))).refused
    assert [(f.route, f.reason) for f in refused] == [(None, UNROUTABLE)]


def test_a_rejecting_route_refuses_with_its_code_and_other_conditions_narrow() -> None:
    table = RouteTable(
        (
            Route("no-usd-from-b", reject="RR04", currencies=frozenset({"USD"}), participant="bank-b"),
            Route("default", connector="hub", message_type="pacs.008.*"),
        )
    )
    usd = refs(tx(0, currency="USD"))
    assert [r.reason for r in table.plan(P8, "bank-b", usd).refused] == ["RR04"]
    assert table.plan(P8, "bank-a", usd).parts[0].route.name == "default"
    assert [r.reason for r in table.plan("pain.001.001.09", "bank-a", usd).refused] == [UNROUTABLE]
