"""Typed errors for switchd; a rejection carries ISO 20022 status reason codes and where the problem is.

SwitchdError
 ├── ConfigError            a config file is wrong: names the file, the key and the reason
 ├── JournalError           the journal cannot be opened or written
 └── Rejection              a message we refuse; becomes a pacs.002/pain.002 RJCT with the same codes
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class SwitchdError(Exception):
    """Base class of every error switchd raises on purpose."""


class ConfigError(SwitchdError):
    def __init__(self, file: str, key: str, reason: str) -> None:
        super().__init__(f"{file}: {key}: {reason}")
        self.file = file
        self.key = key
        self.reason = reason


class JournalError(SwitchdError):
    """The journal could not do what was asked (open, migrate, write)."""


@dataclass(frozen=True)
class Finding:
    """One thing wrong with a message.

    `code` is an ISO 20022 ExternalStatusReason1Code (FF01, AM18, DU01, ...); `path` an XPath-like location
    (`/Document/FIToFICstmrCdtTrf/GrpHdr/NbOfTxs`); `line` the source line; `tx_ref` the EndToEndId (or
    other id) of the transaction it concerns, when it concerns one transaction only.
    """

    code: str
    detail: str
    path: str | None = None
    line: int | None = None
    tx_ref: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "detail": self.detail}
        if self.path is not None:
            out["path"] = self.path
        if self.line is not None:
            out["line"] = self.line
        if self.tx_ref is not None:
            out["tx_ref"] = self.tx_ref
        return out


class RejectKind(enum.Enum):
    """Why a message was refused, which decides the HTTP status the channel answers with."""

    NOT_WELL_FORMED = 400  # not XML, DOCTYPE, too deep, not ISO 20022 or an unknown message
    FORBIDDEN = 403  # the sender claims an agent BIC it does not own
    DUPLICATE = 409  # a used MsgId with different content
    TOO_LARGE = 413
    INVALID = 422  # schema or business-rule errors

    @property
    def http_status(self) -> int:
        return self.value


@dataclass
class Rejection(SwitchdError):
    """A refused message. Raised deep, caught once in `pipeline.accept`, turned into a RJCT report."""

    kind: RejectKind
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        super().__init__(self.summary)

    @property
    def summary(self) -> str:
        if not self.findings:
            return self.kind.name
        first = self.findings[0]
        more = f" (+{len(self.findings) - 1} more)" if len(self.findings) > 1 else ""
        return f"{first.code}: {first.detail}{more}"

    @classmethod
    def single(cls, kind: RejectKind, code: str, detail: str, **where: Any) -> Rejection:
        return cls(kind, (Finding(code, detail, **where),))
