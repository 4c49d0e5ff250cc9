"""The route table: each transaction of an accepted payment goes to the first route that matches it.

A route matches on message type, agent BICs, clearing member id, currency, amount and sending participant (globs
where it makes sense) and either names a connector or rejects with an ISO reason code. A bulk message whose
transactions go to several destinations becomes one part per (route, connector), in document order.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fnmatch import fnmatchcase

from switchd.iso.refs import MessageRefs, TxRefs

# No route matched: the creditor's bank is not reachable through this switch ("creditor bank is not registered").
UNROUTABLE = "CNOR"


@dataclass(frozen=True)
class Route:
    """One row of the table. Every condition that is set must hold; none set matches everything (a default)."""

    name: str
    connector: str | None = None  # exactly one of connector / reject
    reject: str | None = None  # ISO ExternalStatusReason1Code
    message_type: str | None = None  # glob on "pacs.008.001.08"
    instructed_agent: str | None = None  # glob on the instructed agent's BIC (transaction, else group header)
    creditor_agent: str | None = None  # glob on the creditor agent's BIC
    agent: str | None = None  # glob matching the instructed OR the creditor agent's BIC
    clearing_member: str | None = None  # glob on the instructed or creditor agent's ClrSysMmbId/MmbId
    currencies: frozenset[str] | None = None
    min_amount: Decimal | None = None  # inclusive
    max_amount: Decimal | None = None  # inclusive
    participant: str | None = None  # glob on the sending participant's name
    deadline_s: float | None = None  # the originator hears back within this, or gets RJCT (timeout)

    def matches(self, message_type: str, participant: str, refs: MessageRefs, tx: TxRefs) -> bool:
        if self.message_type is not None and not fnmatchcase(message_type, self.message_type):
            return False
        if self.participant is not None and not fnmatchcase(participant, self.participant):
            return False
        instructed = tx.instd_agt_bic or refs.instd_agt_bic
        creditor = tx.cdtr_agt_bic
        if self.instructed_agent is not None and not _glob(instructed, self.instructed_agent):
            return False
        if self.creditor_agent is not None and not _glob(creditor, self.creditor_agent):
            return False
        if self.agent is not None and not (_glob(instructed, self.agent) or _glob(creditor, self.agent)):
            return False
        if self.clearing_member is not None:
            members = (tx.instd_agt_mmb_id or refs.instd_agt_mmb_id, tx.cdtr_agt_mmb_id)
            if not any(_glob(m, self.clearing_member) for m in members):
                return False
        if self.currencies is not None and tx.currency not in self.currencies:
            return False
        if self.min_amount is not None and (tx.amount is None or tx.amount < self.min_amount):
            return False
        return not (self.max_amount is not None and (tx.amount is None or tx.amount > self.max_amount))


def _glob(value: str | None, pattern: str) -> bool:
    return value is not None and value != "" and fnmatchcase(value, pattern)


@dataclass(frozen=True)
class Part:
    """Transactions of one message that go the same way."""

    route: Route
    tx_indexes: tuple[int, ...]


@dataclass(frozen=True)
class Refused:
    """A transaction a route rejects (or no route takes)."""

    tx: TxRefs
    route: str | None  # None: no route matched
    reason: str


@dataclass(frozen=True)
class Plan:
    parts: tuple[Part, ...]
    refused: tuple[Refused, ...]


@dataclass(frozen=True)
class RouteTable:
    routes: tuple[Route, ...]

    def route_tx(self, message_type: str, participant: str, refs: MessageRefs, tx: TxRefs) -> Route | None:
        for route in self.routes:
            if route.matches(message_type, participant, refs, tx):
                return route
        return None

    def plan(self, message_type: str, participant: str, refs: MessageRefs) -> Plan:
        """Route every transaction. Parts keep the document order of their first transaction."""
        groups: dict[tuple[str, str], list[int]] = {}
        by_key: dict[tuple[str, str], Route] = {}
        refused: list[Refused] = []
        # A message without transactions is routed as a whole: its part carries no tx indexes (= all of it).
        txs = refs.transactions or (TxRefs(-1, refs.path),)
        for tx in txs:
            route = self.route_tx(message_type, participant, refs, tx)
            if route is None:
                refused.append(Refused(tx, None, UNROUTABLE))
            elif route.reject is not None:
                refused.append(Refused(tx, route.name, route.reject))
            else:
                assert route.connector is not None
                key = (route.name, route.connector)
                ix = groups.setdefault(key, [])
                if tx.index >= 0:
                    ix.append(tx.index)
                by_key[key] = route
        parts = tuple(Part(by_key[k], tuple(ix)) for k, ix in groups.items())
        return Plan(parts, tuple(refused))


EMPTY_ROUTES = RouteTable(())
