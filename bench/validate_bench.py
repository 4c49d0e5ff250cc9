"""`switchctl validate` on a 5 MB invalid pain.001: whole-CLI wall time, beside its parts and a naive baseline.

    .venv/bin/python -m bench.validate_bench [--txs 9000] [--runs 3] [--no-naive]

Prints, in one run on the same generated file (pretty-printed pain.001.001.09, `--txs` transactions in PmtInf
blocks of 100, about 4 schema errors in every 7 transactions: bad BIC, too many decimals, bad currency code,
unknown element):

1. the CLI as a new process (`switchctl validate FILE`, what an operator types): wall time of each run, median;
   the same for a schema-valid file of the same size whose errors only the business rules find (bad IBANs)
2. the number of errors it listed, checked against the number injected (and each one's line and path)
3. a new process that only imports switchctl and compiles the schemas `validate` needs (pain.001) — the fixed
   cost — and one that imports and compiles all of them (`load_schemas`, what the daemon does at start-up),
   plus `load_schemas` alone in this process
4. the naive way: xmlschema `iter_errors` over the same file (the precise pure-Python validator)

The machine has 2 cores shared with other work: every figure is a median with its spread (min-max). Python's
bytecode cache is kept in a temporary folder (PYTHONPYCACHEPREFIX), warmed by one unmeasured run, as on an
installed system; `--cold` measures without it (every module compiled from source).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from lxml import etree

from tests.builders import ISO_NS, PmtInf, Tx, pain001
from tests.conftest import write_config

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO / "schemas" / "iso20022"
SWITCHCTL = REPO / ".venv" / "bin" / "switchctl"
PAIN_NS = ISO_NS + "pain.001.001.09"
BAD_IBAN = "GB00NWBK60161331926819"  # matches the schema's pattern, fails the check digits


@dataclass(frozen=True)
class Injected:
    """One schema error put into a generated file: where it is, and a value its error message quotes."""

    line: int
    path: str
    marker: str


def invalid_pain001(n_txs: int, per_pmt_inf: int = 100, app_hdr: bool = False) -> tuple[bytes, list[Injected]]:
    """A pretty-printed pain.001.001.09 of `n_txs` transactions with schema errors in 4 of every 7, one each.

    Transaction i (from 1) gets, by i % 7: 1 a bad creditor agent BIC `bad<i>`, 3 an unknown element
    `<Foo>i</Foo>` at its end, 4 an amount `<i>.123456` (6 decimals, 5 allowed), 6 a currency `X<i>`. One error
    per transaction: libxml2 stops checking an element's content after a misplaced child, so a second error in
    the same transaction could be hidden. With `app_hdr`, the file is an envelope whose AppHdr `Fr` BIC is bad.
    Returns the bytes and each injected error's line (found by searching the text) and expected path.
    """
    txs = []
    for i in range(1, n_txs + 1):
        tx = Tx(end_to_end_id=f"E2E-{i}", tx_id=None)
        kind = i % 7
        if kind == 1:
            tx = replace(tx, cdtr_agt_bic=f"bad{i}")
        elif kind == 4:
            tx = replace(tx, amount=f"{i}.123456")
        elif kind == 6:
            tx = replace(tx, ccy=f"X{i}")
        txs.append(tx)
    blocks = [txs[b : b + per_pmt_inf] for b in range(0, n_txs, per_pmt_inf)]
    pmt_infs = [PmtInf(pmt_inf_id=f"PI-{b}", txs=block) for b, block in enumerate(blocks)]
    raw = pain001(msg_id="PAIN-V", pmt_infs=pmt_infs, app_hdr=app_hdr, hdr_fr="bad-fr" if app_hdr else None)
    root = etree.fromstring(raw)
    for n, tx_el in enumerate(root.iter(f"{{{PAIN_NS}}}CdtTrfTxInf"), start=1):
        if n % 7 == 3:
            etree.SubElement(tx_el, f"{{{PAIN_NS}}}Foo").text = str(n)
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)

    lines = {line.strip(): number for number, line in enumerate(data.decode().splitlines(), start=1)}
    injected = []
    pmt_step = "PmtInf" if len(blocks) == 1 else "PmtInf[{}]"
    for i in range(1, n_txs + 1):
        block, k = divmod(i - 1, per_pmt_inf)
        tx_step = "CdtTrfTxInf" if len(blocks[block]) == 1 else f"CdtTrfTxInf[{k + 1}]"
        tx_path = f"/Document/CstmrCdtTrfInitn/{pmt_step.format(block + 1)}/{tx_step}"
        kind = i % 7
        if kind == 1:
            injected.append(Injected(lines[f"<BICFI>bad{i}</BICFI>"], f"{tx_path}/CdtrAgt/FinInstnId/BICFI", f"bad{i}"))
        elif kind == 3:
            injected.append(Injected(lines[f"<Foo>{i}</Foo>"], f"{tx_path}/Foo", "Foo"))
        elif kind == 4:
            line = lines[f'<InstdAmt Ccy="EUR">{i}.123456</InstdAmt>']
            injected.append(Injected(line, f"{tx_path}/Amt/InstdAmt", f"{i}.123456"))
        elif kind == 6:
            injected.append(
                Injected(lines[f'<InstdAmt Ccy="X{i}">100.00</InstdAmt>'], f"{tx_path}/Amt/InstdAmt", f"X{i}")
            )
    if app_hdr:
        injected.append(Injected(lines["<BICFI>bad-fr</BICFI>"], "/AppHdr/Fr/FIId/FinInstnId/BICFI", "bad-fr"))
    return data, injected


def rule_invalid_pain001(n_txs: int, per_pmt_inf: int = 100) -> bytes:
    """A schema-valid pain.001 of `n_txs` transactions whose every 7th creditor IBAN has wrong check digits (AC03):
    the business rules, not the schema, find its errors."""
    txs = [
        Tx(end_to_end_id=f"E2E-{i}", tx_id=None, creditor_iban=BAD_IBAN if i % 7 == 0 else Tx.creditor_iban)
        for i in range(1, n_txs + 1)
    ]
    blocks = [txs[b : b + per_pmt_inf] for b in range(0, n_txs, per_pmt_inf)]
    pmt_infs = [PmtInf(pmt_inf_id=f"PI-{b}", txs=block) for b, block in enumerate(blocks)]
    return pain001(msg_id="PAIN-R", pmt_infs=pmt_infs, pretty=True)


# -- measuring ------------------------------------------------------------------------------------------------------


def _env(cache: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if cache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env["PYTHONPYCACHEPREFIX"] = str(cache)
    return env


def _wall(cmd: Sequence[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    start = time.perf_counter()
    proc = subprocess.run(list(cmd), env=env, cwd=REPO, capture_output=True, check=False)
    return time.perf_counter() - start, proc


def _failing_runs(
    cmd: Sequence[str], env: dict[str, str], runs: int
) -> tuple[list[float], subprocess.CompletedProcess[bytes]]:
    """Wall time of each of `runs` runs of a `switchctl validate` that must find errors (exit 1), and the last run."""
    times = []
    for _ in range(runs):
        elapsed, proc = _wall(cmd, env)
        if proc.returncode != 1:
            raise SystemExit(f"switchctl validate exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
        times.append(elapsed)
    return times, proc


def _spread(values: Sequence[float]) -> str:
    return f"median {statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f}, n={len(values)})"


_FIXED_COST = """
import sys
from pathlib import Path
import switchd.ctl.main
from switchd.ctl.validate_files import on_demand_schemas
from switchd.schemas import load_schemas
schemas = Path(sys.argv[2])
if sys.argv[1] == "needed":
    catalogue, schema_set = on_demand_schemas(schemas)
    schema_set.schemas["pain.001.001.09"]
else:
    load_schemas(schemas)
"""


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--txs", type=int, default=9000, help="transactions in the file (9000: about 5 MB)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cold", action="store_true", help="no bytecode cache: every module compiled from source")
    ap.add_argument("--no-naive", action="store_true", help="skip the xmlschema baseline (slow)")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    with tempfile.TemporaryDirectory(prefix="validate-bench-") as tmp:
        work = Path(tmp)
        data, injected = invalid_pain001(args.txs)
        big = work / "big.xml"
        big.write_bytes(data)
        config = write_config(work)
        env = _env(None if args.cold else work / "pycache")
        print(f"file: pain.001.001.09, {args.txs} transactions, {len(data) / 1e6:.2f} MB, {len(injected)} injected")
        print(f"bytecode cache: {'none (--cold)' if args.cold else 'warm (PYTHONPYCACHEPREFIX)'}")

        cli = [str(SWITCHCTL), "--config", str(config), "validate", str(big)]
        cli_json = [str(SWITCHCTL), "--config", str(config), "--json", "validate", str(big)]
        _wall(cli, env)  # warm the bytecode cache and the page cache; not measured
        times, _ = _failing_runs(cli, env, args.runs)
        print(f"1. switchctl validate (new process, text output):  {_spread(times)}")

        rules = work / "rules.xml"
        rules.write_bytes(rule_invalid_pain001(args.txs))
        rules_cli = [str(SWITCHCTL), "--config", str(config), "validate", str(rules)]
        rule_times, proc = _failing_runs(rules_cli, env, args.runs)
        rule_errors = len(proc.stdout.splitlines()) - 1
        print(
            f"   same size, schema-valid, {rule_errors} business-rule errors (AC03 IBANs, "
            f"{rules.stat().st_size / 1e6:.2f} MB):  {_spread(rule_times)}"
        )

        _, proc = _wall(cli_json, env)
        errors = json.loads(proc.stdout)[0]["errors"]
        found = sorted((e.get("line"), e.get("path")) for e in errors)
        expected = sorted((i.line, i.path) for i in injected)
        verdict = "each at its injected line and path" if found == expected else "MISMATCH with the injected errors"
        print(f"2. errors listed: {len(errors)} of {len(injected)} injected, {verdict}")

        py = str(REPO / ".venv" / "bin" / "python")
        labels = {
            "needed": "3. new process, switchctl imports + the pain.001 schema:",
            "all": "   new process, switchctl imports + all schemas (load_schemas):",
        }
        for what, label in labels.items():
            cmd = [py, "-c", _FIXED_COST, what, str(SCHEMAS)]
            fixed = []
            for run in range(max(args.runs, 5) + 1):
                elapsed, proc = _wall(cmd, env)
                if proc.returncode != 0:
                    raise SystemExit(f"{label} failed: {proc.stderr.decode()[-2000:]}")
                if run:  # the first run warms the caches
                    fixed.append(elapsed)
            print(f"{label}  {_spread(fixed)}")
        from switchd.schemas import load_schemas

        in_process = []
        for _ in range(5):
            start = time.perf_counter()
            load_schemas(SCHEMAS)
            in_process.append(time.perf_counter() - start)
        print(f"   load_schemas in this process (22 XSDs compiled):  {_spread(in_process)}")

        if not args.no_naive:
            import xmlschema

            start = time.perf_counter()
            schema = xmlschema.XMLSchema(str(SCHEMAS / "pain.001.001.09.xsd"), allow="local", defuse="always")
            compiled = time.perf_counter()
            naive = list(schema.iter_errors(str(big)))
            done = time.perf_counter()
            with_line = sum(1 for e in naive if e.sourceline)
            print(
                f"4. naive: xmlschema iter_errors, in process: {done - start:.3f} s "
                f"(compile {compiled - start:.3f} s), {len(naive)} errors, {with_line} with a line number"
            )


if __name__ == "__main__":
    main()
