"""The journal's tables, their migrations (tracked by PRAGMA user_version) and how connections are opened.

Tables (all STRICT):
    messages    one row per inbound message, raw bytes last; `holds_key` = 1 for a message accepted at intake: only
                those occupy (participant, family, msg_id), enforced by a partial UNIQUE index as a backstop to the
                check the writer makes inside the same transaction. It never changes afterwards, so a later state
                (routed, delivered, ...) keeps the MsgId used.
    refs        searchable references (end_to_end_id, uetr, tx_id, ...) of a message, clustered by message (v3)
    events      the global hash chain (see chain.py); seq is assigned by the writer, 1, 2, 3, ...
    chain_head  one row: the last seq and its hash, so a truncated tail is seen
    reports     status reports; seq (the rowid: max + 1, as the journal never deletes) is the paging cursor, and
                with one writer a report with a lower seq is never committed after one with a higher seq
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from sqlite_utils import Database

from switchd.errors import JournalError
from switchd.journal.chain import GENESIS

MESSAGE_COLUMNS = (
    "id, participant, channel, channel_ref, received_at, message_type, family, msg_id, state, http_status, "
    "verdict, sha256"
)
REPORT_COLUMNS = "seq, message_id, participant, report_id, message_type, msg_id, status, created_at, xml"
BUSY_TIMEOUT_MS = 5000


def _v1(db: Database) -> None:
    messages = db.create_table(
        "messages",
        {
            "id": str,
            "participant": str,
            "channel": str,
            "channel_ref": str,
            "received_at": str,
            "message_type": str,
            "family": str,
            "msg_id": str,
            "state": str,
            "http_status": int,
            "verdict": str,
            "sha256": str,
            "holds_key": int,
            "raw": bytes,  # last: reading the other columns never touches its overflow pages
        },
        pk="id",
        not_null=[
            "id",
            "participant",
            "channel",
            "received_at",
            "state",
            "http_status",
            "verdict",
            "sha256",
            "holds_key",
            "raw",
        ],
        strict=True,
    )
    # search() is newest first: each filter gets an index whose second column gives that order.
    messages.create_index(["received_at"])
    messages.create_index(["participant", "received_at"])
    messages.create_index(["state", "received_at"])
    messages.create_index(["message_type", "received_at"])
    messages.create_index(["msg_id"])
    # sqlite-utils' create_index has no WHERE clause: the partial index is plain SQL.
    db.execute("CREATE UNIQUE INDEX idx_messages_key ON messages (participant, family, msg_id) WHERE holds_key = 1")

    refs = db.create_table(
        "refs",
        {"message_id": str, "kind": str, "value": str},
        pk=("message_id", "kind", "value"),
        foreign_keys=[("message_id", "messages", "id")],
        not_null=["message_id", "kind", "value"],
        strict=True,
    )
    refs.create_index(["value", "kind"])

    events = db.create_table(
        "events",
        {
            "seq": int,
            "message_id": str,
            "at": str,
            "kind": str,
            "detail": str,
            "prev_hash": str,
            "hash": str,
        },
        pk="seq",
        foreign_keys=[("message_id", "messages", "id")],
        not_null=["message_id", "at", "kind", "detail", "prev_hash", "hash"],
        strict=True,
    )
    events.create_index(["message_id", "seq"])

    chain_head = db.create_table(
        "chain_head", {"id": int, "seq": int, "hash": str}, pk="id", not_null=["seq", "hash"], strict=True
    )
    chain_head.insert({"id": 1, "seq": 0, "hash": GENESIS})

    reports = db.create_table(
        "reports",
        {
            "seq": int,
            "message_id": str,
            "participant": str,
            "report_id": str,
            "message_type": str,
            "msg_id": str,
            "status": str,
            "created_at": str,
            "sha256": str,
            "xml": bytes,
        },
        pk="seq",
        foreign_keys=[("message_id", "messages", "id")],
        not_null=[
            "message_id",
            "participant",
            "report_id",
            "message_type",
            "msg_id",
            "status",
            "created_at",
            "sha256",
            "xml",
        ],
        strict=True,
    )
    reports.create_index(["participant", "seq"])
    reports.create_index(["message_id", "seq"])


def _v2(db: Database) -> None:
    """The outbox (one row per outbound part, written with the accepted message) and every delivery attempt."""
    db.execute(
        """CREATE TABLE outbox (
            id TEXT PRIMARY KEY,
            message_id TEXT NOT NULL REFERENCES messages(id),
            part INTEGER NOT NULL,
            connector TEXT NOT NULL,
            route TEXT NOT NULL,
            msg_id TEXT NOT NULL,
            tx_indexes TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at TEXT NOT NULL,
            deadline_at TEXT,
            possible_duplicate INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            last_error TEXT,
            receipt TEXT,
            answer TEXT,
            payload BLOB
        ) STRICT"""
    )
    # The delivery workers' query: due rows of one connector.
    db.execute("CREATE INDEX idx_outbox_due ON outbox (connector, state, next_at)")
    db.execute("CREATE INDEX idx_outbox_msg_id ON outbox (msg_id)")
    db.execute("CREATE INDEX idx_outbox_message ON outbox (message_id, part)")
    db.execute(
        "CREATE INDEX idx_outbox_deadline ON outbox (deadline_at) WHERE deadline_at IS NOT NULL AND answer IS NULL"
    )
    db.execute(
        """CREATE TABLE attempts (
            outbox_id TEXT NOT NULL REFERENCES outbox(id),
            attempt INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            payload BLOB NOT NULL,
            sha256 TEXT NOT NULL,
            key_label TEXT,
            possible_duplicate INTEGER NOT NULL,
            outcome TEXT,
            finished_at TEXT,
            detail TEXT,
            PRIMARY KEY (outbox_id, attempt)
        ) STRICT"""
    )


def _v3(db: Database) -> None:
    """refs becomes a WITHOUT ROWID table clustered on its primary key (message_id, kind, value).

    Why: as a rowid table each ref was written to three b-trees (the table, the primary key's index, the value
    index); clustered on the key it is two, and the key grows with the time-sortable message id, so a batch
    appends to the same pages. Measured (a scratch harness kept outside the repository, pipeline on one core):
    ~5 fewer WAL frames per commit of ~58 and ~15% less CPU per ref row. The rows are copied as they are: nothing a
    reader sees changes."""
    db.execute(
        """CREATE TABLE refs_v3 (
            message_id TEXT NOT NULL REFERENCES messages(id),
            kind TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (message_id, kind, value)
        ) STRICT, WITHOUT ROWID"""
    )
    db.execute("INSERT INTO refs_v3 (message_id, kind, value) SELECT message_id, kind, value FROM refs")
    db.execute("DROP TABLE refs")  # and its index
    db.execute("ALTER TABLE refs_v3 RENAME TO refs")
    # Same name and columns as v1's: resolve/search/related find messages by a reference's value.
    db.execute("CREATE INDEX idx_refs_value_kind ON refs (value, kind)")


# MIGRATIONS[i] takes the schema from user_version i to i + 1. Append; never edit a released step.
MIGRATIONS: tuple[Callable[[Database], None], ...] = (_v1, _v2, _v3)
SCHEMA_VERSION = len(MIGRATIONS)


def connect_writer(path: Path) -> sqlite3.Connection:
    """The one write connection: WAL, synchronous=FULL (a COMMIT returns after the WAL is fsynced), FKs on.

    isolation_level=None: the writer issues BEGIN/SAVEPOINT/COMMIT itself. check_same_thread=False: it is opened
    here and then used only by the writer thread.
    """
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            conn.close()
            raise JournalError(f"{path}: cannot switch the journal to WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        # Each operation of a batch runs in a SAVEPOINT, whose undo copies (the statement journal) went to a temp
        # file: one write per page an operation touched, ~40% of its INSERTs' cost here. They only serve a rollback
        # within the open transaction, never crash recovery (the WAL does that), so memory is as safe.
        conn.execute("PRAGMA temp_store = MEMORY")
    except sqlite3.Error as e:
        raise JournalError(f"{path}: cannot open the journal: {e}") from e
    return conn


def connect_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection (mode=ro: it cannot write even by mistake). check_same_thread=False only so that
    `Journal.close()` can close it from another thread; each reader is used by one thread."""
    try:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    except sqlite3.Error as e:
        raise JournalError(f"{path}: cannot open the journal for reading: {e}") from e
    return conn


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to SCHEMA_VERSION, each step in its own transaction. Raises JournalError if the file is
    newer than this code or a step fails (the failed step leaves nothing behind)."""
    db = Database(conn, execute_plugins=False)
    while True:
        try:
            # IMMEDIATE: two processes opening a new file at once cannot both run the same step.
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = user_version(conn)
                if version > SCHEMA_VERSION:
                    raise JournalError(
                        f"{path}: journal schema version {version} is newer than this switchd ({SCHEMA_VERSION})"
                    )
                if version == SCHEMA_VERSION:
                    conn.execute("COMMIT")
                    return
                MIGRATIONS[version](db)
                conn.execute(f"PRAGMA user_version = {version + 1}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise JournalError(f"{path}: cannot migrate the journal schema: {e}") from e


def check_version(conn: sqlite3.Connection, path: Path) -> None:
    """For read-only opens, which cannot migrate."""
    try:
        version = user_version(conn)
    except sqlite3.Error as e:
        raise JournalError(f"{path}: not a readable journal: {e}") from e
    if version != SCHEMA_VERSION:
        raise JournalError(
            f"{path}: journal schema version {version}, this switchd reads {SCHEMA_VERSION}"
            + ("; open it read-write once to migrate" if version < SCHEMA_VERSION else "")
        )
