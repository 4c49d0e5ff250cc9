"""Builds the configured connectors (`[[connectors]]` in switchd.toml) from their kind and options.

Lives in adapters/ because it imports every connector; the core only sees the Connector protocol. Each kind's
options are checked here, and a wrong one is a ConfigError naming the file, the key and what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from switchd.config import Config, ConnectorConfig
from switchd.connectors import Connector, InboundSink
from switchd.errors import ConfigError
from switchd.iso.catalogue import Catalogue
from switchd.iso.validate import SchemaSet

SinkFactory = Callable[[ConnectorConfig], InboundSink]


@dataclass
class Built:
    """The connectors by name, and the background tasks some of them need (started with nursery.start)."""

    connectors: dict[str, Connector] = field(default_factory=dict)
    tasks: list[Callable[..., Any]] = field(default_factory=list)


def _opt(cfg: Config, c: ConnectorConfig, allowed: set[str]) -> dict[str, Any]:
    unknown = sorted(set(c.options) - allowed)
    if unknown:
        raise ConfigError(str(cfg.source), f"{c.key}.options.{unknown[0]}", f"unknown option for kind {c.kind!r}")
    return c.options


def build_connectors(cfg: Config, sink_for: SinkFactory, catalogue: Catalogue, schemas: SchemaSet) -> Built:
    built = Built()
    for c in cfg.connectors:
        try:
            if c.kind == "simulated":
                conn, task = _simulated(cfg, c, sink_for(c), catalogue, schemas)
                built.tasks.append(task)
            elif c.kind == "directory":
                conn = _directory(cfg, c)
            elif c.kind == "http":
                conn = _http(cfg, c)
            else:  # config.py admits only the kinds above
                raise ConfigError(str(cfg.source), f"{c.key}.kind", f"unknown kind {c.kind!r}")
        except (ValueError, TypeError, OSError) as e:  # OSError: a TLS file or folder the connector cannot read
            raise ConfigError(str(cfg.source), f"{c.key}.options", str(e)) from None
        built.connectors[c.name] = conn
    return built


def _simulated(
    cfg: Config, c: ConnectorConfig, sink: InboundSink, catalogue: Catalogue, schemas: SchemaSet
) -> tuple[Connector, Callable[..., Any]]:
    from adapters.local.simbank import AnswerRule, FailRule, SimBank, SimBankSettings

    o = _opt(cfg, c, {"bics", "receipts", "status", "delay_ms", "rules", "failures"})
    bics = o.get("bics")
    if bics is None:
        p = cfg.participant(c.participant) if c.participant else None
        if p is None:
            raise ConfigError(str(cfg.source), f"{c.key}.options.bics", "give bics, or a participant that has them")
        bics = sorted(p.bics)
    receipts = Path(o.get("receipts") or (cfg.data_dir / f"{c.name}.receipts.jsonl"))
    settings = SimBankSettings(
        bics=tuple(bics),
        receipts=receipts,
        status=o.get("status", "ACSC"),
        delay_ms=int(o.get("delay_ms", 0)),
        rules=tuple(AnswerRule(**r) for r in o.get("rules", [])),
        failures=tuple(FailRule(**f) for f in o.get("failures", [])),
        switch_bic=cfg.switch_bic,
    )
    bank = SimBank(c.name, settings, sink, catalogue, schemas=schemas, max_message_bytes=cfg.http.max_body_bytes)
    return bank, bank.run


def _directory(cfg: Config, c: ConnectorConfig) -> Connector:
    from adapters.local.directory import DirectoryConnector, DirectorySettings

    o = _opt(cfg, c, {"directory"})
    if "directory" not in o:
        raise ConfigError(str(cfg.source), f"{c.key}.options.directory", "the folder to write into is required")
    return DirectoryConnector(c.name, DirectorySettings(Path(o["directory"])))


def _http(cfg: Config, c: ConnectorConfig) -> Connector:
    from adapters.http.connector import HttpConnector, HttpConnectorSettings

    o = _opt(cfg, c, {"url", "ca", "client_cert", "client_key", "timeout_s"})
    if "url" not in o:
        raise ConfigError(str(cfg.source), f"{c.key}.options.url", "the bank's URL is required")
    settings = HttpConnectorSettings(
        url=o["url"],
        ca=Path(o["ca"]) if o.get("ca") else None,
        client_cert=Path(o["client_cert"]) if o.get("client_cert") else None,
        client_key=Path(o["client_key"]) if o.get("client_key") else None,
        timeout_s=float(o.get("timeout_s", c.attempt_timeout_s)),
    )
    return HttpConnector(c.name, settings)


async def close_all(built: Built) -> None:
    with trio.CancelScope(shield=True):
        for conn in built.connectors.values():
            await conn.aclose()
