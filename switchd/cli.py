"""`switchd`: the daemon's command line (`switchd run --config FILE`, `switchd check-config FILE`)."""

from __future__ import annotations

import argparse
import logging
import sys

import trio

from switchd.config import load_config
from switchd.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchd", description="ISO 20022 message-switch gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("--config", required=True, help="path to switchd.toml")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    check = sub.add_parser("check-config", help="load a config file and report the first error")
    check.add_argument("config")
    args = parser.parse_args(argv)

    try:
        cfg = load_config(args.config)
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

    try:
        trio.run(run_until_signalled, Daemon(cfg))
    except (OSError, ValueError) as exc:
        logging.getLogger("switchd").error("cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
