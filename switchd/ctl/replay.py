"""`switchctl replay`: send accepted messages again under the current routes, marked as possible duplicates.

By id (or MsgId / UETR / EndToEndId) or by filter (state, connector, participant, time range). `--dry-run` shows
what would go where; otherwise the replay is journaled with the operator and the (required) reason, and the running
daemon's delivery workers pick the new outbox rows up within a second. A replayed part keeps the MsgId (and the
UETRs) the bank saw and carries AppHdr/PssblDplct, so the bank can recognise it.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from dataclasses import dataclass
from typing import Any

import trio

from switchd.config import Config
from switchd.ctl.render import as_json, table
from switchd.examine import Examiner, Job
from switchd.journal import Journal, MessageRow, OutboxEntry
from switchd.pipeline import entries_for
from switchd.schemas import load_schemas
from switchd.timefmt import rfc3339, utc_now


@dataclass(frozen=True)
class Planned:
    message: MessageRow
    entries: tuple[OutboxEntry, ...]
    refused: tuple[str, ...]  # why transactions would not be sent (route rejects, unroutable)


def add_replay_parser(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="send messages again under the current routes (journaled, marked possible duplicate)",
        description=__doc__,
    )
    p.add_argument("keys", nargs="*", help="message id, MsgId, UETR or EndToEndId (or use the filters)")
    p.add_argument("--state", help="messages in this state, e.g. failed, timed_out, delivered")
    p.add_argument("--connector", help="messages that were routed to this connector")
    p.add_argument("--participant", help="messages from this participant")
    p.add_argument("--since", help="received at or after (RFC 3339)")
    p.add_argument("--until", help="received before (RFC 3339)")
    p.add_argument("--limit", type=int, default=1000, help="at most this many messages (default 1000)")
    p.add_argument("--reason", required=True, help="why (journaled with the replay)")
    p.add_argument("--operator", help="who (default: the login name)")
    p.add_argument("--dry-run", action="store_true", help="show what would be sent where; change nothing")
    p.set_defaults(func=cmd_replay)


def _operator(args: argparse.Namespace) -> str:
    if args.operator:
        return str(args.operator)
    return os.environ.get("SUDO_USER") or getpass.getuser()


def select(journal: Journal, args: argparse.Namespace) -> list[MessageRow]:
    rows: dict[str, MessageRow] = {}
    for key in args.keys:
        for row in journal.resolve(key):
            rows[row.id] = row
    filtered = any(getattr(args, k) for k in ("state", "connector", "participant", "since", "until"))
    if filtered:
        for row in journal.search(
            state=args.state, participant=args.participant, since=args.since, until=args.until, limit=args.limit
        ):
            if args.keys and row.id not in rows:
                continue  # keys and filters together: the filters narrow the keys
            rows[row.id] = row
        if args.connector:
            rows = {k: r for k, r in rows.items() if any(o.connector == args.connector for o in journal.outbox(k))}
        if args.state and args.keys:
            rows = {k: r for k, r in rows.items() if r.state == args.state}
    return sorted(rows.values(), key=lambda r: (r.received_at, r.id))[: args.limit]


def plan(cfg: Config, journal: Journal, examiner: Examiner, row: MessageRow) -> Planned:
    if row.http_status not in (200, 202) or row.message_type is None:
        return Planned(row, (), (f"not replayable: it was {row.state} at intake",))
    defn = examiner.catalogue.get(row.message_type)
    if defn is None or defn.role != "payment":
        return Planned(row, (), (f"not replayable: {row.message_type} is not a payment switchd routes",))
    raw = journal.raw(row.id)
    verdict = examiner.verdict(Job(raw, None, row.id, utc_now()))
    if verdict.refs is None:
        return Planned(row, (), ("cannot read the journaled message again",))
    routes = cfg.routes.plan(row.message_type, row.participant, verdict.refs)
    refused = tuple(f"{r.tx.end_to_end_id or r.tx.path}: {r.reason} ({r.route or 'no route'})" for r in routes.refused)
    if refused:
        return Planned(row, (), refused)
    existing = journal.outbox(row.id)
    reuse = {o.tx_indexes: o.msg_id for o in existing}
    first = max((o.part for o in existing), default=0) + 1
    entries = entries_for(
        routes, row.id, row.msg_id or row.id, utc_now(), first_part=first, reuse=reuse, possible_duplicate=True
    )
    return Planned(row, entries, ())


async def _write(cfg: Config, plans: list[Planned], operator: str, reason: str) -> list[str]:
    journal = await trio.to_thread.run_sync(lambda: Journal.open(cfg.journal_path))
    ids: list[str] = []
    try:
        await journal.start()
        for p in plans:
            if p.entries:
                ids += await journal.replay(
                    p.message.id, p.entries, rfc3339(utc_now()), operator=operator, reason=reason
                )
    finally:
        await journal.aclose()
    return ids


def cmd_replay(args: argparse.Namespace) -> int:
    from switchd.ctl.main import _config, _journal, time_bounds

    if not args.keys and not any(getattr(args, k) for k in ("state", "connector", "participant", "since", "until")):
        print("switchctl replay: name messages or give a filter (--state, --connector, ...)", file=sys.stderr)
        return 2
    if not args.reason.strip():
        print("switchctl replay: --reason must say why", file=sys.stderr)
        return 2
    time_bounds(args, "replay")  # the journal's search reads them itself; a text that is no time stops here
    cfg = _config(args)
    journal = _journal(cfg)
    catalogue, schemas = load_schemas(cfg.schema_dir)
    examiner = Examiner(catalogue, schemas, cfg.http.max_body_bytes)
    plans = [plan(cfg, journal, examiner, row) for row in select(journal, args)]
    journal.close()
    if not plans:
        print("switchctl replay: no message matches", file=sys.stderr)
        return 1
    operator = _operator(args)
    rows = [
        (p.message.id, p.message.msg_id, e.part, e.msg_id, e.connector, e.route, len(e.tx_indexes) or "all")
        for p in plans
        for e in p.entries
    ]
    skipped = [(p.message.id, "; ".join(p.refused)) for p in plans if not p.entries]
    new_ids: list[str] = []
    if not args.dry_run and rows:
        new_ids = trio.run(_write, cfg, plans, operator, args.reason)
    if args.json:
        as_json(
            {
                "dry_run": args.dry_run,
                "operator": operator,
                "reason": args.reason,
                "parts": [
                    {"message_id": r[0], "part": r[2], "msg_id": r[3], "connector": r[4], "route": r[5]} for r in rows
                ],
                "outbox_ids": new_ids,
                "skipped": [{"message_id": m, "why": w} for m, w in skipped],
            }
        )
    else:
        verb = "would send" if args.dry_run else "queued"
        print(f"replay by {operator}: {args.reason}")
        if rows:
            table(["message", "msg_id", "part", "part msg_id", "connector", "route", "txs"], rows)
            print(f"\n{verb} {len(rows)} part(s) of {len({r[0] for r in rows})} message(s), marked possible duplicate")
        for m, why in skipped:
            print(f"skipped {m}: {why}")
    return 0 if rows else 1
