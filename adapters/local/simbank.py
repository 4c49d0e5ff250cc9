"""The simulated bank: an in-process connector that records every message it receives, durably, and answers
payments with status reports (pacs.002 / pain.002), as a real bank would, through the switch's own intake.

Used by `make run` (a full round trip without a real bank), the tests and the benchmarks.

Theory of operation:

- `deliver` parses the payload (a bare Document, or an envelope holding AppHdr + Document), applies the injected
  failures, appends one JSON line to the receipts file and fsyncs it, and only then returns a receipt: a delivery
  that returned is on disk (the Connector contract). Concurrent deliveries share one write + fsync (a writer task
  drains whatever is queued, like the journal's group commit), so the file does not cap throughput at one fsync
  per message. `read_receipts` reads the file back.
- A credit transfer (ANSWERED_FAMILIES: pacs.008, pacs.009 -> pacs.002, pain.001 -> pain.002, in the report
  version the catalogue names) is then answered from a task in the bank's own nursery, after a delay: each
  transaction takes the first `AnswerRule` whose EndToEndId glob matches it, or the default. One report per
  message: RJCT when every transaction is rejected, PART when some are, else the default status (ACSC). A
  pacs.002 lists every transaction, accepted ones with the group's accepting status, so a report correlates by
  OrgnlEndToEndId and OrgnlUETR as well as OrgnlMsgId; a pain.002 lists only rejected ones (what
  build_status_report writes). If any transaction of a message matches a silent rule the bank never answers
  that message (to test timeouts).
- The report goes to the `InboundSink` in the switch's envelope (switchd.iso.outbound: `BizMsg` holding a
  head.001.001.02 AppHdr and the Document) from the bank's BIC (the one the message was addressed to) to the
  switch. A sink that refuses it or raises is logged; the answer is not retried (the switch's own timeout covers
  a lost answer).
- At most `max_pending_answers` answers wait at once: `deliver` waits for room before it writes the receipt
  (back-pressure on the delivery worker, never a receipt without its answer). `aclose` drops pending answers.

Start it with `async with bank:` or `await nursery.start(bank.run)`; `deliver` before that (or after `aclose`)
raises DeliveryFailed(retryable=True).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import trio
from lxml import etree

from switchd.connectors import Delivery, DeliveryFailed, InboundSink
from switchd.errors import Finding, Rejection
from switchd.ids import new_message_id
from switchd.iso.catalogue import Catalogue, MessageDef
from switchd.iso.outbound import app_hdr_possible_duplicate, build_app_hdr, build_envelope
from switchd.iso.refs import MessageRefs, TxRefs, extract_refs
from switchd.iso.reports import REJECTED, build_status_report
from switchd.iso.validate import SchemaSet
from switchd.iso.xml import ISO_NS_PREFIX, ParsedMessage, local_name, parse_message

log = logging.getLogger("switchd.simbank")

PARTIAL = "PART"
# Credit transfers get a status report; other payments (returns, cancellation requests, status requests) are
# recorded and left unanswered: a real bank answers those with other messages (camt.029, ...).
ANSWERED_FAMILIES = frozenset({"pacs.008", "pacs.009", "pain.001"})
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # the switch caps what it accepts; this only bounds a runaway payload

_CODE = re.compile(r"[A-Za-z0-9]{1,4}")
_BIC = re.compile(r"[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}(?:[A-Z0-9]{3})?")
_UUID4 = re.compile(r"[a-f0-9]{8}-[a-f0-9]{4}-4[a-f0-9]{3}-[89ab][a-f0-9]{3}-[a-f0-9]{12}")
_RECEIPT_QUEUE = 1024  # receipts waiting for the writer; deliveries beyond it wait (back-pressure)


@dataclass(frozen=True)
class AnswerRule:
    """How the bank answers transactions whose EndToEndId matches `end_to_end_id` (an fnmatch glob, case
    sensitive; a transaction without EndToEndId matches as ""). `reject` is an ISO ExternalStatusReason1Code
    (AC04, AM04, ...) to reject with, None to accept; `silent` never answers the message; `delay_ms` None uses the
    bank's default delay."""

    end_to_end_id: str
    reject: str | None = None
    silent: bool = False
    delay_ms: int | None = None

    def __post_init__(self) -> None:
        if self.reject is not None and _CODE.fullmatch(self.reject) is None:
            raise ValueError(f"reject {self.reject!r} is not an ISO reason code (1-4 letters or digits)")
        if self.reject is not None and self.silent:
            raise ValueError("a rule either rejects or stays silent, not both")
        if self.delay_ms is not None and self.delay_ms < 0:
            raise ValueError(f"delay_ms {self.delay_ms} is negative")


@dataclass(frozen=True)
class FailRule:
    """Injected delivery failure: deliveries whose MsgId or any EndToEndId matches `match` (fnmatch glob) raise
    DeliveryFailed(retryable=`retryable`). `times` N fails only the first N matching deliveries (counted since
    the bank was built), None fails every one. `after_receipt` records the receipt (and answers) first, then
    fails: the bank has the message but the switch cannot know, so its retry is a duplicate at the bank."""

    match: str = "*"
    times: int | None = None
    retryable: bool = True
    after_receipt: bool = False

    def __post_init__(self) -> None:
        if self.times is not None and self.times < 0:
            raise ValueError(f"times {self.times} is negative")


@dataclass(frozen=True)
class SimBankSettings:
    """The simulated bank's configuration.

    `bics`: the bank's BICs (the first answers messages addressed to none of them). `receipts`: the JSON
    lines file of everything received (created with its parent folders). `status`: the accepting group status
    (ACSC). `delay_ms`: default delay before answering. `rules`: first match wins, per transaction. `failures`:
    first match wins, per delivery. `switch_bic`: the AppHdr To of answers (None: the original AppHdr's Fr, else
    its InstgAgt). `max_pending_answers`: answers waiting at once before `deliver` waits for room.
    """

    bics: tuple[str, ...]
    receipts: Path
    status: str = "ACSC"
    delay_ms: int = 0
    rules: tuple[AnswerRule, ...] = ()
    failures: tuple[FailRule, ...] = ()
    switch_bic: str | None = None
    max_pending_answers: int = 1000

    def __post_init__(self) -> None:
        if not self.bics:
            raise ValueError("the simulated bank needs at least one BIC")
        for bic in (*self.bics, *((self.switch_bic,) if self.switch_bic is not None else ())):
            if _BIC.fullmatch(bic) is None:
                raise ValueError(f"{bic!r} is not a BIC (ISO 9362)")
        if _CODE.fullmatch(self.status) is None or self.status in (REJECTED, PARTIAL):
            raise ValueError(f"status {self.status!r} is not an accepting ISO status code (e.g. ACSC, ACCP)")
        if self.delay_ms < 0:
            raise ValueError(f"delay_ms {self.delay_ms} is negative")
        if self.max_pending_answers < 1:
            raise ValueError("max_pending_answers must be at least 1")


@dataclass(frozen=True)
class SimBankStatistics:
    received: int  # receipts made durable
    refused: int  # deliveries that raised DeliveryFailed (unreadable, invalid, injected)
    answered: int  # reports the sink took (2xx)
    answers_refused: int  # reports the sink refused or raised on
    pending_answers: int  # answers waiting for their delay or the sink


@dataclass(frozen=True)
class _Plan:
    """The answer to one message, decided when it arrives."""

    report_def: MessageDef
    original_def: MessageDef
    refs: MessageRefs
    findings: tuple[Finding, ...]
    group_status: str
    delay_s: float
    bank_bic: str
    to_bic: str | None
    instructed_bic: str | None


@dataclass
class _PendingReceipt:
    line: bytes
    done: trio.Event = field(default_factory=trio.Event)
    error: str | None = None


class SimBank:
    """The simulated bank connector (see the module docstring). `catalogue` identifies messages and their report
    types; with `schemas`, payloads that break their XSD are refused (DeliveryFailed, not retryable), as a strict
    bank would."""

    def __init__(
        self,
        name: str,
        settings: SimBankSettings,
        sink: InboundSink,
        catalogue: Catalogue,
        *,
        schemas: SchemaSet | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.name = name
        self.settings = settings
        self._sink = sink
        self._catalogue = catalogue
        self._schemas = schemas
        self._max_bytes = max_message_bytes
        self._fail_counts = [0] * len(settings.failures)
        self._slots = trio.Semaphore(settings.max_pending_answers)
        self._send, self._receive = trio.open_memory_channel[_PendingReceipt](_RECEIPT_QUEUE)
        self._nursery: trio.Nursery | None = None
        self._outer: contextlib.AbstractAsyncContextManager[trio.Nursery] | None = None  # `async with` only
        self._closed = trio.Event()
        self._received = self._refused = self._answered = self._answers_refused = 0

    # -- lifecycle ------------------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the receipts file and serve until `aclose()` (or cancellation). Raises OSError if the receipts
        file cannot be opened."""
        fd = await trio.to_thread.run_sync(_open_append, self.settings.receipts)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_receipts, fd)
                self._nursery = nursery
                task_status.started()
                await self._closed.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            self._closed.set()
            # Deliveries still queued never reached the file: fail them rather than leave them waiting, and make
            # later sends fail at once (BrokenResourceError) instead of blocking on a queue nobody drains.
            while True:
                try:
                    pending = self._receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
                pending.error = "the simulated bank closed before recording the message"
                pending.done.set()
            self._receive.close()
            os.close(fd)

    async def __aenter__(self) -> SimBank:
        outer = self._outer = trio.open_nursery()
        nursery = await outer.__aenter__()
        try:
            await nursery.start(self.run)
        except BaseException as exc:
            await outer.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        await self.aclose()
        assert self._outer is not None
        return await self._outer.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        """Stop: pending answers are dropped, later deliveries fail (retryable). Idempotent."""
        self._closed.set()
        await trio.lowlevel.checkpoint()

    def statistics(self) -> SimBankStatistics:
        pending = self.settings.max_pending_answers - self._slots.value
        return SimBankStatistics(self._received, self._refused, self._answered, self._answers_refused, pending)

    # -- delivery -------------------------------------------------------------------------------------------------

    async def deliver(self, delivery: Delivery) -> str | None:
        """Record `delivery` durably and schedule its answer; returns the receipt id.

        Raises DeliveryFailed: not retryable for a payload that is not a readable ISO 20022 message (or breaks its
        XSD when schemas were given); retryable when the bank is not running, the receipts file cannot be
        written, or a FailRule says so.
        """
        if self._nursery is None or self._closed.is_set():
            raise DeliveryFailed(f"simulated bank {self.name} is not running", retryable=True)
        try:
            parsed, defn, refs = self._read(delivery.payload)
        except DeliveryFailed:
            self._refused += 1
            raise
        e2e_ids = [tx.end_to_end_id for tx in refs.transactions if tx.end_to_end_id] if refs else []
        uetrs = [tx.uetr for tx in refs.transactions if tx.uetr] if refs else []
        msg_id = (refs.msg_id if refs else None) or delivery.msg_id
        failure = self._injected_failure(msg_id, e2e_ids)
        if failure is not None and not failure.after_receipt:
            self._refused += 1
            raise DeliveryFailed(f"injected failure (rule {failure.match!r})", retryable=failure.retryable)
        plan = self._plan(parsed, defn, refs) if defn is not None and refs is not None else None
        now = datetime.now(UTC)
        receipt = "R" + new_message_id(now)[1:]
        record: dict[str, Any] = {
            "receipt": receipt,
            "received_at": _timestamp(now),
            "connector": self.name,
            "outbox_id": delivery.outbox_id,
            "message_id": delivery.message_id,
            "message_type": defn.id if defn is not None else parsed.namespace.removeprefix(ISO_NS_PREFIX),
            "msg_id": msg_id,
            "biz_msg_idr": _hdr_text(parsed.app_hdr, "BizMsgIdr"),
            "attempt": delivery.attempt,
            "possible_duplicate": _possible_duplicate(parsed.app_hdr),
            "delivery_possible_duplicate": delivery.possible_duplicate,
            "sha256": hashlib.sha256(delivery.payload).hexdigest(),
            "bytes": len(delivery.payload),
            "end_to_end_ids": e2e_ids,
            "uetrs": uetrs,
            "answer": _answer_label(defn, plan),
        }
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        if plan is not None:
            await self._slots.acquire()  # room for the answer before the receipt: never a receipt left unanswered
        try:
            await self._record(line)
        except BaseException:
            if plan is not None:
                self._slots.release()
            raise
        self._received += 1
        if plan is not None:
            nursery = self._nursery
            if nursery is None:  # closed while the receipt was being written: the answer is dropped
                self._slots.release()
            else:
                nursery.start_soon(self._answer, plan)
        if failure is not None:
            self._refused += 1
            raise DeliveryFailed(
                f"injected failure after receipt (rule {failure.match!r})", retryable=failure.retryable
            )
        return receipt

    def _read(self, payload: bytes) -> tuple[ParsedMessage, MessageDef | None, MessageRefs | None]:
        try:
            parsed = parse_message(payload, max_bytes=self._max_bytes)
        except Rejection as rej:
            raise DeliveryFailed(f"unreadable payload: {rej.summary}", retryable=False) from None
        defn = self._catalogue.by_namespace(parsed.namespace)
        if defn is None or defn.role == "header":
            return parsed, None, None
        if self._schemas is not None:
            findings = self._schemas.validate(defn, parsed.document)
            hdr_def = self._catalogue.header(parsed.app_hdr_namespace or "") if parsed.app_hdr is not None else None
            if hdr_def is not None and parsed.app_hdr is not None:
                findings += self._schemas.validate(hdr_def, parsed.app_hdr)
            if findings:
                first = findings[0]
                raise DeliveryFailed(
                    f"{defn.id} breaks its schema: {first.code} {first.path or ''} {first.detail}", retryable=False
                )
        try:
            refs = extract_refs(defn, parsed.document)
        except Exception as exc:  # a bank must survive any bytes: an unreadable message is refused, never a crash
            raise DeliveryFailed(f"cannot read {defn.id}: {type(exc).__name__}", retryable=False) from None
        return parsed, defn, refs

    def _injected_failure(self, msg_id: str, e2e_ids: Sequence[str]) -> FailRule | None:
        for i, rule in enumerate(self.settings.failures):
            if not (
                fnmatch.fnmatchcase(msg_id, rule.match) or any(fnmatch.fnmatchcase(e, rule.match) for e in e2e_ids)
            ):
                continue
            if rule.times is not None:
                if self._fail_counts[i] >= rule.times:
                    continue  # spent: later rules (or none) decide
                self._fail_counts[i] += 1
            return rule
        return None

    def _rule_for(self, tx: TxRefs) -> AnswerRule | None:
        e2e = tx.end_to_end_id or ""
        for rule in self.settings.rules:
            if fnmatch.fnmatchcase(e2e, rule.end_to_end_id):
                return rule
        return None

    def _plan(self, parsed: ParsedMessage, defn: MessageDef, refs: MessageRefs) -> _Plan | None:
        """The answer to a message; None when it gets none (no report type, or a silent rule matched)."""
        report_def = self._catalogue.report_for(defn)
        if report_def is None or defn.family not in ANSWERED_FAMILIES:
            return None
        findings: list[Finding] = []
        delays: list[int] = []
        for tx in refs.transactions:
            rule = self._rule_for(tx)
            if rule is None:
                delays.append(self.settings.delay_ms)
                continue
            if rule.silent:
                return None
            delays.append(self.settings.delay_ms if rule.delay_ms is None else rule.delay_ms)
            if rule.reject is not None:
                why = f"rejected by the simulated bank (rule {rule.end_to_end_id!r})"
                findings.append(Finding(rule.reject, why, path=tx.path, tx_ref=tx.end_to_end_id))
        if not findings:
            status = self.settings.status
        elif len(findings) == len(refs.transactions):
            status = REJECTED
        else:
            status = PARTIAL
        hdr_to = _hdr_bic(parsed.app_hdr, "To")
        addressed = [hdr_to, refs.instd_agt_bic, *(tx.instd_agt_bic for tx in refs.transactions)]
        bank_bic = next((b for a in addressed if a for b in self.settings.bics if _same_bank(a, b)), None)
        instructed = refs.instg_agt_bic or next((t.instg_agt_bic for t in refs.transactions if t.instg_agt_bic), None)
        hdr_fr = _hdr_bic(parsed.app_hdr, "Fr")
        return _Plan(
            report_def=report_def,
            original_def=defn,
            refs=refs,
            findings=tuple(findings),
            group_status=status,
            # one report per message: it goes when its slowest transaction is decided
            delay_s=max(delays, default=self.settings.delay_ms) / 1000,
            bank_bic=bank_bic or self.settings.bics[0],
            to_bic=self.settings.switch_bic or hdr_fr or instructed,
            instructed_bic=instructed or hdr_fr,
        )

    # -- receipts -------------------------------------------------------------------------------------------------

    async def _record(self, line: bytes) -> None:
        pending = _PendingReceipt(line)
        try:
            await self._send.send(pending)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise DeliveryFailed(f"simulated bank {self.name} is closing", retryable=True) from None
        # Not shielded: if the caller is cancelled here the line may still reach the file. The switch then sees an
        # attempt with an unknown outcome and retries it marked as a possible duplicate, which is what a real bank
        # connection does too.
        await pending.done.wait()
        if pending.error is not None:
            raise DeliveryFailed(f"receipts file: {pending.error}", retryable=True)

    async def _write_receipts(self, fd: int) -> None:
        async for first in self._receive:
            batch = [first]
            while len(batch) < _RECEIPT_QUEUE:
                try:
                    batch.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            # One write and one fsync for everything queued meanwhile (group commit). The thread is not abandoned
            # on cancellation, so a batch is either written whole or (cancelled before it started) not at all.
            try:
                await trio.to_thread.run_sync(_append_durably, fd, b"".join(p.line for p in batch))
            except OSError as exc:
                for p in batch:
                    p.error = exc.strerror or type(exc).__name__
            except BaseException:
                for p in batch:
                    p.error = "the simulated bank closed before recording the message"
                raise
            finally:
                for p in batch:
                    p.done.set()

    # -- answers --------------------------------------------------------------------------------------------------

    async def _answer(self, plan: _Plan) -> None:
        try:
            await trio.sleep(plan.delay_s)
            report = self.build_report(plan, datetime.now(UTC))
            status = await self._sink(report)
            if 200 <= status < 300:
                self._answered += 1
            else:
                self._answers_refused += 1
                log.warning(
                    "%s: the switch refused the %s for %s with %d",
                    self.name,
                    plan.report_def.id,
                    plan.refs.msg_id,
                    status,
                )
        except Exception:  # an answer that fails must not take the bank (and its deliveries) down
            self._answers_refused += 1
            log.exception("%s: answering %s failed", self.name, plan.refs.msg_id)
        finally:
            self._slots.release()

    def build_report(self, plan: _Plan, now: datetime) -> bytes:
        """The status report for `plan`, in an envelope with an AppHdr when a recipient is known."""
        report_msg_id = "SB" + new_message_id(now)  # 35 characters, unique across restarts (a MsgId must be)
        xml = build_status_report(
            report_def=plan.report_def,
            original_def=plan.original_def,
            original=plan.refs,
            original_msg_id=plan.refs.msg_id,
            findings=plan.findings,
            report_msg_id=report_msg_id,
            created_at=now,
            group_status=plan.group_status,
            instructing_bic=plan.bank_bic,
            instructed_bic=plan.instructed_bic,
        )
        document = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
        if plan.report_def.family == "pacs.002":
            _list_accepted(document, plan)
        if plan.to_bic is None:
            data: bytes = etree.tostring(document, xml_declaration=True, encoding="UTF-8")
            return data
        hdr = build_app_hdr(
            fr_bic=plan.bank_bic,
            to_bic=plan.to_bic,
            biz_msg_idr=report_msg_id,
            msg_def_idr=plan.report_def.id,
            cre_dt=now,
        )
        return build_envelope(hdr, document).unsigned


# -- report helpers -----------------------------------------------------------------------------------------------


def _list_accepted(document: etree._Element, plan: _Plan) -> None:
    """Give every transaction of a pacs.002 its TxInfAndSts, in the original's order: build_status_report lists
    only rejected ones, and a bank's answer should correlate by OrgnlEndToEndId / OrgnlUETR too."""
    body = document[0]
    q = "{" + plan.report_def.namespace + "}"
    rejected = [el for el in body if el.tag == q + "TxInfAndSts"]
    listed = iter(rejected)
    for el in rejected:
        body.remove(el)
    rejected_paths = {f.path for f in plan.findings}
    accepted_status = plan.group_status if plan.group_status not in (REJECTED, PARTIAL) else "ACSC"
    for tx in plan.refs.transactions:
        if tx.path in rejected_paths:
            existing = next(listed, None)
            if existing is not None:
                body.append(existing)
            continue
        el = etree.SubElement(body, q + "TxInfAndSts")
        for name, value in (
            ("OrgnlInstrId", tx.instr_id),
            ("OrgnlEndToEndId", tx.end_to_end_id),
            ("OrgnlTxId", tx.tx_id),
        ):
            if value:
                etree.SubElement(el, q + name).text = value[:35]
        if tx.uetr and _UUID4.fullmatch(tx.uetr.lower()):
            etree.SubElement(el, q + "OrgnlUETR").text = tx.uetr.lower()
        etree.SubElement(el, q + "TxSts").text = accepted_status
    for el in listed:  # a rejection build_status_report placed that matched no path of ours: keep it
        body.append(el)


def _hdr_child(app_hdr: etree._Element | None, name: str) -> etree._Element | None:
    if app_hdr is None:
        return None
    for child in app_hdr:
        if isinstance(child.tag, str) and local_name(child) == name:
            return child
    return None


def _hdr_text(app_hdr: etree._Element | None, name: str) -> str | None:
    el = _hdr_child(app_hdr, name)
    if el is None:
        return None
    return (el.text or "").strip() or None


def _hdr_bic(app_hdr: etree._Element | None, party: str) -> str | None:
    el = _hdr_child(app_hdr, party)
    if el is None:
        return None
    for node in el.iter():
        if isinstance(node.tag, str) and local_name(node) in ("BICFI", "AnyBIC"):
            bic = (node.text or "").strip()
            if _BIC.fullmatch(bic):
                return bic
    return None


def _possible_duplicate(app_hdr: etree._Element | None) -> bool:
    return app_hdr is not None and app_hdr_possible_duplicate(app_hdr)


def _answer_label(defn: MessageDef | None, plan: _Plan | None) -> str:
    """What the receipt says the bank will answer: the group status, "silent", or "none" (no report type)."""
    if plan is not None:
        return plan.group_status
    if defn is None or defn.report is None or defn.family not in ANSWERED_FAMILIES:
        return "none"
    return "silent"


def _same_bank(a: str, b: str) -> bool:
    """Whether two BICs name the same office: "AAAAUS33" and "AAAAUS33XXX" do."""
    return a[:8] == b[:8] and (a[8:] or "XXX") == (b[8:] or "XXX")


def _timestamp(now: datetime, timespec: str = "microseconds") -> str:
    return now.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


# -- the receipts file --------------------------------------------------------------------------------------------


def _open_append(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    # A line torn by a crash would glue itself to the next one: start on a fresh line.
    size = os.fstat(fd).st_size
    if size:
        with open(path, "rb") as f:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                _append_durably(fd, b"\n")
    return fd


def _append_durably(fd: int, data: bytes) -> None:
    """Append `data` and fsync; on failure cut the file back so no partial line stays in front of the next."""
    start = os.lseek(fd, 0, os.SEEK_END)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except OSError:
        # the original error is the one to report; should the cut fail too, the reader skips torn lines
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
        raise


def read_receipts(path: Path) -> list[dict[str, Any]]:
    """Every receipt in a receipts file, oldest first ([] if the file does not exist).

    A line that is not complete JSON (torn by a crash mid-write, before its fsync returned) is skipped: its
    delivery never returned, so the switch did not count it as delivered.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    out: list[dict[str, Any]] = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


__all__ = [
    "AnswerRule",
    "FailRule",
    "SimBank",
    "SimBankSettings",
    "SimBankStatistics",
    "read_receipts",
]
