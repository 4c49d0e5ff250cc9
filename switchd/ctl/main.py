"""`switchctl`: status, messages, show, journal verify and validate; tables by default, --json for scripts.

It reads the journal named in the config directly (read-only) and asks the running daemon for its health over
its HTTP listener; `validate` works offline on files with the same schemas and rules as the daemon.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from switchd.config import Config, load_config
from switchd.ctl.hsm_cmd import add_hsm_parser
from switchd.ctl.related_view import (
    history,
    history_json,
    print_originals,
    refers_to,
    related_json,
    related_rows,
    source_label,
)
from switchd.ctl.render import as_json, table
from switchd.errors import ConfigError

if TYPE_CHECKING:
    from switchd.journal import Journal

DEFAULT_CONFIG = "conf/switchd.toml"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_word(argv))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"switchctl: config error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


def _command_word(argv: list[str]) -> str | None:
    """The command named on the command line (the first word after the global options), or None."""
    words = iter(argv)
    for word in words:
        if word == "--config":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; `command`, when known, spares registering commands whose modules are heavy.

    The journal, trio and the pipeline take ~0.5 s to import: commands that do not need them (validate, hsm)
    must not pay for them (issue 4: `switchctl validate` of a 5 MB file in under a second), so modules are
    imported inside the commands that use them, and `export`/`replay`, whose modules import them at the top,
    are registered only when the command line may name them.
    """
    parser = argparse.ArgumentParser(
        prog="switchctl",
        description="Operate switchd: inspect the journal, trace messages, verify integrity, validate files.",
    )
    parser.add_argument(
        "--config",
        default=os.environ.get("SWITCHD_CONFIG", DEFAULT_CONFIG),
        help=f"switchd config file (default: $SWITCHD_CONFIG or {DEFAULT_CONFIG})",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("status", help="daemon health and journal counts")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("messages", help="list messages, newest first, with filters")
    p.add_argument("--participant")
    p.add_argument("--type", dest="message_type", help="message type or glob, e.g. 'pacs.008*'")
    p.add_argument("--state", help="accepted, rejected, ...")
    p.add_argument("--msg-id")
    p.add_argument("--e2e", dest="end_to_end_id", help="EndToEndId")
    p.add_argument("--uetr")
    when = "ISO 8601: 2026-11-23 (midnight), '2026-11-23 15:05', 2026-11-23T15:05+01:00; no Z or offset: UTC"
    p.add_argument("--since", metavar="T", help=f"received at or after T ({when})")
    p.add_argument("--until", metavar="T", help=f"received before T ({when})")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_messages)

    p = sub.add_parser("show", help="the whole life of one message: by id, MsgId, UETR or EndToEndId")
    p.add_argument("key")
    p.add_argument("--raw", action="store_true", help="print the message bytes exactly as received")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("journal", help="journal maintenance")
    jsub = p.add_subparsers(dest="journal_command", required=True, metavar="ACTION")
    v = jsub.add_parser("verify", help="check the hash chain and message digests; exit 1 on tampering")
    v.set_defaults(func=cmd_journal_verify)

    p = sub.add_parser("validate", help="validate ISO 20022 files offline; exit 1 if any is invalid")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--participant", help="also check sender authority as this configured participant")
    p.set_defaults(func=cmd_validate)

    add_hsm_parser(sub)
    if command is None or command not in sub.choices:
        from switchd.ctl.export import add_export_parser
        from switchd.ctl.replay import add_replay_parser

        add_replay_parser(sub)
        add_export_parser(sub)
    return parser


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def _journal(cfg: Config) -> Journal:
    if not cfg.journal_path.exists():
        print(f"switchctl: no journal at {cfg.journal_path} (has switchd run yet?)", file=sys.stderr)
        raise SystemExit(2)
    from switchd.journal import Journal

    return Journal.open(cfg.journal_path, readonly=True)


def _plain(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return {k: _plain(v) for k, v in asdict(obj).items() if not isinstance(v, bytes)}
    return obj


def _listener(cfg: Config) -> str:
    """The address the daemon really bound (from its runtime file), else the configured one."""
    from switchd.daemon import runtime_file

    try:
        return str(json.loads(runtime_file(cfg).read_text())["http"][0])
    except (OSError, ValueError, KeyError, IndexError):
        host = cfg.http.host if cfg.http.host not in ("0.0.0.0", "::") else "127.0.0.1"
        return f"{host}:{cfg.http.port}"


def _probe(cfg: Config, path: str) -> tuple[int | None, dict[str, Any] | None]:
    import urllib.error  # ~50 ms of http.client and email: only for the commands that ask the daemon
    import urllib.request

    scheme = "https" if cfg.http.tls_cert else "http"
    url = f"{scheme}://{_listener(cfg)}{path}"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, None
    except (OSError, ValueError):
        return None, None


def cmd_status(args: argparse.Namespace) -> int:
    cfg = _config(args)
    health, _ = _probe(cfg, "/healthz")
    ready_code, ready = _probe(cfg, "/readyz")
    daemon = {
        "listener": _listener(cfg),
        "running": health == 200,
        "ready": ready_code == 200,
        "draining": bool(ready and ready.get("draining")),
    }
    stats = _journal(cfg).stats() if cfg.journal_path.exists() else {}
    runtime = _runtime(cfg) if daemon["running"] else {}
    connectors = runtime.get("connectors", [])
    signing = runtime.get("signing")
    intake = runtime.get("intake")
    problems = (ready or {}).get("problems") or {}
    outbox = _journal(cfg).outbox_depth() if cfg.journal_path.exists() else {}
    if args.json:
        as_json(
            {
                "daemon": {**daemon, "problems": problems},
                "journal": str(cfg.journal_path),
                "signing": signing,
                "intake": intake,
                "stats": stats,
                "connectors": connectors,
                "outbox": outbox,
            }
        )
        return 0 if daemon["running"] else 3
    state = "ready" if daemon["ready"] else ("draining" if daemon["draining"] else "running, not ready")
    print(f"daemon   {daemon['listener']}: {state if daemon['running'] else 'not running'}")
    for name, why in sorted(problems.items()):
        print(f"  not ready because of {name}: {why}")
    if signing:
        signing_health = "ready" if signing.get("ready") else f"UNAVAILABLE ({signing.get('last_error')})"
        print(
            f"signing  key {signing.get('active')!r} on token {signing.get('token')!r}, "
            f"{signing.get('workers')} signer process(es), {signing.get('signed')} signed: {signing_health}"
        )
    elif daemon["running"]:
        print("signing  off (no [hsm] in the config): outbound messages go unsigned")
    if intake:
        print(f"intake   {_intake_line(intake)}")
    print(f"journal  {cfg.journal_path}")
    for section, counts in stats.items():
        if isinstance(counts, dict) and counts:
            print(f"\n{section}:")
            table(["key", "count"], sorted(counts.items()))
        elif not isinstance(counts, dict):
            print(f"{section}: {counts}")
    if connectors or outbox:
        print("\nconnectors:")
        live = {c["connector"]: c for c in connectors}
        names = sorted(set(live) | set(outbox) | {c.name for c in cfg.connectors})
        table(
            ["connector", "breaker", "inflight", "delivered", "failed attempts", "outbox (state=rows)"],
            [
                (
                    n,
                    live.get(n, {}).get("breaker", "-"),
                    live.get(n, {}).get("inflight", "-"),
                    live.get(n, {}).get("delivered", "-"),
                    live.get(n, {}).get("failed_attempts", "-"),
                    " ".join(f"{k}={v}" for k, v in sorted(outbox.get(n, {}).items())) or "-",
                )
                for n in names
            ],
        )
    return 0 if daemon["running"] else 3


def _intake_line(intake: dict[str, object]) -> str:
    workers = intake.get("workers")
    if not workers:
        return "examined in the daemon's own process ([workers] intake = 0)"
    if intake.get("warm"):
        return f"{workers} worker process(es)"
    return f"examined in the daemon's own process until its {workers} worker process(es) are warm"


def _runtime(cfg: Config) -> dict[str, Any]:
    from switchd.daemon import runtime_file

    try:
        doc = json.loads(runtime_file(cfg).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def time_bounds(args: argparse.Namespace, command: str) -> dict[str, str | None]:
    """--since/--until in the journal's spelling of time (journal.reads.time_bound). A text that is no time: one line
    on stderr naming the option, and exit 2."""
    from switchd.journal.reads import time_bound

    bounds: dict[str, str | None] = {}
    for name in ("since", "until"):
        text = getattr(args, name)
        try:
            bounds[name] = time_bound(text) if text is not None else None
        except ValueError as exc:
            print(f"switchctl {command}: --{name}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    return bounds


def cmd_messages(args: argparse.Namespace) -> int:
    bounds = time_bounds(args, "messages")
    journal = _journal(_config(args))
    rows = journal.search(
        participant=args.participant,
        message_type=args.message_type,
        state=args.state,
        msg_id=args.msg_id,
        end_to_end_id=args.end_to_end_id,
        uetr=args.uetr,
        since=bounds["since"],
        until=bounds["until"],
        limit=args.limit,
    )
    if args.json:
        as_json([_plain(r) for r in rows])
        return 0
    table(
        ["id", "received_at", "participant", "type", "msg_id", "state", "http"],
        [(r.id, r.received_at, r.participant, r.message_type, r.msg_id, r.state, r.http_status) for r in rows],
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    journal = _journal(_config(args))
    matches = journal.resolve(args.key)
    if not matches:
        print(f"switchctl: no message matches {args.key!r}", file=sys.stderr)
        return 1
    if len(matches) > 1 and not args.json:
        print(f"{args.key!r} matches {len(matches)} messages; showing each\n")
    if args.raw:
        if len(matches) != 1:
            print("switchctl: --raw needs a key that matches exactly one message", file=sys.stderr)
            return 1
        sys.stdout.buffer.write(journal.raw(matches[0].id))
        return 0
    out = []
    for row in matches:
        events = journal.events(row.id)
        report = journal.latest_report(row.id)
        parts = journal.outbox(row.id)
        related = journal.related(row.id)
        named = refers_to(journal.refs(row.id))
        lines = history(journal, events, related)
        if args.json:
            out.append(
                {
                    **_plain(row),
                    "events": [_plain(e) for e in events],
                    "outbox": [_plain(p) for p in parts],
                    "report": report.xml.decode() if report else None,
                    "refers_to": named,
                    "related": related_json(related),
                    "history": history_json(lines),
                }
            )
            continue
        print(f"message   {row.id}")
        print(f"type      {row.message_type or '-'}   MsgId {row.msg_id or '-'}")
        print(f"from      {row.participant} via {row.channel} ({row.channel_ref or '-'})")
        print(f"state     {row.state} (HTTP {row.http_status})   received {row.received_at}")
        findings = row.verdict.get("findings") or []
        for f in findings:
            where = f" at {f['path']}" if f.get("path") else ""
            line = f" line {f['line']}" if f.get("line") else ""
            print(f"  {f['code']}{where}{line}: {f['detail']}")
        print_originals(row, related, named)
        print()
        if any(h.source is not None for h in lines):
            table(
                ["seq", "at", "event", "from", "detail"],
                [
                    (h.event.seq, h.event.at, h.event.kind, source_label(h.source), _brief(h.event.detail))
                    for h in lines
                ],
            )
        else:
            table(["seq", "at", "event", "detail"], [(e.seq, e.at, e.kind, _brief(e.detail)) for e in events])
        if related:
            print("\nrelated:")
            table(["relation", "id", "type", "msg_id", "from", "state", "received"], related_rows(related))
        if parts:
            print()
            table(
                ["part", "msg_id", "connector", "route", "state", "attempts", "answer", "dup?", "last error"],
                [
                    (
                        p.part,
                        p.msg_id,
                        p.connector,
                        p.route,
                        p.state,
                        p.attempts,
                        p.answer or "-",
                        "yes" if p.possible_duplicate else "",
                        p.last_error or "",
                    )
                    for p in parts
                ],
            )
        if report is not None:
            print(f"\nstatus report {report.report_id} ({report.message_type}, {report.status})")
        print()
    if args.json:
        as_json(out)
    return 0


# Integrity data (digests the journal pins in the chain) is for `journal verify` and --json, not for reading.
_HIDDEN_DETAIL = {"at", "journal", "sha256"}


def _brief(detail: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in detail.items() if k not in _HIDDEN_DETAIL and v is not None)


def cmd_journal_verify(args: argparse.Namespace) -> int:
    journal = _journal(_config(args))
    result = journal.verify()
    if args.json:
        as_json(_plain(result))
    elif result.ok:
        print(f"journal ok: {result.checked} events checked, hash chain, message digests and delivered bytes intact")
    else:
        print(f"journal TAMPERED: {len(result.problems)} problem(s) in {result.checked} events checked")
        for p in result.problems:
            print(f"  {p}")
    return 0 if result.ok else 1


def cmd_validate(args: argparse.Namespace) -> int:
    from switchd.ctl.validate_files import validate_files

    cfg = _config(args)
    participant = None
    if args.participant:
        participant = next((p for p in cfg.participants if p.name == args.participant), None)
        if participant is None:
            print(f"switchctl: no participant {args.participant!r} in {cfg.source}", file=sys.stderr)
            return 2
    results = validate_files(cfg.schema_dir, args.files, participant)
    if args.json:
        as_json(results)
    else:
        for r in results:
            if r["valid"]:
                print(f"{r['file']}: valid {r['message_type']} (MsgId {r['msg_id']})")
            else:
                print(f"{r['file']}: INVALID ({len(r['errors'])} error(s))")
                for e in r["errors"]:
                    where = f"line {e['line']}: " if e.get("line") else ""
                    path = f" [{e['path']}]" if e.get("path") else ""
                    print(f"  {where}{e['code']} {e['detail']}{path}")
    return 0 if all(r["valid"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
