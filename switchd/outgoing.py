"""What a bank receives: the outbound envelope of one outbox part, and the reports switchd writes to originators.

Both start from the journaled original (raw bytes), so nothing but the outbox row's decisions needs keeping:
`EnvelopePreparer` builds the part's Document (split when the message went several ways), the outbound AppHdr
(iso/outbound.py: from the switch to the destination, PssblDplct when it may be a repeat) and hands it to the signer
when one is configured; `OriginatorReports` builds the pacs.002/pain.002 an originator gets when a part fails.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from hsm.canonical import CanonicalEnvelope
from switchd.config import Config
from switchd.delivery import Prepared
from switchd.errors import Finding
from switchd.ids import new_message_id, report_msg_id
from switchd.iso.bulk import split_part
from switchd.iso.catalogue import Catalogue, MessageDef
from switchd.iso.outbound import outbound_envelope, set_possible_duplicate
from switchd.iso.refs import MessageRefs, TxRefs, extract_refs
from switchd.iso.reports import build_status_report
from switchd.iso.xml import ParsedMessage, parse_message
from switchd.journal import Journal, OutboxRow, ReportRecord
from switchd.timefmt import rfc3339, utc_now

# A signer takes the unsigned envelope (bytes, or laid out for signing as the preparer builds it) and returns
# (signed bytes, key label). None: messages go unsigned.
Signer = Callable[[bytes | CanonicalEnvelope], Awaitable[tuple[bytes, str]]]


@dataclass(frozen=True)
class Original:
    """The journaled original of a message, parsed again (the worker processes' trees never leave them)."""

    parsed: ParsedMessage
    defn: MessageDef
    refs: MessageRefs
    participant: str


class Originals:
    """Journaled originals, parsed, the most recent few kept: a message's first attempt, the bank's answer and the
    originator's report follow each other within moments, and each needs the same tree and refs. Trees are only
    read (split_part and the envelope builder copy), and a journaled message never changes, so sharing is safe."""

    def __init__(self, journal: Journal, catalogue: Catalogue, max_bytes: int, keep: int = 256) -> None:
        self.journal = journal
        self.catalogue = catalogue
        self.max_bytes = max_bytes
        self.keep = keep
        self._recent: OrderedDict[str, Original] = OrderedDict()

    async def get(self, message_id: str) -> Original:
        original = self._recent.get(message_id)
        if original is None:
            original = await self._load(message_id)
            self._recent[message_id] = original
            if len(self._recent) > self.keep:
                self._recent.popitem(last=False)
        return original

    async def _load(self, message_id: str) -> Original:
        def read() -> tuple[bytes, str]:
            row = self.journal.get(message_id)
            if row is None:
                raise LookupError(f"no message {message_id}")
            return self.journal.raw(message_id), row.participant

        # Inline: one primary-key read of a message this process journaled moments ago (page-cached), cheaper
        # than the thread hop that would carry it.
        raw, participant = read()
        parsed = parse_message(raw, max_bytes=self.max_bytes)
        defn = self.catalogue.by_namespace(parsed.namespace)
        if defn is None:
            raise LookupError(f"{message_id}: {parsed.namespace} is no longer in the catalogue")
        return Original(parsed, defn, extract_refs(defn, parsed.document), participant)


def part_txs(refs: MessageRefs, tx_indexes: Sequence[int]) -> list[TxRefs]:
    """The transactions of a part (all of them when the part names none)."""
    wanted = set(tx_indexes)
    return [tx for tx in refs.transactions if not wanted or tx.index in wanted]


class EnvelopePreparer:
    """Builds each attempt's bytes. The first attempt builds and keeps the unsigned envelope; later attempts and
    replays start from it, with PssblDplct set when the row is a possible duplicate."""

    def __init__(
        self,
        config: Config,
        journal: Journal,
        originals: Originals,
        signer: Signer | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.config = config
        self.journal = journal
        self.originals = originals
        self.signer = signer
        self.clock = clock

    def destination_bic(self, row: OutboxRow, original: Original) -> str:
        """AppHdr/To: the part's instructed agent, else its creditor agent, else the connector's bank."""
        txs = part_txs(original.refs, row.tx_indexes)
        for tx in txs:
            for bic in (tx.instd_agt_bic, original.refs.instd_agt_bic, tx.cdtr_agt_bic):
                if bic:
                    return bic
        for c in self.config.connectors:
            if c.name == row.connector and c.participant is not None:
                p = self.config.participant(c.participant)
                if p is not None and p.bics:
                    return sorted(p.bics)[0]
        return self.config.switch_bic

    async def build(self, row: OutboxRow, now: datetime) -> tuple[CanonicalEnvelope, str]:
        """The unsigned envelope of the part, and its message type."""
        original = await self.originals.get(row.message_id)
        document: object = original.parsed.document
        if row.tx_indexes and len(row.tx_indexes) != len(original.refs.transactions):
            document = split_part(original.parsed.document, original.defn, original.refs, row.tx_indexes, row.msg_id)
        envelope = outbound_envelope(
            document,  # an element, or the part's bytes
            fr_bic=self.config.switch_bic,
            to_bic=self.destination_bic(row, original),
            cre_dt=now,
            inbound_app_hdr=original.parsed.app_hdr,
            possible_duplicate=row.possible_duplicate,
        )
        return envelope, original.defn.id

    async def prepare(self, row: OutboxRow) -> Prepared:
        now = self.clock()
        to_sign: bytes | CanonicalEnvelope
        if row.payload is None:
            to_sign, message_type = await self.build(row, now)
            unsigned = keep = to_sign.unsigned
        else:
            unsigned = to_sign = set_possible_duplicate(row.payload, row.possible_duplicate)
            keep = None
            message_type = self._message_type(row.message_id)
        if self.signer is None:
            return Prepared(unsigned, keep, None, message_type)
        signed, label = await self.signer(to_sign)
        return Prepared(signed, keep, label, message_type)

    def _message_type(self, message_id: str) -> str:
        row = self.journal.get(message_id)
        return (row.message_type if row else None) or "unknown"


def report_findings(txs: Sequence[TxRefs], code: str, detail: str) -> tuple[Finding, ...]:
    return tuple(Finding(code, detail, path=tx.path, tx_ref=tx.end_to_end_id or tx.tx_id) for tx in txs)


class OriginatorReports:
    """The status reports switchd writes to an originator about its message, in the family it answers in."""

    def __init__(self, originals: Originals, switch_bic: str) -> None:
        self.originals = originals
        self.catalogue = originals.catalogue
        self.switch_bic = switch_bic

    async def rejection(
        self, message_id: str, tx_indexes: Sequence[int], code: str, detail: str, now: datetime
    ) -> tuple[ReportRecord | None, str]:
        original = await self.originals.get(message_id)
        txs = part_txs(original.refs, tx_indexes)
        whole = len(txs) == len(original.refs.transactions)
        findings = report_findings(txs, code, detail) or (Finding(code, detail, path=original.refs.path),)
        return self.report(original, findings, "RJCT" if whole else "PART", now), original.participant

    def report(
        self,
        original: Original,
        findings: Sequence[Finding],
        status: str,
        now: datetime,
        tx_statuses: Mapping[int, str] | None = None,
    ) -> ReportRecord | None:
        """The report to the originator on `original` (None when its family has none); `tx_statuses` (TxRefs.index
        -> TxSts) lists those transactions with their own status (build_status_report)."""
        report_def = self.catalogue.report_for(original.defn)
        if report_def is None:
            return None
        rid = report_msg_id(new_message_id(now))
        xml = build_status_report(
            report_def=report_def,
            original_def=original.defn,
            original=original.refs,
            original_msg_id=original.refs.msg_id,
            findings=findings,
            report_msg_id=rid,
            created_at=now,
            group_status=status,
            instructing_bic=self.switch_bic,
            instructed_bic=original.refs.instg_agt_bic,
            tx_statuses=tx_statuses,
        )
        return ReportRecord(
            report_id=rid, message_type=report_def.id, msg_id=rid, status=status, xml=xml, created_at=rfc3339(now)
        )
