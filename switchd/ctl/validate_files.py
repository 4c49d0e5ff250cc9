"""Offline validation for `switchctl validate`: the daemon's own parse, schema and rule checks, on files.

Every error is listed (the daemon's reports stop at `validate.MAX_FINDINGS`). A file with schema errors is
answered from `switchd.iso` alone, as the daemon's examiner would answer it (it never runs the rules on a
schema-invalid message); only schema-valid files go on to the examiner itself for sender authority and the
business rules. Why: the examiner's module pulls in the journal and trio (~0.5 s of imports), which would be most
of the one-second budget for a 5 MB invalid file (issue 4).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lxml import etree

from switchd.errors import Finding, Rejection
from switchd.iso.catalogue import Catalogue, MessageDef
from switchd.iso.validate import SchemaSet
from switchd.iso.xml import local_name, parse_message

if TYPE_CHECKING:
    from switchd.config import Participant
    from switchd.examine import Examiner

MAX_FILE_BYTES = 512 * 1024 * 1024  # offline: the operator chose the file; only guard against the absurd


class FileValidator:
    """Validates files against one catalogue and schema set; the examiner is built on first need."""

    def __init__(self, catalogue: Catalogue, schemas: SchemaSet) -> None:
        self.catalogue = catalogue
        self.schemas = schemas
        self._examiner: Examiner | None = None

    def validate(self, raw: bytes, sender_bics: frozenset[str] | None) -> dict[str, Any]:
        """{valid, message_type, msg_id, errors}: every error of `raw`, each as `Finding.as_json()`."""
        schema_errors = self._schema_errors(raw)
        if schema_errors is not None:
            return schema_errors
        exam = self._examiner_for().examine(raw, sender_bics)
        rej = exam.rejection
        return {
            "valid": rej is None,
            "message_type": exam.defn.id if exam.defn else None,
            "msg_id": exam.msg_id,
            "errors": [f.as_json() for f in rej.findings] if rej else [],
        }

    def _schema_errors(self, raw: bytes) -> dict[str, Any] | None:
        """The answer for a file that is not well-formed or breaks its schema; None when the examiner must decide.

        Mirrors the start of `Examiner.examine` (tests/ctl/test_validate_files.py holds the two to the same
        answers), but asks for every schema error instead of the daemon's first `MAX_FINDINGS`.
        """
        try:
            parsed = parse_message(raw, max_bytes=MAX_FILE_BYTES)
        except Rejection as rej:
            return {"valid": False, "message_type": None, "msg_id": None, "errors": _as_json(rej.findings)}
        defn = self.catalogue.by_namespace(parsed.namespace)
        if defn is None or defn.role == "header":
            return None  # unsupported message: the examiner's own wording
        findings = self.schemas.validate(defn, parsed.document, limit=None)
        if parsed.app_hdr is not None:
            hdr_def = self.catalogue.header(parsed.app_hdr_namespace or "")
            if hdr_def is None:
                findings.append(
                    Finding("FF01", f"unsupported AppHdr version {parsed.app_hdr_namespace!r}", path="/AppHdr")
                )
            else:
                findings += self.schemas.validate(hdr_def, parsed.app_hdr, limit=None)
        if not findings:
            return None
        return {
            "valid": False,
            "message_type": defn.id,
            "msg_id": _msg_id(parsed.document),
            "errors": _as_json(findings),
        }

    def _examiner_for(self) -> Examiner:
        if self._examiner is None:
            from switchd.examine import Examiner  # heavy (journal, trio): only for schema-valid files

            self._examiner = Examiner(self.catalogue, self.schemas, MAX_FILE_BYTES)
        return self._examiner


def validate_files(schema_dir: Path, files: list[Path], participant: Participant | None) -> list[dict[str, Any]]:
    """One result per file, in order: {file, valid, message_type, msg_id, errors}."""
    validator = FileValidator(*on_demand_schemas(schema_dir))
    sender_bics = participant.bics if participant else None
    results: list[dict[str, Any]] = []
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            results.append({"file": str(path), "valid": False, "errors": [{"code": "-", "detail": exc.strerror}]})
            continue
        results.append({"file": str(path), **validator.validate(raw, sender_bics)})
    return results


def on_demand_schemas(schema_dir: Path) -> tuple[Catalogue, SchemaSet]:
    """The catalogue, and the schemas compiled as files need them (the daemon's `load_schemas` compiles all ~0.1 s)."""
    catalogue = Catalogue.from_toml((schema_dir / "catalogue.toml").read_text())

    def source(defn: MessageDef) -> bytes:
        path = schema_dir / defn.schema_file
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ValueError(f"{path}: {exc.strerror}") from None

    return catalogue, SchemaSet.on_demand(catalogue, source)


def _as_json(findings: tuple[Finding, ...] | list[Finding]) -> list[dict[str, Any]]:
    return [f.as_json() for f in findings]


def _msg_id(document: etree._Element) -> str | None:
    """GrpHdr/MsgId read without the schema's blessing, as the daemon names an invalid message in its report."""
    for top in document:
        if not isinstance(top.tag, str):
            continue
        for grp in top:
            if local_name(grp) == "GrpHdr":
                for child in grp:
                    if local_name(child) == "MsgId":
                        text = (child.text or "").strip()
                        return text[:35] or None
                return None
    return None
