"""Structure fingerprint of an XSD: SHA-256 of a canonical text rendering of the `_xsdcompare` tree from the root.

The rendering holds everything `_xsdcompare.compare` looks at, so two schemas with one fingerprint are ones `compare`
finds nothing between (and the other way round where `compare` finds nothing, as tests/schemas/test_fingerprint.py
checks on every official XSD the PyPI packages ship). An official XSD that cannot be shipped with the tests is thus
checked through its recorded fingerprint (official_fingerprints.toml).
CLI: `python -m tests.schemas.fingerprint FILE.xsd...` prints `<fingerprint> <file sha256> <file>` per file;
`--render` prints the rendering itself (diff two renderings to see where two schemas part).

Rules of the rendering (changing any of them changes every fingerprint: bump FORMAT and recompute the recorded ones
from the official files, as the header of official_fingerprints.toml says):
- one line per particle, in document order, keyed by its path (`/Document/FIToFICstmrCdtTrf/GrpHdr/MsgId`): element
  or wildcard, namespace, minOccurs..maxOccurs, and for a wildcard its processContents;
- a complex type is rendered once, where the walk first meets it, with an ordinal (`#7`); later uses name the
  ordinal, as `compare` compares each pair of types once;
- a complex type shows its name, model group, attributes (sorted; use and resolved type) and simple content;
- a simple type shows its built-in base, its facets (sorted, the most derived value of each) and its enumeration in
  order with the enumeration's name - the type name of other simple types is left out, as `compare` leaves it out.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import sys
import tomllib
from pathlib import Path
from typing import Any

from . import _xsdcompare as xc

FORMAT = "switchd-structure-fingerprint/1"
RECORDED = Path(__file__).with_name("official_fingerprints.toml")


def _occurs(value: int | str | None) -> str:
    return "unbounded" if value is None else str(value)


def _simple(s: xc.Simple) -> str:
    parts = [s.base, *(f"{name}={value}" for name, value in s.facets)]
    if s.enumeration:
        parts.append(f"enum {s.name}=" + ",".join(s.enumeration))
    return " ".join(parts)


def render(root: xc.Particle) -> str:
    """The canonical text of a structure tree (see the module docstring)."""
    lines = [FORMAT]
    ordinals: dict[int, int] = {}

    def particle(path: str, p: xc.Particle) -> None:
        if p.name is None:
            lines.append(
                f"{path} any ns={p.namespace} {_occurs(p.min_occurs)}..{_occurs(p.max_occurs)} {p.process_contents}"
            )
            return
        lines.append(f"{path} element ns={p.namespace} {_occurs(p.min_occurs)}..{_occurs(p.max_occurs)}")
        t = p.type
        if isinstance(t, xc.Simple):
            lines.append(f"{path} : simple {_simple(t)}")
            return
        assert isinstance(t, xc.Complex), f"{path}: no type"
        known = ordinals.get(id(t))
        if known is not None:
            lines.append(f"{path} : complex #{known} {t.name}")
            return
        ordinals[id(t)] = len(ordinals) + 1
        lines.append(f"{path} : complex #{ordinals[id(t)]} {t.name} {t.group}")
        for attr in sorted(t.attributes, key=lambda a: a.name):
            use = "required" if attr.required else "optional"
            lines.append(f"{path}/@{attr.name} {use} : simple {_simple(attr.type)}")
        if t.content is not None:
            lines.append(f"{path} : content {_simple(t.content)}")
        for child in t.particles:
            particle(f"{path}/{child.name or 'xs:any'}", child)

    particle("/" + (root.name or ""), root)
    return "\n".join(lines) + "\n"


def fingerprint(root: xc.Particle) -> str:
    return hashlib.sha256(render(root).encode("utf-8")).hexdigest()


def schema_root(path: Path | str) -> xc.Particle:
    """The tree of a single-root schema (Document or AppHdr), read without fetching anything."""
    schema = xc.load_xsd(path)
    (name,) = list(schema.elements)  # ISO 20022 message schemas declare one global element
    return xc.XsdReader(schema).root(name)


def file_fingerprint(path: Path | str) -> str:
    return fingerprint(schema_root(path))


@functools.cache
def recorded() -> dict[str, dict[str, Any]]:
    """The recorded official references, by message version (official_fingerprints.toml); checks the format."""
    with RECORDED.open("rb") as f:
        data = tomllib.load(f)
    if data["format"] != FORMAT:
        raise ValueError(f"{RECORDED.name} holds {data['format']} fingerprints, this code makes {FORMAT}")
    return {entry["message"]: entry for entry in data["reference"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.schemas.fingerprint", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE.xsd")
    parser.add_argument("--render", action="store_true", help="print the canonical rendering instead of its hash")
    args = parser.parse_args(argv)
    for path in args.files:
        if args.render:
            sys.stdout.write(render(schema_root(path)))
        else:
            file_sha = hashlib.sha256(path.read_bytes()).hexdigest()
            print(f"{file_fingerprint(path)} {file_sha} {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
