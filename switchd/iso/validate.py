"""XSD validation with lxml: schemas compiled once at start-up, each error with its line, named path and reason.

Schema files are read by the caller (no IO here beyond what `SchemaSet.compile` is handed); compilation refuses
to fetch anything: ISO 20022 schemas are single files, so any import or include is an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from lxml import etree

from switchd.errors import Finding
from switchd.iso.catalogue import Catalogue, MessageDef

_NS_IN_MESSAGE = re.compile(r"\{(?:urn|https?):[^}]*\}")  # namespaces, not regex quantifiers like {1,15}
_STEP = re.compile(r"^\*(?:\[(\d+)\])?$")
MAX_FINDINGS = 100  # an invalid 5 MB file can hold thousands of errors; the report needs the first ones


class _RefuseAll(etree.Resolver):  # type: ignore[misc]  # lxml-stubs are not installed
    def resolve(self, system_url: str, public_id: str, context: object) -> None:
        raise ValueError(f"schema tried to load {system_url!r}: imports and includes are refused")


def _schema_parser() -> etree.XMLParser:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    parser.resolvers.add(_RefuseAll())
    return parser


@dataclass(frozen=True)
class SchemaSet:
    """Compiled XSDs by message id. lxml's XMLSchema objects are safe to share for validation."""

    schemas: Mapping[str, etree.XMLSchema]

    @classmethod
    def compile(cls, catalogue: Catalogue, sources: Mapping[str, bytes]) -> SchemaSet:
        """Compile the XSD of every catalogue entry; `sources` maps message id -> XSD bytes."""
        compiled: dict[str, etree.XMLSchema] = {}
        for defn in catalogue:
            try:
                xsd = sources[defn.id]
            except KeyError:
                raise ValueError(f"no schema for {defn.id}") from None
            tree = etree.fromstring(xsd, _schema_parser()).getroottree()
            target = tree.getroot().get("targetNamespace")
            if target != defn.namespace:
                raise ValueError(f"schema for {defn.id} has targetNamespace {target!r}, expected {defn.namespace}")
            compiled[defn.id] = etree.XMLSchema(tree)
        return cls(compiled)

    def validate(self, defn: MessageDef, element: etree._Element) -> list[Finding]:
        """Validate `element` (a Document or an AppHdr) against its schema; [] when valid."""
        schema = self.schemas[defn.id]
        if schema.validate(element):
            return []
        findings: list[Finding] = []
        for err in schema.error_log:
            if len(findings) >= MAX_FINDINGS:
                break
            findings.append(
                Finding(
                    code="FF01",
                    detail=_NS_IN_MESSAGE.sub("", err.message),
                    path=named_path(element, err.path),
                    line=err.line or None,
                )
            )
        return findings


def named_path(top: etree._Element, libxml_path: str | None) -> str | None:
    """Turn libxml2's '/*/*[2]/*' (default-namespace documents) into '/Document/GrpHdr/CreDtTm'.

    libxml2 counts element siblings; we name each step by its local name, with an index only where the
    name repeats among siblings, which is how people read ISO paths.
    """
    if not libxml_path:
        return None
    steps = libxml_path.strip("/").split("/")
    node = top
    names = [etree.QName(top).localname]
    for step in steps[1:]:
        m = _STEP.match(step)
        if m is None:
            return libxml_path  # a prefixed or attribute step: keep libxml2's own form
        index = int(m.group(1) or 1)
        children = [c for c in node if isinstance(c.tag, str)]
        if index > len(children):
            return libxml_path
        node = children[index - 1]
        name = etree.QName(node).localname
        same = [c for c in children if c.tag == node.tag]
        names.append(f"{name}[{same.index(node) + 1}]" if len(same) > 1 else name)
    return "/" + "/".join(names)
