"""`switchd`: the daemon's command line (`switchd run --config FILE`, `switchd check-config FILE`)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator

import trio

from switchd.config import Config, load_config
from switchd.errors import ConfigError, JournalError, SwitchdError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchd", description="ISO 20022 message-switch gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("--config", required=True, help="path to switchd.toml")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    check = sub.add_parser(
        "check-config",
        help="load a config file, build what start-up builds from it (schemas, TLS, connectors) and report the "
        "first error",
    )
    check.add_argument("config")
    args = parser.parse_args(argv)

    try:
        cfg = load_config(args.config)
        if args.command == "check-config":
            check_startup(cfg)
    except ConfigError as exc:
        print(f"switchd: config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(f"{args.config}: ok ({len(cfg.participants)} participants)")
        return 0
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Imported here, not at the top: worker processes are spawned and re-import this module as their __main__;
    # the daemon's whole import tree there would cost each of them ~0.5 s of start-up for nothing.
    from switchd.daemon import Daemon, run_until_signalled

    daemon = Daemon(cfg)
    try:
        trio.run(run_until_signalled, daemon)
    except (SwitchdError, OSError, ValueError, BaseExceptionGroup) as exc:
        # Once ready, an error is a bug: let its traceback out. Before, it is the operator's to fix: one line.
        status = None if daemon.state.ready else _startup_failure(exc)
        if status is None:
            raise
        return status
    return 0


def check_startup(cfg: Config) -> None:
    """Build from `cfg` what the daemon builds at start-up before it listens, and drop it again: the schemas, the
    TLS context and the connectors, each checked by its own code. Raises ConfigError naming the file and key.

    Opens no socket, journal or HSM session and writes nothing."""
    # Imported here for the reason given in main(): this module is every spawned worker's __main__.
    from adapters.http.server import tls_context
    from adapters.registry import build_connectors, close_all
    from switchd.schemas import load_schemas

    name = str(cfg.source)
    try:
        catalogue, schemas = load_schemas(cfg.schema_dir)
    except (OSError, ValueError) as exc:
        raise ConfigError(name, "paths.schemas", f"{cfg.schema_dir}: {exc}") from None
    try:
        tls_context(cfg.http)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ConfigError(name, "http.tls_cert", f"cannot load the certificate or key: {exc}") from None

    async def refuse(_: bytes) -> int:
        raise AssertionError("check-config never runs a connector")

    built = build_connectors(cfg, lambda c: refuse, catalogue, schemas)
    trio.run(close_all, built)  # the HTTP connector's client holds a connection pool until closed


def _startup_failure(exc: BaseException) -> int | None:
    """The exit status for an error that stopped start-up (trio wraps it in exception groups), after saying what
    it was in one line; None when it is not one we can name that way."""
    leaves = list(_leaves(exc))
    config = next((e for e in leaves if isinstance(e, ConfigError)), None)
    if config is not None:
        # Other leaves are what stopping half-started parts raised on the way out: consequences, not causes.
        print(f"switchd: config error: {config}", file=sys.stderr)
        return 2
    if leaves and all(isinstance(e, (OSError, ValueError, JournalError)) for e in leaves):
        logging.getLogger("switchd").error("cannot start: %s", "; ".join(str(e) for e in leaves))
        return 1
    return None


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


if __name__ == "__main__":
    sys.exit(main())
