"""TOML config -> frozen, typed config objects; every error names the file, the key and the reason.

The only module that reads config files. Relative paths in the file are resolved against the file's directory,
so the same file works from `make run` (repo root) and from systemd (any working directory).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import msgspec

from hsm.settings import HsmSettings, HsmSettingsError
from switchd.errors import ConfigError
from switchd.routing import EMPTY_ROUTES, Route, RouteTable

BIC_RE = re.compile(r"^[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?$")
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")


class _Paths(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    data_dir: str = "../var"
    journal: str = "journal.sqlite"  # relative to data_dir
    schemas: str | None = None  # default: the schemas/iso20022 folder shipped beside the package


class _Http(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    listen: str = "127.0.0.1:8020"
    max_body_bytes: int = 10 * 1024 * 1024
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None  # when set, clients may authenticate with a certificate signed by this CA
    request_timeout_s: float = 30.0
    max_connections: int = 512


class _Limits(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    drain_timeout_s: float = 20.0


class _Workers(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    intake: int | None = None  # processes that examine messages; None: cores - 1 (at least 1); 0: inline


class _Participant(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: str
    bics: list[str]
    token_sha256: str | None = None
    cert_sha256: str | None = None  # SHA-256 fingerprint (hex) of the participant's TLS client certificate
    # PEM certificates the participant signs its messages with (AppHdr/Sgntr). When set, every message it sends
    # must carry a valid signature by one of them; several allow its key rotation.
    signing_certs: list[str] = []


class _Switch(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    bic: str = "SWTCUS33XXX"  # the switch's own BIC: AppHdr/Fr of what it sends, InstgAgt of its reports


class _Route(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: str
    connector: str | None = None
    reject: str | None = None
    message_type: str | None = None
    instructed_agent: str | None = None
    creditor_agent: str | None = None
    agent: str | None = None
    clearing_member: str | None = None
    currencies: list[str] | None = None
    min_amount: str | float | int | None = None
    max_amount: str | float | int | None = None
    participant: str | None = None
    deadline_s: float | None = None


class _Connector(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: str
    kind: str  # simulated | http | directory
    participant: str | None = None  # the participant a bank's answers on this connector come in as
    max_attempts: int = 8
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 60.0
    attempt_timeout_s: float = 30.0
    concurrency: int = 8
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    options: dict[str, Any] = {}  # the kind's own settings (see adapters/registry.py)


class _File(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    paths: _Paths = _Paths()
    http: _Http = _Http()
    limits: _Limits = _Limits()
    workers: _Workers = _Workers()
    switch: _Switch = _Switch()
    participants: list[_Participant] = []
    connectors: list[_Connector] = []
    routes: list[_Route] = []
    hsm: HsmSettings | None = None  # [hsm]: signing through PKCS#11 (see hsm/settings.py)


@dataclass(frozen=True)
class Participant:
    name: str
    bics: frozenset[str]
    token_sha256: str | None
    cert_sha256: str | None
    signing_certs: tuple[bytes, ...] = ()  # DER; non-empty: its messages must be signed by one of them


@dataclass(frozen=True)
class HttpConfig:
    host: str
    port: int
    max_body_bytes: int
    tls_cert: Path | None
    tls_key: Path | None
    client_ca: Path | None
    request_timeout_s: float
    max_connections: int


@dataclass(frozen=True)
class ConnectorConfig:
    name: str
    kind: str
    participant: str | None
    max_attempts: int
    backoff_initial_s: float
    backoff_max_s: float
    attempt_timeout_s: float
    concurrency: int
    breaker_failures: int
    breaker_cooldown_s: float
    options: dict[str, Any]  # checked by the kind's builder (adapters/registry.py), paths already resolved
    key: str  # "connectors[i]": where it is in the file, for the builder's errors


CONNECTOR_KINDS = ("simulated", "http", "directory")


@dataclass(frozen=True)
class Config:
    source: Path
    data_dir: Path
    journal_path: Path
    schema_dir: Path
    http: HttpConfig
    drain_timeout_s: float
    intake_workers: int  # 0: examine on the trio thread
    participants: tuple[Participant, ...]
    switch_bic: str = "SWTCUS33XXX"
    connectors: tuple[ConnectorConfig, ...] = ()
    routes: RouteTable = EMPTY_ROUTES

    def participant(self, name: str) -> Participant | None:
        for p in self.participants:
            if p.name == name:
                return p
        return None

    hsm: HsmSettings | None = None  # resolved: absolute paths, defaults filled in

    def participant_by_token(self, token: str) -> Participant | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        for p in self.participants:
            # compare_digest: the lookup must not leak through timing how much of a hash matched
            if p.token_sha256 is not None and _compare(p.token_sha256, digest):
                return p
        return None

    def participant_by_cert(self, fingerprint: str) -> Participant | None:
        for p in self.participants:
            if p.cert_sha256 is not None and _compare(p.cert_sha256, fingerprint):
                return p
        return None


def _compare(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def default_schema_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "schemas" / "iso20022"


def load_config(path: str | Path) -> Config:
    """Read and check a config file. Raises ConfigError naming the file, the key and what is wrong."""
    source = Path(path)
    name = str(path)
    try:
        text = source.read_bytes()
    except OSError as exc:
        raise ConfigError(name, "-", f"cannot read: {exc.strerror}") from None
    try:
        tomllib.loads(text.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(name, "-", f"not valid TOML: {exc}") from None
    try:
        raw = msgspec.toml.decode(text, type=_File)
    except msgspec.ValidationError as exc:
        key, reason = _split_validation_error(str(exc))
        raise ConfigError(name, key, reason) from None
    return _build(source, raw)


def _split_validation_error(msg: str) -> tuple[str, str]:
    # msgspec says e.g. "Expected `int`, got `str` - at `$.http.max_body_bytes`"
    # or "Object contains unknown field `lisen` - at `$.http`"
    reason, _, where = msg.partition(" - at `")
    key = where.rstrip("`").removeprefix("$.").removeprefix("$") or "-"
    unknown = re.match(r"Object contains unknown field `([^`]+)`", reason)
    if unknown:
        key = f"{key}.{unknown.group(1)}" if key != "-" else unknown.group(1)
        reason = "unknown key"
    return key, reason


def _build(source: Path, raw: _File) -> Config:
    name = str(source)
    base = source.resolve().parent

    def resolve(p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() else (base / q).resolve()

    data_dir = resolve(raw.paths.data_dir)
    journal = Path(raw.paths.journal)
    journal_path = journal if journal.is_absolute() else data_dir / journal
    schema_dir = resolve(raw.paths.schemas) if raw.paths.schemas else default_schema_dir()

    host, sep, port_s = raw.http.listen.rpartition(":")
    if not sep or not port_s.isdigit() or not 0 <= int(port_s) <= 65535 or not host:
        raise ConfigError(name, "http.listen", f"expected HOST:PORT, got {raw.http.listen!r}")
    if raw.http.max_body_bytes < 1024:
        raise ConfigError(name, "http.max_body_bytes", "must be at least 1024")
    if (raw.http.tls_cert is None) != (raw.http.tls_key is None):
        raise ConfigError(name, "http.tls_cert", "tls_cert and tls_key go together")
    if raw.http.client_ca is not None and raw.http.tls_cert is None:
        raise ConfigError(name, "http.client_ca", "client certificates need TLS (tls_cert and tls_key)")
    # 0 would close every connection before its first request, and trio refuses a negative connection cap.
    _positive(name, "http.request_timeout_s", raw.http.request_timeout_s)
    if raw.http.max_connections < 1:
        raise ConfigError(name, "http.max_connections", "must be at least 1")
    _not_negative(name, "limits.drain_timeout_s", raw.limits.drain_timeout_s)
    http = HttpConfig(
        host=host.strip("[]"),
        port=int(port_s),
        max_body_bytes=raw.http.max_body_bytes,
        tls_cert=resolve(raw.http.tls_cert) if raw.http.tls_cert else None,
        tls_key=resolve(raw.http.tls_key) if raw.http.tls_key else None,
        client_ca=resolve(raw.http.client_ca) if raw.http.client_ca else None,
        request_timeout_s=raw.http.request_timeout_s,
        max_connections=raw.http.max_connections,
    )

    if raw.workers.intake is not None and not 0 <= raw.workers.intake <= 64:
        raise ConfigError(name, "workers.intake", "must be between 0 and 64")
    intake_workers = raw.workers.intake if raw.workers.intake is not None else max(1, (os.cpu_count() or 1) - 1)

    participants: list[Participant] = []
    seen: set[str] = set()
    # Authentication takes the first participant whose hash matches: a token or certificate shared by two
    # participants would silently log the second one in as the first.
    credentials: dict[tuple[str, str], str] = {}
    for i, p in enumerate(raw.participants):
        key = f"participants[{i}]"
        if p.name in seen:
            raise ConfigError(name, f"{key}.name", f"duplicate participant {p.name!r}")
        seen.add(p.name)
        if not p.bics:
            raise ConfigError(name, f"{key}.bics", "a participant needs at least one BIC")
        for j, bic in enumerate(p.bics):
            if not BIC_RE.match(bic):
                raise ConfigError(name, f"{key}.bics[{j}]", f"{bic!r} is not a BIC (ISO 9362)")
        for field_name in ("token_sha256", "cert_sha256"):
            value = getattr(p, field_name)
            if value is None:
                continue
            if not HEX64_RE.match(value):
                raise ConfigError(name, f"{key}.{field_name}", "expected 64 lowercase hex digits (a SHA-256)")
            other = credentials.setdefault((field_name, value), p.name)
            if other != p.name:
                raise ConfigError(
                    name, f"{key}.{field_name}", f"participant {other!r} has the same {field_name}: each must be unique"
                )
        answers_only = any(c.participant == p.name for c in raw.connectors)
        if p.token_sha256 is None and p.cert_sha256 is None and not answers_only:
            raise ConfigError(
                name, key, "a participant needs token_sha256 or cert_sha256 to authenticate (or a connector's answers)"
            )
        certs = tuple(
            _signing_cert(name, f"{key}.signing_certs[{j}]", resolve(c)) for j, c in enumerate(p.signing_certs)
        )
        participants.append(Participant(p.name, frozenset(p.bics), p.token_sha256, p.cert_sha256, certs))
    if not BIC_RE.match(raw.switch.bic):
        raise ConfigError(name, "switch.bic", f"{raw.switch.bic!r} is not a BIC (ISO 9362)")
    connectors = _connectors(name, raw, seen, resolve)
    routes = _routes(name, raw, {c.name for c in connectors})

    return Config(
        source=source.resolve(),
        data_dir=data_dir,
        journal_path=journal_path,
        schema_dir=schema_dir,
        http=http,
        drain_timeout_s=raw.limits.drain_timeout_s,
        intake_workers=intake_workers,
        participants=tuple(participants),
        hsm=_hsm(name, raw.hsm, base, data_dir),
        switch_bic=raw.switch.bic,
        connectors=connectors,
        routes=routes,
    )


def _connectors(name: str, raw: _File, participants: set[str], resolve: Any) -> tuple[ConnectorConfig, ...]:
    out: list[ConnectorConfig] = []
    seen: set[str] = set()
    for i, c in enumerate(raw.connectors):
        key = f"connectors[{i}]"
        if c.name in seen:
            raise ConfigError(name, f"{key}.name", f"duplicate connector {c.name!r}")
        seen.add(c.name)
        if c.kind not in CONNECTOR_KINDS:
            raise ConfigError(name, f"{key}.kind", f"expected one of {', '.join(CONNECTOR_KINDS)}, got {c.kind!r}")
        if c.participant is not None and c.participant not in participants:
            raise ConfigError(name, f"{key}.participant", f"no participant named {c.participant!r}")
        for field_name in ("max_attempts", "concurrency", "breaker_failures"):
            if getattr(c, field_name) < 1:
                raise ConfigError(name, f"{key}.{field_name}", "must be at least 1")
        for field_name in ("backoff_initial_s", "backoff_max_s", "attempt_timeout_s", "breaker_cooldown_s"):
            _positive(name, f"{key}.{field_name}", getattr(c, field_name))
        # Options that name files or folders are resolved against the config file's folder, like the rest.
        options = {
            k: (str(resolve(v)) if isinstance(v, str) and k in _PATH_OPTIONS else v) for k, v in c.options.items()
        }
        out.append(
            ConnectorConfig(
                name=c.name,
                kind=c.kind,
                participant=c.participant,
                max_attempts=c.max_attempts,
                backoff_initial_s=c.backoff_initial_s,
                backoff_max_s=c.backoff_max_s,
                attempt_timeout_s=c.attempt_timeout_s,
                concurrency=c.concurrency,
                breaker_failures=c.breaker_failures,
                breaker_cooldown_s=c.breaker_cooldown_s,
                options=options,
                key=key,
            )
        )
    return tuple(out)


_PATH_OPTIONS = frozenset({"directory", "receipts", "ca", "client_cert", "client_key"})
_REASON_RE = re.compile(r"^[A-Z0-9]{4}$")


def _routes(name: str, raw: _File, connectors: set[str]) -> RouteTable:
    routes: list[Route] = []
    seen: set[str] = set()
    for i, r in enumerate(raw.routes):
        key = f"routes[{i}]"
        if r.name in seen:
            raise ConfigError(name, f"{key}.name", f"duplicate route {r.name!r}")
        seen.add(r.name)
        if (r.connector is None) == (r.reject is None):
            raise ConfigError(name, key, "a route needs exactly one of connector or reject")
        if r.connector is not None and r.connector not in connectors:
            raise ConfigError(name, f"{key}.connector", f"no connector named {r.connector!r}")
        if r.reject is not None and not _REASON_RE.match(r.reject):
            raise ConfigError(name, f"{key}.reject", f"{r.reject!r} is not an ISO reason code (4 letters/digits)")
        if r.deadline_s is not None:
            _positive(name, f"{key}.deadline_s", r.deadline_s)
        if r.currencies is not None:
            _currencies(name, f"{key}.currencies", r.currencies)
        amounts = {}
        for field_name in ("min_amount", "max_amount"):
            value = getattr(r, field_name)
            if value is not None:
                try:
                    amount = Decimal(str(value))
                except InvalidOperation:
                    raise ConfigError(name, f"{key}.{field_name}", f"{value!r} is not a number") from None
                # NaN would make every comparison in routing raise; amounts in ISO 20022 are never negative.
                if not amount.is_finite() or amount < 0:
                    raise ConfigError(name, f"{key}.{field_name}", f"{value!r} is not an amount (a number >= 0)")
                amounts[field_name] = amount
        if "min_amount" in amounts and "max_amount" in amounts and amounts["min_amount"] > amounts["max_amount"]:
            raise ConfigError(name, f"{key}.min_amount", "is greater than max_amount: the route could never match")
        routes.append(
            Route(
                name=r.name,
                connector=r.connector,
                reject=r.reject,
                message_type=r.message_type,
                instructed_agent=r.instructed_agent,
                creditor_agent=r.creditor_agent,
                agent=r.agent,
                clearing_member=r.clearing_member,
                currencies=frozenset(r.currencies) if r.currencies is not None else None,
                min_amount=amounts.get("min_amount"),
                max_amount=amounts.get("max_amount"),
                participant=r.participant,
                deadline_s=r.deadline_s,
            )
        )
    return RouteTable(tuple(routes))


def _positive(name: str, key: str, value: float) -> None:
    # isfinite: NaN slips past every comparison and trio's timeouts refuse it; infinity would be no limit at all.
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(name, key, f"must be a number greater than 0, got {value:g}")


def _not_negative(name: str, key: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(name, key, f"must be a number of at least 0, got {value:g}")


def _currencies(name: str, key: str, codes: list[str]) -> None:
    """Route currencies are ISO 4217 codes: an unknown one ("EURO") would never match any transaction."""
    if not codes:
        raise ConfigError(name, key, "an empty list matches no transaction: leave the key out to match any currency")
    from switchd.iso.currencies import MINOR_UNITS  # here: only configs with route currencies need it

    for j, code in enumerate(codes):
        if code not in MINOR_UNITS:
            raise ConfigError(name, f"{key}[{j}]", f"{code!r} is not an ISO 4217 currency code")


def _signing_cert(name: str, key: str, path: Path) -> bytes:
    """A participant's signing certificate (PEM file), as DER: what the examiner checks signatures against."""
    # Imported here: cryptography's x509 costs ~50 ms, which every switchctl command would pay (issue 4).
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(name, key, f"cannot read {path}: {exc.strerror}") from None
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise ConfigError(name, key, f"{path} is not a PEM certificate: {exc}") from None
    return cert.public_bytes(serialization.Encoding.DER)


def _hsm(name: str, raw: HsmSettings | None, base: Path, data_dir: Path) -> HsmSettings | None:
    if raw is None:
        return None
    try:
        return raw.resolved(config_dir=base, data_dir=data_dir)
    except HsmSettingsError as exc:
        raise ConfigError(name, f"hsm.{exc.key}", exc.reason) from None


def config_as_dict(cfg: Config) -> dict[str, Any]:
    """A printable view for operators: no token hashes (they are not secrets, but they are not for screens)."""
    return {
        "source": str(cfg.source),
        "journal": str(cfg.journal_path),
        "http": f"{cfg.http.host}:{cfg.http.port}",
        "participants": [{"name": p.name, "bics": sorted(p.bics)} for p in cfg.participants],
    }
