"""The message catalogue: ISO 20022 message id/version <-> namespace, root element, schema file, status report.

Pure data: `Catalogue.from_toml(text)` builds it from `schemas/iso20022/catalogue.toml`; nothing here reads files.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

NAMESPACE_PREFIX = "urn:iso:std:iso:20022:tech:xsd:"
Role = Literal["payment", "report", "header"]


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
        self._by_id = {d.id: d for d in defs}
        self._by_ns = {d.namespace: d for d in defs}
        for d in defs:
            if d.report is not None and d.report not in self._by_id:
                raise ValueError(f"catalogue: {d.id}: report {d.report} is not in the catalogue")

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
        return self._by_id.get(original.report) if original.report else None
