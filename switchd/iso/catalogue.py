"""The message catalogue: ISO 20022 message id/version <-> namespace, root element, schema file, status report.

Pure data: `Catalogue.from_toml(text)` builds it from `schemas/iso20022/catalogue.toml`; nothing here reads files.
Each message names the status report that answers it, in the sender's version family (pacs.008.001.09 ->
pacs.002.001.11); the catalogue refuses a report that is not a pacs.002 (pacs, camt) or pain.002 (pain).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

NAMESPACE_PREFIX = "urn:iso:std:iso:20022:tech:xsd:"
Role = Literal["payment", "report", "header"]
_MESSAGE_ID = re.compile(r"[a-z]{4}\.\d{3}\.\d{3}\.\d{2}")


@dataclass(frozen=True)
class MessageDef:
    """One message definition at one version, e.g. pacs.008.001.08."""

    id: str  # "pacs.008.001.08"
    root: str  # the element under Document (or the AppHdr itself for head.001)
    role: Role
    report: str | None  # id of the status report message that answers this one

    @property
    def family(self) -> str:
        """The message type without its version: "pacs.008"."""
        return ".".join(self.id.split(".")[:2])

    @property
    def business_area(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def namespace(self) -> str:
        return NAMESPACE_PREFIX + self.id

    @property
    def schema_file(self) -> str:
        return f"{self.id}.xsd"


class Catalogue:
    """Lookup of message definitions by id and by namespace."""

    def __init__(self, defs: list[MessageDef]) -> None:
        self._by_id: dict[str, MessageDef] = {}
        for d in defs:
            if _MESSAGE_ID.fullmatch(d.id) is None:
                raise ValueError(f"catalogue: {d.id!r} is not a message id like pacs.008.001.08")
            if d.id in self._by_id:
                raise ValueError(f"catalogue: {d.id} is listed twice")
            self._by_id[d.id] = d
        self._by_ns = {d.namespace: d for d in defs}
        for d in defs:
            if d.report is None:
                continue
            report = self._by_id.get(d.report)
            if report is None:
                raise ValueError(f"catalogue: {d.id}: report {d.report} is not in the catalogue")
            # pain messages come from customers and get the customer report; pacs and camt travel between banks.
            family = "pain.002" if d.business_area == "pain" else "pacs.002"
            if report.role != "report" or report.family != family:
                raise ValueError(f"catalogue: {d.id}: report {d.report} is not a {family} status report")

    @classmethod
    def from_toml(cls, text: str) -> Catalogue:
        data = tomllib.loads(text)
        defs = []
        for i, entry in enumerate(data.get("message", [])):
            try:
                role = entry["role"]
                if role not in ("payment", "report", "header"):
                    raise ValueError(f"role {role!r} is not payment, report or header")
                defs.append(MessageDef(id=entry["id"], root=entry["root"], role=role, report=entry.get("report")))
            except KeyError as exc:
                raise ValueError(f"catalogue: message[{i}]: missing key {exc}") from None
        return cls(defs)

    def __iter__(self) -> Iterator[MessageDef]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, message_id: str) -> MessageDef | None:
        return self._by_id.get(message_id)

    def by_namespace(self, namespace: str) -> MessageDef | None:
        return self._by_ns.get(namespace)

    def header(self, namespace: str) -> MessageDef | None:
        d = self._by_ns.get(namespace)
        return d if d is not None and d.role == "header" else None

    def report_for(self, original: MessageDef) -> MessageDef | None:
        """The status report answering `original`, in its version family; None for reports and headers."""
        return self._by_id.get(original.report) if original.report else None

    def family(self, family: str) -> list[MessageDef]:
        """Every version of a message type ("pacs.008"), oldest first."""
        return sorted((d for d in self._by_id.values() if d.family == family), key=lambda d: d.id)
