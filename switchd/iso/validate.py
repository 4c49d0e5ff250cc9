"""XSD validation with lxml: schemas compiled once at start-up, each error with its line, named path and reason.

Schema files are read by the caller (no IO here beyond what `SchemaSet.compile` is handed); compilation refuses
to fetch anything: ISO 20022 schemas are single files, so any import or include is an error. libxml2 reports every
error it meets, except inside an element whose content is already out of order (it skips the rest of that element).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from lxml import etree

from switchd.errors import Finding
from switchd.iso.catalogue import Catalogue, MessageDef

_NS_IN_MESSAGE = re.compile(r"\{(?:urn|https?):[^}]*\}")  # namespaces, not regex quantifiers like {1,15}
_STEP = re.compile(r"^\*(?:\[(\d+)\])?$")
_NAMED_STEP = r"/[A-Za-z_][\w.-]*:[A-Za-z_][\w.-]*(?:\[\d+\])?"
_PREFIXED_PATH = re.compile(rf"^(?:{_NAMED_STEP})+$")  # '/p:Document/p:GrpHdr[2]': every step prefixed
_PREFIX = re.compile(r"/[A-Za-z_][\w.-]*:")
# The daemon's default: an invalid 5 MB file can hold thousands of errors, and a status report (and the HTTP answer)
# listing all of them helps nobody; `switchctl validate` asks for every one (limit=None).
MAX_FINDINGS = 100


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
            compiled[defn.id] = compile_schema(defn, xsd)
        return cls(compiled)

    @classmethod
    def on_demand(cls, catalogue: Catalogue, source: Callable[[MessageDef], bytes]) -> SchemaSet:
        """A set that compiles each schema when a message of its type is first validated (`source` reads the XSD).

        For one-shot tools (`switchctl validate`) that meet one or two message types: compiling all of them is
        most of their start-up. The daemon compiles every schema at start-up (`compile`), so that a broken schema
        stops it there and no message waits for a compilation.
        """
        return cls(_OnDemand(catalogue, source))

    def validate(self, defn: MessageDef, element: etree._Element, *, limit: int | None = MAX_FINDINGS) -> list[Finding]:
        """Validate `element` (a Document or an AppHdr) against its schema; [] when valid.

        At most `limit` errors are listed (None: every one); when more were found, one last finding says how many
        were left out, so a truncated list never passes for a complete one.
        """
        schema = self.schemas[defn.id]
        if schema.validate(element):
            return []
        log = schema.error_log  # lxml copies the log on each access: take it once
        errors = list(log) if limit is None else list(log)[:limit]
        namer = PathNamer(element)
        findings = [
            Finding(
                code="FF01",
                detail=_NS_IN_MESSAGE.sub("", err.message),
                path=namer.name(err.path),
                line=err.line or None,
            )
            for err in errors
        ]
        left_out = len(log) - len(errors)
        if left_out > 0:
            findings.append(
                Finding(code="FF01", detail=f"{left_out} more schema error(s) not listed; the first {len(errors)} are")
            )
        return findings

    def message_findings(
        self,
        catalogue: Catalogue,
        defn: MessageDef,
        document: etree._Element,
        app_hdr: etree._Element | None,
        app_hdr_namespace: str | None,
        *,
        limit: int | None = MAX_FINDINGS,
    ) -> list[Finding]:
        """Schema findings of a whole message: its Document, and its AppHdr against the head.001 version it names."""
        findings = self.validate(defn, document, limit=limit)
        if app_hdr is not None:
            hdr_def = catalogue.header(app_hdr_namespace or "")
            if hdr_def is None:
                findings.append(Finding("FF01", f"unsupported AppHdr version {app_hdr_namespace!r}", path="/AppHdr"))
            else:
                findings += self.validate(hdr_def, app_hdr, limit=limit)
        return findings


class PathNamer:
    """Names libxml2 error paths ('/*/*[2]/*') of one validated element as ISO paths ('/Document/GrpHdr/MsgId').

    One per validation: it remembers every resolved path prefix and each parent's child steps, so naming
    thousands of errors in a bulk file costs one pass over each parent's children rather than one per error.
    """

    def __init__(self, top: etree._Element) -> None:
        self._top = top
        # libxml2 path prefix -> (element, its ISO path), or None when the prefix cannot be resolved
        self._resolved: dict[str, tuple[etree._Element, str] | None] = {}
        self._steps: dict[etree._Element, tuple[list[etree._Element], list[str]]] = {}  # children, their tags

    def name(self, libxml_path: str | None) -> str | None:
        """The ISO path of `libxml_path`, or libxml2's own form when a step cannot be resolved (kept, not lost)."""
        if not libxml_path:
            return None
        if _PREFIXED_PATH.match(libxml_path):
            # Prefixed documents: libxml2 already names every step, indexed only where the name repeats.
            return _PREFIX.sub("/", libxml_path)
        found = self._resolve(libxml_path.rstrip("/"))
        return found[1] if found is not None else libxml_path

    def _resolve(self, path: str) -> tuple[etree._Element, str] | None:
        if path in self._resolved:
            return self._resolved[path]
        cut = path.rfind("/")
        if cut <= 0:  # the first step is the validated element itself, whatever libxml2 calls it
            top = self._top
            found: tuple[etree._Element, str] | None = (top, "/" + etree.QName(top).localname)
        else:
            parent = self._resolve(path[:cut])
            found = None if parent is None else self._child(parent, path[cut + 1 :])
        self._resolved[path] = found
        return found

    def _child(self, parent: tuple[etree._Element, str], step: str) -> tuple[etree._Element, str] | None:
        node, node_path = parent
        m = _STEP.match(step)
        if m is None:
            return None  # a prefixed, unqualified or attribute step: keep libxml2's own form
        if m.group(1) is None:
            # libxml2 leaves the index out of a '*' step only for an only element child: no siblings to list.
            only = next(node.iterchildren(etree.Element), None)
            return None if only is None else (only, f"{node_path}/{only.tag.rpartition('}')[2]}")
        cached = self._steps.get(node)
        if cached is None:
            # Element proxies and tag strings are what costs here (~2 us each): make them once per parent, and
            # name only the children errors point at.
            children = list(node.iterchildren(etree.Element))
            cached = self._steps[node] = (children, [c.tag for c in children])
        children, tags = cached
        index = int(m.group(1)) - 1  # libxml2 counts every element sibling for '*' steps
        if index >= len(children):
            return None
        tag = tags[index]
        name = tag.rpartition("}")[2]
        if tags.count(tag) > 1:  # the index only where the name repeats among siblings
            name = f"{name}[{tags[:index].count(tag) + 1}]"
        return children[index], f"{node_path}/{name}"


def compile_schema(defn: MessageDef, xsd: bytes) -> etree.XMLSchema:
    """Compile one message's XSD, refusing any import or include; its targetNamespace must be the message's."""
    tree = etree.fromstring(xsd, _schema_parser()).getroottree()
    target = tree.getroot().get("targetNamespace")
    if target != defn.namespace:
        raise ValueError(f"schema for {defn.id} has targetNamespace {target!r}, expected {defn.namespace}")
    return etree.XMLSchema(tree)


class _OnDemand(Mapping[str, etree.XMLSchema]):
    """Message id -> compiled XSD, each compiled on first use (see `SchemaSet.on_demand`). Not for threads."""

    def __init__(self, catalogue: Catalogue, source: Callable[[MessageDef], bytes]) -> None:
        self._defs = {d.id: d for d in catalogue}
        self._source = source
        self._compiled: dict[str, etree.XMLSchema] = {}

    def __getitem__(self, message_id: str) -> etree.XMLSchema:
        schema = self._compiled.get(message_id)
        if schema is None:
            defn = self._defs[message_id]
            schema = self._compiled[message_id] = compile_schema(defn, self._source(defn))
        return schema

    def __iter__(self) -> Iterator[str]:
        return iter(self._defs)

    def __len__(self) -> int:
        return len(self._defs)
