"""Loads the message catalogue and compiles its XSDs from a schema folder (the IO half of switchd.iso)."""

from __future__ import annotations

from pathlib import Path

from switchd.iso.catalogue import Catalogue
from switchd.iso.validate import SchemaSet


def load_schemas(schema_dir: Path) -> tuple[Catalogue, SchemaSet]:
    """Read catalogue.toml and compile every XSD it lists. Raises ValueError/OSError naming the file."""
    catalogue_file = schema_dir / "catalogue.toml"
    catalogue = Catalogue.from_toml(catalogue_file.read_text())
    sources: dict[str, bytes] = {}
    for defn in catalogue:
        path = schema_dir / defn.schema_file
        try:
            sources[defn.id] = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"{path}: {exc.strerror}") from None
    return catalogue, SchemaSet.compile(catalogue, sources)
