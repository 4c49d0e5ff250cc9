"""Cost of the per-message business checks: extract_refs, check_rules and check_sender_authority.

    .venv/bin/python -m bench.rules_bench [--passes N] [--baseline REV]

They run on every inbound message on the daemon's single trio thread, after the hardened parse and the XSD
validation. Three message shapes, each parsed once with `parse_message` (as the daemon does) and then examined
over and over:

    pacs008-1     pacs.008.001.08 + AppHdr, 1 transaction (the common case)
    pacs008-100   pacs.008.001.08 + AppHdr, 100 transactions
    pain001-3x10  pain.001.001.09 + AppHdr, 3 PmtInf x 10 transactions

Each figure is µs per message: the median over `--passes` passes of (time for the whole set of messages) / (number
of messages). The sender owns the instructing / debtor agent BIC, so the checks find nothing: the hot path.

`--baseline REV` also loads `switchd/iso/refs.py` and `switchd/iso/rules.py` as they are at git revision REV and
times them interleaved with the working tree's (the machine is noisy: only same-run figures compare), after
checking that both give equal refs and equal findings on every benchmark message.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from lxml import etree

import switchd.iso.refs as current_refs
import switchd.iso.rules as current_rules
from switchd.iso.catalogue import MessageDef
from switchd.iso.xml import ParsedMessage, parse_message
from tests.builders import PmtInf, Tx, make_txs, message_def, pacs008, pain001

REPO = Path(__file__).resolve().parent.parent
SENDER = frozenset({"AAAAUS33XXX"})  # the builders' instructing agent / debtor agent


@dataclass
class Shape:
    name: str
    defn: MessageDef
    messages: list[ParsedMessage]


def _shapes() -> list[Shape]:
    pacs, pain = message_def("pacs.008.001.08"), message_def("pain.001.001.09")

    def parse(raws: Sequence[bytes]) -> list[ParsedMessage]:
        return [parse_message(raw, max_bytes=10**7) for raw in raws]

    one = [pacs008(msg_id=f"M-{i}", txs=[Tx(end_to_end_id=f"E-{i}")]) for i in range(300)]
    hundred = [
        pacs008(msg_id=f"M-{i}", txs=[Tx(end_to_end_id=f"E-{i}-{j}", tx_id=f"T-{i}-{j}") for j in range(100)])
        for i in range(10)
    ]
    bulk = [
        pain001(
            msg_id=f"P-{i}",
            pmt_infs=[PmtInf(pmt_inf_id=f"PI-{i}-{p}", txs=make_txs(10, end_to_end_id=f"E-{i}-{p}")) for p in range(3)],
            app_hdr=True,
        )
        for i in range(30)
    ]
    return [
        Shape("pacs008-1", pacs, parse(one)),
        Shape("pacs008-100", pacs, parse(hundred)),
        Shape("pain001-3x10", pain, parse(bulk)),
    ]


def _load_baseline(rev: str) -> tuple[ModuleType, ModuleType]:
    """refs.py and rules.py as of `rev`, as private modules; rules binds to the baseline refs."""

    def load(name: str, rel: str) -> ModuleType:
        source = subprocess.run(
            ["git", "show", f"{rev}:{rel}"], cwd=REPO, check=True, capture_output=True, text=True
        ).stdout
        spec = importlib.util.spec_from_loader(name, loader=None)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while building the class
        exec(compile(source, f"{rev}:{rel}", "exec"), module.__dict__)
        return module

    refs = load("_baseline_refs", "switchd/iso/refs.py")
    # baseline rules does `from switchd.iso.refs import ...`: point that name at the baseline refs meanwhile
    saved = sys.modules["switchd.iso.refs"]
    sys.modules["switchd.iso.refs"] = refs
    try:
        rules = load("_baseline_rules", "switchd/iso/rules.py")
    finally:
        sys.modules["switchd.iso.refs"] = saved
    return refs, rules


def _as_plain(refs: Any) -> Any:
    """A refs object as nested tuples of (field, value), comparable across the two implementations."""
    names = getattr(refs, "__slots__", None) or getattr(refs, "_fields", None)
    if names is None:
        return refs
    if isinstance(names, str):
        names = (names,)
    out = []
    for name in names:
        value = getattr(refs, name)
        if isinstance(value, tuple):
            value = tuple(_as_plain(v) for v in value)
        out.append((name, value))
    return tuple(out)


def _same_results(shape: Shape, a: tuple[ModuleType, ModuleType], b: tuple[ModuleType, ModuleType]) -> None:
    for msg in shape.messages:
        results = []
        for refs_mod, rules_mod in (a, b):
            refs = refs_mod.extract_refs(shape.defn, msg.document)
            results.append(
                (
                    _as_plain(refs),
                    rules_mod.check_rules(shape.defn, msg.document, refs, msg.app_hdr),
                    rules_mod.check_sender_authority(shape.defn, msg.document, refs, msg.app_hdr, SENDER),
                )
            )
        if results[0] != results[1]:
            raise SystemExit(f"{shape.name}: baseline and working tree disagree:\n{results[0]}\n{results[1]}")


def _timers(shape: Shape, refs_mod: ModuleType, rules_mod: ModuleType) -> dict[str, Callable[[], int]]:
    """One callable per function, each running it over every message of `shape` and returning the ns spent."""
    defn, msgs = shape.defn, shape.messages
    extract, rules, authority = refs_mod.extract_refs, rules_mod.check_rules, rules_mod.check_sender_authority
    prepared = [(m.document, m.app_hdr, extract(defn, m.document)) for m in msgs]

    def t_extract() -> int:
        start = time.perf_counter_ns()
        for m in msgs:
            extract(defn, m.document)
        return time.perf_counter_ns() - start

    def t_rules() -> int:
        start = time.perf_counter_ns()
        for document, app_hdr, refs in prepared:
            rules(defn, document, refs, app_hdr)
        return time.perf_counter_ns() - start

    def t_authority() -> int:
        start = time.perf_counter_ns()
        for document, app_hdr, refs in prepared:
            authority(defn, document, refs, app_hdr, SENDER)
        return time.perf_counter_ns() - start

    return {"extract_refs": t_extract, "check_rules": t_rules, "check_sender_authority": t_authority}


def _parse_cost(shape: Shape) -> int:
    raws = [etree.tostring(m.root) for m in shape.messages]
    start = time.perf_counter_ns()
    for raw in raws:
        parse_message(raw, max_bytes=10**7)
    return time.perf_counter_ns() - start


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--passes", type=int, default=15)
    ap.add_argument("--baseline", metavar="REV", help="also time refs.py/rules.py as of this git revision")
    args = ap.parse_args(argv)

    impls: dict[str, tuple[ModuleType, ModuleType]] = {"now": (current_refs, current_rules)}
    if args.baseline:
        impls = {"base": _load_baseline(args.baseline), **impls}
    shapes = _shapes()
    if args.baseline:
        for shape in shapes:
            _same_results(shape, impls["base"], impls["now"])
        print(f"baseline {args.baseline} and working tree agree on every benchmark message")

    gc.collect()
    gc.freeze()  # the parsed trees are long-lived: keep the collector from rescanning them mid-pass
    header = f"{'shape':<14}{'impl':<6}{'extract_refs':>14}{'check_rules':>13}{'authority':>11}{'total':>9}"
    print(f"µs per message, median of {args.passes} passes (parse_message alone for scale)")
    print(header)
    for shape in shapes:
        n = len(shape.messages)
        timers = {impl: _timers(shape, *mods) for impl, mods in impls.items()}
        samples: dict[tuple[str, str], list[float]] = {}
        parse: list[float] = []
        for _ in range(args.passes):
            for impl, fns in timers.items():  # interleaved, so drift on a noisy machine hits both alike
                for fn_name, fn in fns.items():
                    samples.setdefault((impl, fn_name), []).append(fn() / n / 1000)
            parse.append(_parse_cost(shape) / n / 1000)
        for impl in timers:
            meds = [statistics.median(samples[(impl, f)]) for f in timers[impl]]
            cols = "".join(f"{m:>{w}.1f}" for m, w in zip(meds, (14, 13, 11), strict=True))
            print(f"{shape.name:<14}{impl:<6}{cols}{sum(meds):>9.1f}")
        print(f"{shape.name:<14}{'parse':<6}{statistics.median(parse):>14.1f}")


if __name__ == "__main__":
    main()
