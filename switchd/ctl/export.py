"""`switchctl export`: write the exact bytes of a message as received, or (`--sent`) as delivered to the bank.

Delivered bytes come from the journal's attempts table, which keeps every attempt's payload (signed, when signing
is on); the export checks them against the SHA-256 and key label of the attempt's event in the hash chain, so what
it writes is what the journal says was sent.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

from switchd.config import load_config
from switchd.ctl.render import as_json
from switchd.journal import AttemptRow, Journal, OutboxRow


class ExportError(Exception):
    """Why nothing was exported (printed as `switchctl: ...`, exit 1)."""


def add_export_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="write a message's exact bytes: as received, or as delivered to the bank (--sent)",
        description=__doc__,
    )
    p.add_argument("key", help="message id, MsgId, UETR or EndToEndId (must name one message)")
    p.add_argument("--sent", action="store_true", help="the bytes delivered to the bank (signed, as sent)")
    p.add_argument("--part", type=int, help="with --sent: which outbound part (needed when the message was split)")
    p.add_argument("--attempt", type=int, help="with --sent: this attempt (default: the one that was delivered)")
    p.add_argument("-o", "--output", type=Path, help="write to this file (default: standard output)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if not cfg.journal_path.exists():
        print(f"switchctl: no journal at {cfg.journal_path} (has switchd run yet?)", file=sys.stderr)
        return 2
    journal = Journal.open(cfg.journal_path, readonly=True)
    try:
        data, meta = export(journal, args.key, sent=args.sent, part=args.part, attempt=args.attempt)
    except ExportError as exc:
        print(f"switchctl: {exc}", file=sys.stderr)
        return 1
    finally:
        journal.close()
    if args.output is not None:
        args.output.write_bytes(data)
        meta["file"] = str(args.output)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    # What was written, on stderr (stdout may be the bytes themselves); --json puts it on stdout with -o.
    if args.json and args.output is not None:
        as_json(meta)
    else:
        print(", ".join(f"{k}={v}" for k, v in meta.items() if v is not None), file=sys.stderr)
    return 0


def export(
    journal: Journal, key: str, *, sent: bool, part: int | None = None, attempt: int | None = None
) -> tuple[bytes, dict[str, Any]]:
    """The bytes to export and what they are. Raises ExportError."""
    matches = journal.resolve(key)
    if not matches:
        raise ExportError(f"no message matches {key!r}")
    if len(matches) > 1:
        raise ExportError(f"{key!r} matches {len(matches)} messages ({', '.join(m.id for m in matches)}): give an id")
    message = matches[0]
    if not sent:
        if part is not None or attempt is not None:
            raise ExportError("--part and --attempt go with --sent")
        raw = journal.raw(message.id)
        return raw, {"message": message.id, "received": True, "bytes": len(raw), "sha256": _sha(raw)}
    row = _part(journal.outbox(message.id), message.id, part)
    chosen = _attempt(journal.attempts(row.id), row, attempt)
    # The digest and key label that count are those of the attempt's event, which the hash chain protects
    # (`switchctl journal verify`), not the attempts row next to the bytes: editing both would pass a self-check.
    chained = [
        e.detail
        for e in journal.events(message.id)
        if e.kind == "attempt" and e.detail.get("outbox_id") == row.id and e.detail.get("attempt") == chosen.attempt
    ]
    if len(chained) != 1:
        raise ExportError(f"attempt {chosen.attempt} of {row.id} has no journaled attempt event (journal damaged?)")
    if _sha(chosen.payload) != chained[0].get("sha256") or chosen.key_label != chained[0].get("key_label"):
        raise ExportError(
            f"attempt {chosen.attempt} of {row.id}: the stored bytes or key label do not match the journaled "
            "attempt event (run `switchctl journal verify`)"
        )
    return chosen.payload, {
        "message": message.id,
        "part": row.part,
        "msg_id": row.msg_id,
        "connector": row.connector,
        "attempt": chosen.attempt,
        "outcome": chosen.outcome or "in flight",
        "key_label": chosen.key_label or "unsigned",
        "possible_duplicate": chosen.possible_duplicate,
        "bytes": len(chosen.payload),
        "sha256": chosen.sha256,
    }


def _part(parts: list[OutboxRow], message_id: str, part: int | None) -> OutboxRow:
    if not parts:
        raise ExportError(f"{message_id} was never routed to a bank: nothing was sent")
    if part is None:
        if len(parts) > 1:
            numbers = ", ".join(str(p.part) for p in parts)
            raise ExportError(f"{message_id} went out in {len(parts)} parts ({numbers}): choose one with --part")
        return parts[0]
    for p in parts:
        if p.part == part:
            return p
    raise ExportError(f"{message_id} has no part {part} (parts: {', '.join(str(p.part) for p in parts)})")


def _attempt(attempts: list[AttemptRow], row: OutboxRow, attempt: int | None) -> AttemptRow:
    if not attempts:
        raise ExportError(f"part {row.part} of {row.message_id} has not been sent yet (state {row.state})")
    if attempt is not None:
        for a in attempts:
            if a.attempt == attempt:
                return a
        raise ExportError(f"part {row.part} has no attempt {attempt} (it has {len(attempts)})")
    delivered = [a for a in attempts if a.outcome == "delivered"]
    if not delivered:
        raise ExportError(
            f"part {row.part} of {row.message_id} was not delivered ({len(attempts)} attempt(s), state {row.state}): "
            "choose an attempt with --attempt"
        )
    return delivered[-1]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
