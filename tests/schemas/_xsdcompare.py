"""Structural descriptions of XML schemas, read from XSD files or from xsdata model sources, and their comparison.

Both sides become the same small tree (element particles, model groups, resolved simple-type facets, attributes,
wildcards), walked from the root element; `compare` lists every difference with the path where it shows.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xmlschema
from xmlschema.validators import XsdAnyElement, XsdAtomicBuiltin, XsdElement

XS = "{http://www.w3.org/2001/XMLSchema}"
UNKNOWN = "?"  # an occurrence or group kind the source cannot tell


@dataclass(frozen=True)
class Simple:
    """A simple type resolved down to its built-in base; facets as sorted (name, value) pairs."""

    base: str  # built-in local name: string, decimal, date, ...
    facets: tuple[tuple[str, str], ...] = ()
    enumeration: tuple[str, ...] = ()
    name: str | None = None


@dataclass(frozen=True)
class Attr:
    name: str
    required: bool
    type: Simple


@dataclass(eq=False)
class Particle:
    """An element (`name` set) or a wildcard (`name` None)."""

    name: str | None
    namespace: str  # element namespace, or the wildcard's namespace constraint
    min_occurs: int | str  # int, or UNKNOWN
    max_occurs: int | str | None  # None: unbounded; or UNKNOWN
    type: Simple | Complex | None = None
    process_contents: str = UNKNOWN


@dataclass(eq=False)
class Complex:
    name: str
    group: str = UNKNOWN  # "sequence", "choice", "simple" (simpleContent), or UNKNOWN
    particles: list[Particle] = field(default_factory=list)
    attributes: list[Attr] = field(default_factory=list)
    content: Simple | None = None


# --------------------------------------------------------------------------------------------------- XSD files


def load_xsd(path: Path | str, strict: bool = False) -> xmlschema.XMLSchema:
    """Load a local schema without letting it fetch anything. Not `strict`: the XSD itself is not checked against
    the meta-schema (6x faster; components are built all the same)."""
    return xmlschema.XMLSchema(str(path), allow="local", defuse="always", validation="strict" if strict else "skip")


class XsdReader:
    """Describes components of a loaded schema (xmlschema's component model)."""

    def __init__(self, schema: xmlschema.XMLSchema) -> None:
        self.schema = schema
        self._cache: dict[int, Complex] = {}

    def root(self, name: str) -> Particle:
        return self.particle(self.schema.elements[name])

    def named_types(self) -> dict[str, Simple | Complex]:
        """Every global complex type and enumeration, by ISO name."""
        out: dict[str, Simple | Complex] = {}
        for name, t in self.schema.types.items():
            if t.is_complex():
                out[name] = self.complex_(t)
            elif getattr(t, "enumeration", None):
                out[name] = self.simple(t)
        return out

    @staticmethod
    def simple(st: Any) -> Simple:
        facets: list[tuple[str, str]] = []
        enumeration: tuple[str, ...] = ()
        seen: set[str] = set()
        name = None if isinstance(st, XsdAtomicBuiltin) else st.local_name
        while not isinstance(st, XsdAtomicBuiltin):
            for key, facet in st.facets.items():
                local = key.replace(XS, "")
                if local == "enumeration":
                    enumeration = enumeration or tuple(str(v) for v in facet.enumeration)
                elif local == "pattern":
                    facets += [("pattern", p) for p in facet.regexps]
                elif local not in seen:  # the most derived value wins
                    seen.add(local)
                    facets.append((local, str(facet.value)))
            st = st.base_type
        return Simple(str(st.local_name), tuple(sorted(facets)), enumeration, name)

    def complex_(self, ct: Any) -> Complex:
        known = self._cache.get(id(ct))
        if known is not None:
            return known
        out = Complex(name=str(ct.local_name))
        self._cache[id(ct)] = out
        for attr in ct.attributes.values():
            out.attributes.append(Attr(str(attr.local_name), attr.use == "required", self.simple(attr.type)))
        out.attributes.sort(key=lambda a: a.name)
        if ct.has_simple_content():
            out.group = "simple"
            out.content = self.simple(ct.content)
            return out
        out.group = str(ct.content.model)
        out.particles = [self.particle(item) for item in ct.content]
        return out

    def particle(self, item: Any) -> Particle:
        if isinstance(item, XsdElement):
            ns = item.name[1:].partition("}")[0] if item.name.startswith("{") else ""
            type_ = self.simple(item.type) if item.type.is_simple() else self.complex_(item.type)
            return Particle(item.local_name, ns, item.min_occurs, item.max_occurs, type_)
        if isinstance(item, XsdAnyElement):
            ns = " ".join(sorted(item.namespace))
            return Particle(None, ns, item.min_occurs, item.max_occurs, None, item.process_contents)
        raise AssertionError(f"unexpected particle {item!r} (nested model groups are not used by ISO 20022)")


# ----------------------------------------------------------------------------------- xsdata model source files

BUILTINS = {
    "str": "string",
    "Decimal": "decimal",
    "bool": "boolean",
    "int": "integer",
    "XmlDate": "date",
    "XmlDateTime": "dateTime",
    "XmlTime": "time",
    "bytes": "base64Binary",
}
FACETS = {
    "length": "length",
    "min_length": "minLength",
    "max_length": "maxLength",
    "total_digits": "totalDigits",
    "fraction_digits": "fractionDigits",
    "min_inclusive": "minInclusive",
    "max_inclusive": "maxInclusive",
    "min_exclusive": "minExclusive",
    "max_exclusive": "maxExclusive",
}


class ModelSourceReader:
    """Describes xsdata dataclasses by reading their source with `ast` (never importing the package).

    What xsdata cannot carry is left UNKNOWN: sequence vs choice, the minOccurs of choice members (ISO names choice
    components `...Choice`; their members all look optional) and the minOccurs of wildcards (always optional in
    xsdata output).
    """

    def __init__(self, models: Path, enums: Path, class_suffix: str = "") -> None:
        self.suffix = class_suffix
        self.classes = {n.name: n for n in ast.parse(models.read_text()).body if isinstance(n, ast.ClassDef)}
        self.enums: dict[str, tuple[str, ...]] = {}
        for src in (models, enums):
            for node in ast.parse(src.read_text()).body:
                if isinstance(node, ast.ClassDef) and any(_name(b) == "Enum" for b in node.bases):
                    self.enums[node.name] = tuple(
                        str(ast.literal_eval(s.value)) for s in node.body if isinstance(s, ast.Assign)
                    )
        self._cache: dict[str, Complex] = {}

    def _class(self, name: str) -> ast.ClassDef | None:
        return self.classes.get(name) or self.classes.get(name + self.suffix)

    def root(self, class_name: str, namespace: str) -> Particle:
        """The root element of class `class_name`: an element named after the class, typed by its data."""
        node = self.classes[class_name]
        own_fields = [s for s in node.body if isinstance(s, ast.AnnAssign)]
        base_names = [_name(b) for b in node.bases if self._class(_name(b)) is not None]
        type_node = self._class(base_names[0]) if not own_fields and base_names else node
        assert type_node is not None
        element = class_name.removesuffix(self.suffix)
        return Particle(element, namespace, 1, 1, self.complex_(type_node.name))

    def complex_(self, class_name: str) -> Complex:
        known = self._cache.get(class_name)
        if known is not None:
            return known
        iso = class_name.removesuffix(self.suffix)
        out = Complex(name=iso)
        self._cache[class_name] = out
        choice = iso.endswith("Choice")
        node = self.classes[class_name]
        for stmt in node.body:
            if not isinstance(stmt, ast.AnnAssign):
                continue
            call = stmt.value
            assert isinstance(call, ast.Call), ast.dump(stmt)
            meta: dict[str, Any] = {}
            has_default = False
            for kw in call.keywords:
                if kw.arg == "metadata":
                    meta = ast.literal_eval(kw.value)
                elif kw.arg in ("default", "default_factory"):
                    has_default = True
            many, _optional, inner = _annotation(stmt.annotation)
            kind = meta.get("type", "Text")
            if kind == "Text":
                out.group = "simple"
                out.content = self._simple(inner, meta)
            elif kind == "Attribute":
                out.attributes.append(Attr(meta["name"], bool(meta.get("required")), self._simple(inner, meta)))
            elif kind == "Wildcard":
                out.particles.append(Particle(None, meta["namespace"], UNKNOWN, 1))
            elif kind == "Element":
                if many:
                    min_occurs: int | str = int(meta.get("min_occurs", 0))
                    max_occurs: int | str | None = meta.get("max_occurs")
                else:
                    min_occurs = 1 if meta.get("required") or not has_default else 0
                    max_occurs = 1
                if choice:
                    min_occurs = UNKNOWN
                target = self._class(inner)
                type_: Simple | Complex = (
                    self.complex_(target.name)
                    if target is not None and inner not in self.enums
                    else self._simple(inner, meta)
                )
                out.particles.append(Particle(meta["name"], meta.get("namespace", ""), min_occurs, max_occurs, type_))
            else:
                raise AssertionError(f"{class_name}: unknown field kind {kind}")
        out.attributes.sort(key=lambda a: a.name)
        return out

    def _simple(self, inner: str, meta: dict[str, Any]) -> Simple:
        if inner in self.enums:
            return Simple("string", (), self.enums[inner], inner)
        facets = [(xsd, str(meta[key])) for key, xsd in FACETS.items() if key in meta]
        if "pattern" in meta:
            facets.append(("pattern", meta["pattern"]))
        known = {"name", "type", "namespace", "required", "min_occurs", "max_occurs", "format", "pattern", *FACETS}
        unknown = set(meta) - known
        assert not unknown, f"unknown metadata {unknown}"
        return Simple(BUILTINS[inner], tuple(sorted(facets)))


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    raise AssertionError(ast.dump(node))


def _annotation(node: ast.expr) -> tuple[bool, bool, str]:
    """(is a list, is Optional, inner type name) of `X`, `Optional[X]`, `None | X`, `list[X]`."""
    if isinstance(node, ast.Subscript):
        outer = _name(node.value)
        if outer == "Optional":
            return False, True, _name(node.slice)
        if outer in ("list", "List"):
            return True, False, _name(node.slice)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        sides = [s for s in (node.left, node.right) if not (isinstance(s, ast.Constant) and s.value is None)]
        assert len(sides) == 1, ast.dump(node)
        return False, True, _name(sides[0])
    return False, False, _name(node)


# ------------------------------------------------------------------------------------------------- comparison


def _occurs(value: int | str | None) -> str:
    return "unbounded" if value is None else str(value)


def _simple_text(s: Simple) -> str:
    parts = [s.base, *(f"{k}={v}" for k, v in s.facets)]
    if s.enumeration:
        parts.append("enum=" + ",".join(s.enumeration))
    return " ".join(parts)


class Comparison:
    """Compares our description (left) with a reference (right); `differences` lists what does not match.

    `namespaces=False` ignores element namespaces (to compare a component shared by messages of different
    namespaces). Complex type names and enumeration names are compared too (ours keep the ISO names).
    """

    def __init__(self, namespaces: bool = True) -> None:
        self.namespaces = namespaces
        self.differences: list[str] = []
        self.paths_checked = 0
        self._done: set[tuple[int, int]] = set()

    def diff(self, path: str, what: str, ours: object, ref: object) -> None:
        self.differences.append(f"{path}: {what}: ours={ours} reference={ref}")

    def particle(self, path: str, a: Particle, b: Particle) -> None:
        self.paths_checked += 1
        if (a.name is None) != (b.name is None):
            self.diff(path, "particle kind", a.name or "xs:any", b.name or "xs:any")
            return
        if (self.namespaces or a.name is None) and a.namespace != b.namespace:
            self.diff(path, "namespace", a.namespace, b.namespace)
        if b.min_occurs != UNKNOWN and a.min_occurs != b.min_occurs:
            self.diff(path, "minOccurs", a.min_occurs, b.min_occurs)
        if b.max_occurs != UNKNOWN and a.max_occurs != b.max_occurs:
            self.diff(path, "maxOccurs", _occurs(a.max_occurs), _occurs(b.max_occurs))
        if a.name is None:
            if b.process_contents != UNKNOWN and a.process_contents != b.process_contents:
                self.diff(path, "processContents", a.process_contents, b.process_contents)
            return
        self.type(path, a.type, b.type)

    def type(self, path: str, a: Simple | Complex | None, b: Simple | Complex | None) -> None:
        if isinstance(a, Simple) and isinstance(b, Simple):
            self.simple(path, a, b)
        elif isinstance(a, Complex) and isinstance(b, Complex):
            self.complex_(path, a, b)
        else:
            self.diff(path, "type kind", type(a).__name__, type(b).__name__)

    def simple(self, path: str, a: Simple, b: Simple) -> None:
        if (a.base, a.facets, a.enumeration) != (b.base, b.facets, b.enumeration):
            self.diff(path, "simple type", _simple_text(a), _simple_text(b))
        if a.enumeration and b.enumeration and a.name != b.name:
            self.diff(path, "enumeration name", a.name, b.name)

    def complex_(self, path: str, a: Complex, b: Complex) -> None:
        key = (id(a), id(b))
        if key in self._done:  # same pair of types already compared (at its first path)
            return
        self._done.add(key)
        if a.name != b.name:
            self.diff(path, "complexType name", a.name, b.name)
        if b.group != UNKNOWN and a.group != b.group:
            self.diff(path, "model group", a.group, b.group)
        if a.content is not None or b.content is not None:
            if a.content is None or b.content is None:
                self.diff(path, "simple content", a.content, b.content)
            else:
                self.simple(path, a.content, b.content)
        a_attrs = {x.name: x for x in a.attributes}
        b_attrs = {x.name: x for x in b.attributes}
        if a_attrs.keys() != b_attrs.keys():
            self.diff(path, "attributes", sorted(a_attrs), sorted(b_attrs))
        for name in sorted(a_attrs.keys() & b_attrs.keys()):
            if a_attrs[name].required != b_attrs[name].required:
                self.diff(f"{path}/@{name}", "required", a_attrs[name].required, b_attrs[name].required)
            self.simple(f"{path}/@{name}", a_attrs[name].type, b_attrs[name].type)
        a_names = [p.name or "xs:any" for p in a.particles]
        b_names = [p.name or "xs:any" for p in b.particles]
        if a_names != b_names:
            self.diff(path, "children (in order)", a_names, b_names)
        b_by_name = {p.name or "xs:any": p for p in b.particles}
        for p in a.particles:
            label = p.name or "xs:any"
            if label in b_by_name:
                self.particle(f"{path}/{label}", p, b_by_name[label])


def compare(ours: Particle, reference: Particle, namespaces: bool = True) -> Comparison:
    """Walk both trees from their roots; the result lists every difference with its path."""
    cmp = Comparison(namespaces)
    cmp.particle("/" + (ours.name or ""), ours, reference)
    return cmp


# -------------------------------------------------------------------------------------------- instance builder

# One valid example per pattern met in the schemas (a new pattern fails loudly: add an example here).
PATTERN_EXAMPLES = {
    "[A-Z]{3,3}": "EUR",
    "[A-Z]{2,2}": "DE",
    "[A-Z0-9]{4,4}[A-Z]{2,2}[A-Z0-9]{2,2}([A-Z0-9]{3,3}){0,1}": "DEUTDEFFXXX",
    "[A-Z]{2,2}[0-9]{2,2}[a-zA-Z0-9]{1,30}": "DE89370400440532013000",
    "[A-Z0-9]{18,18}[0-9]{2,2}": "5299000J2N45DDNE4Y28",
    r"\+[0-9]{1,3}-[0-9()+\-]{1,30}": "+49-69910000",
    "[0-9]{1,15}": "2",
    "[0-9]{2}": "10",
    "[a-zA-Z0-9]{4}": "AB12",
    "[a-f0-9]{8}-[a-f0-9]{4}-4[a-f0-9]{3}-[89ab][a-f0-9]{3}-[a-f0-9]{12}": "eb6305c9-1f7f-49de-aed0-16487c27b42d",
}
PLAIN_VALUES = {
    "date": "2026-11-23",
    "dateTime": "2026-11-23T09:30:00",
    "time": "09:30:00",
    "boolean": "true",
    "base64Binary": "c3dpdGNoZA==",
}
WILDCARD_CONTENT = {
    "##any": "{urn:example:switchd:supplementary}Note",
    "http://www.w3.org/2000/09/xmldsig#": "{http://www.w3.org/2000/09/xmldsig#}KeyName",
}


@dataclass
class Built:
    """A generated instance and, for each element in it, the particle it was built from."""

    root: Any  # lxml element
    particles: dict[Any, Particle] = field(default_factory=dict)


def example_value(simple: Simple, full: bool) -> str:
    """A value valid for the type: the longest allowed (full) or the shortest (minimal)."""
    facets = dict(simple.facets)
    if simple.enumeration:
        return simple.enumeration[-1 if full else 0]
    if "pattern" in facets:
        try:
            return PATTERN_EXAMPLES[facets["pattern"]]
        except KeyError:
            raise AssertionError(f"no example value for pattern {facets['pattern']!r}") from None
    if simple.base == "decimal":
        fraction = int(facets.get("fractionDigits", "0"))
        if not full or fraction == 0:
            return "1"
        total = int(facets.get("totalDigits", "18"))
        return "1" * (total - fraction) + "." + "5" * fraction
    if simple.base == "string":
        low = int(facets.get("minLength", "1"))
        high = int(facets.get("maxLength", "35"))
        return "x" * (high if full else low)
    return PLAIN_VALUES[simple.base]


def build_instance(root: Particle, full: bool, choice_index: int = 0) -> Built:
    """A valid instance: mandatory elements only (`full=False`), or every optional element too, repeatable ones
    twice (`full=True`). In a choice, member `choice_index` (modulo the member count) is taken."""
    from lxml import etree

    built = Built(root=None)

    def fill(element: Any, particle: Particle) -> None:
        built.particles[element] = particle
        t = particle.type
        if isinstance(t, Simple):
            element.text = example_value(t, full)
            return
        assert isinstance(t, Complex), particle
        for attr in t.attributes:
            if attr.required or full:
                element.set(attr.name, example_value(attr.type, full))
        if t.content is not None:
            element.text = example_value(t.content, full)
            return
        members = t.particles
        if t.group == "choice":
            members = [members[choice_index % len(members)]]
        for child in members:
            if t.group == "choice":
                count = 1
            elif full:
                count = max(child.min_occurs if isinstance(child.min_occurs, int) else 1, 1)
                if child.max_occurs is None or (isinstance(child.max_occurs, int) and child.max_occurs > 1):
                    count = max(count, 2)
            else:
                count = child.min_occurs if isinstance(child.min_occurs, int) else 1
            for _ in range(count):
                if child.name is None:
                    tag = WILDCARD_CONTENT[child.namespace]
                    any_el = etree.SubElement(element, tag)
                    any_el.text = "lax content"
                    built.particles[any_el] = child
                else:
                    fill(etree.SubElement(element, f"{{{child.namespace}}}{child.name}"), child)

    assert root.name is not None
    built.root = etree.Element(f"{{{root.namespace}}}{root.name}", nsmap={None: root.namespace})
    fill(built.root, root)
    return built
