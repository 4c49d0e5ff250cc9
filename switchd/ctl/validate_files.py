"""Offline validation for `switchctl validate`: the daemon's own parse, schema and rule checks, on files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from switchd.config import Participant
from switchd.examine import Examiner
from switchd.schemas import load_schemas

MAX_FILE_BYTES = 512 * 1024 * 1024  # offline: the operator chose the file; only guard against the absurd


def validate_files(schema_dir: Path, files: list[Path], participant: Participant | None) -> list[dict[str, Any]]:
    catalogue, schemas = load_schemas(schema_dir)
    examiner = Examiner(catalogue, schemas, MAX_FILE_BYTES)
    results = []
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            results.append({"file": str(path), "valid": False, "errors": [{"code": "-", "detail": exc.strerror}]})
            continue
        exam = examiner.examine(raw, participant.bics if participant else None)
        rej = exam.rejection
        results.append(
            {
                "file": str(path),
                "valid": rej is None,
                "message_type": exam.defn.id if exam.defn else None,
                "msg_id": exam.msg_id,
                "errors": [f.as_json() for f in rej.findings] if rej else [],
            }
        )
    return results
