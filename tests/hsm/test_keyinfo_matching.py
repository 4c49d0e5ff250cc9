"""Which trusted certificate an inbound signature's KeyInfo means: issuer names as other tools write them (hsm.dn),
and a KeyInfo that names no certificate while the sender has several."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from lxml import etree

from hsm import dn
from hsm.errors import SignatureInvalid
from hsm.xmldsig import DS_NS, SigningKey, sign_envelope, verify_envelope
from tests.builders import pacs008
from tests.hsm.conftest import SoftwareKey, make_software_key

DS = f"{{{DS_NS}}}"
SIGNER_CN = "bank-a signer"  # make_software_key names it CN=bank-a signer, O=X: RFC 4514 "O=X,CN=bank-a signer"


def _c14n(el: etree._Element) -> bytes:
    out: bytes = etree.tostring(el, method="c14n", exclusive=True, with_comments=False)
    return out


def with_key_info(signed: bytes, key: SoftwareKey, fill: Callable[[etree._Element], None]) -> bytes:
    """`signed` with its KeyInfo emptied and filled by `fill`, its KeyInfo digest and SignatureValue made again
    (lxml's exclusive C14N, hashlib and the software key: what any other signing tool would do)."""
    root = etree.fromstring(signed)
    signature = root.find(f".//{DS}Signature")
    assert signature is not None
    key_info = signature.find(DS + "KeyInfo")
    assert key_info is not None
    for child in list(key_info):
        key_info.remove(child)
    fill(key_info)
    ref = next(r for r in signature.iter(DS + "Reference") if (r.get("URI") or "").startswith("#"))
    digest = ref.find(DS + "DigestValue")
    assert digest is not None
    digest.text = base64.b64encode(hashlib.sha256(_c14n(key_info)).digest()).decode()
    signed_info, value = signature.find(DS + "SignedInfo"), signature.find(DS + "SignatureValue")
    assert signed_info is not None and value is not None
    value.text = base64.b64encode(key.sign_raw(_c14n(signed_info))).decode()
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


def issuer_serial(issuer: str, serial: int) -> Callable[[etree._Element], None]:
    def fill(key_info: etree._Element) -> None:
        pair = etree.SubElement(etree.SubElement(key_info, DS + "X509Data"), DS + "X509IssuerSerial")
        etree.SubElement(pair, DS + "X509IssuerName").text = issuer
        etree.SubElement(pair, DS + "X509SerialNumber").text = str(serial)

    return fill


def key_name_only(key_info: etree._Element) -> None:
    etree.SubElement(key_info, DS + "KeyName").text = "bank-a 2026"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SoftwareKey]:
    """The sender's key and two other trusted keys (another name; an EC key), and one nobody trusts."""
    d = tmp_path_factory.mktemp("keyinfo")
    return {
        "signer": make_software_key(d, "rsa", SIGNER_CN),
        "other": make_software_key(d, "rsa", "bank-a old signer"),
        "ec": make_software_key(d, "ec", "bank-a ec signer"),
        "stranger": make_software_key(d, "rsa", "Somebody Else"),
    }


def signed_by(key: SoftwareKey, fill: Callable[[etree._Element], None], msg_id: str = "KI-1") -> bytes:
    return with_key_info(sign_envelope(pacs008(msg_id=msg_id), SigningKey.from_cert(key.cert), key.sign_raw), key, fill)


@pytest.mark.parametrize(
    "issuer",
    [
        "O=X,CN=bank-a signer",
        "O=X, CN=bank-a signer",
        "O = X , CN = bank-a signer",  # spaces around '=' and ','
        "o=X,cn=bank-a signer",  # attribute types in lower case
        "2.5.4.10=X,OID.2.5.4.3=bank-a signer",  # types as OIDs
        "O=x,CN=BANK-A  SIGNER",  # values compare case-ignore, inner runs of spaces as one (X.520)
        "O=X,CN=bank-a\\20signer",  # a hex-escaped character
        'O="X";CN=bank-a signer',  # RFC 2253's quoted value and ';' separator
        "O=#0C0158,CN=bank-a signer",  # a DER UTF8String value
    ],
)
def test_issuer_written_another_way_names_the_same_certificate(keys: dict[str, SoftwareKey], issuer: str) -> None:
    signer = keys["signer"]
    assert signer.cert.issuer.rfc4514_string() == "O=X,CN=bank-a signer"
    data = signed_by(signer, issuer_serial(issuer, signer.cert.serial_number))
    verified = verify_envelope(data, [keys["other"].cert, signer.cert, keys["ec"].cert])
    assert verified.cert == signer.cert


@pytest.mark.parametrize(
    "issuer",
    [
        "O=Y,CN=bank-a signer",  # another organisation
        "O=X,CN=bank-a signer2",  # another common name
        "CN=bank-a signer,O=X",  # the RDNs in the other order: another name
        "C=US,O=X,CN=bank-a signer",  # one RDN more
        "O=X+CN=bank-a signer",  # one multi-valued RDN instead of two
        "O=X,CN=bank-a signer,",  # not a name at all
        "O=X,XX=bank-a signer",  # an attribute type nobody defines
    ],
)
def test_a_different_issuer_name_is_not_trusted(keys: dict[str, SoftwareKey], issuer: str) -> None:
    signer = keys["signer"]
    data = signed_by(signer, issuer_serial(issuer, signer.cert.serial_number))
    with pytest.raises(SignatureInvalid) as exc:
        verify_envelope(data, [keys["other"].cert, signer.cert])
    assert (exc.value.reason, exc.value.reference) == ("untrusted", "KeyInfo")


def test_the_right_issuer_with_another_certificates_serial_is_not_trusted(keys: dict[str, SoftwareKey]) -> None:
    signer, other = keys["signer"], keys["other"]
    data = signed_by(signer, issuer_serial(signer.cert.issuer.rfc4514_string(), other.cert.serial_number))
    with pytest.raises(SignatureInvalid) as exc:
        verify_envelope(data, [other.cert, signer.cert])
    assert exc.value.reason == "untrusted"


@pytest.mark.parametrize("name", ["signer", "ec"])
def test_key_info_naming_no_certificate_verifies_with_whichever_trusted_key_signed(
    keys: dict[str, SoftwareKey], name: str
) -> None:
    key = keys[name]
    data = signed_by(key, key_name_only)
    trusted = [keys["other"].cert, keys["signer"].cert, keys["ec"].cert]
    verified = verify_envelope(data, trusted, at=datetime.now(UTC))
    assert verified.cert == key.cert
    assert verified.algorithm == ("ecdsa-sha256" if name == "ec" else "rsa-sha256")
    # Still a signature over the content: a changed Document fails, naming it.
    with pytest.raises(SignatureInvalid) as exc:
        verify_envelope(data.replace(b"Bob Creditor", b"Bob Creditos"), trusted)
    assert exc.value.reference == "Document"


def test_key_info_naming_no_certificate_signed_by_an_untrusted_key_fails(keys: dict[str, SoftwareKey]) -> None:
    data = signed_by(keys["stranger"], key_name_only)
    with pytest.raises(SignatureInvalid) as exc:
        verify_envelope(data, [keys["other"].cert, keys["signer"].cert, keys["ec"].cert])
    assert exc.value.reference == "SignatureValue" and "none of the 3 trusted" in str(exc.value)


def test_key_info_naming_no_certificate_signed_by_an_expired_trusted_key_is_expired(
    keys: dict[str, SoftwareKey], tmp_path: Path
) -> None:
    expired = make_software_key(tmp_path, "rsa", "bank-a 2025", valid_days=(-30, -1))
    data = signed_by(expired, key_name_only)
    trusted = [keys["signer"].cert, expired.cert]
    with pytest.raises(SignatureInvalid) as exc:
        verify_envelope(data, trusted, at=datetime.now(UTC))
    assert exc.value.reason == "expired"
    assert verify_envelope(data, trusted).cert == expired.cert  # without a check time it verifies


def _name(*rdns: list[tuple[x509.ObjectIdentifier, str]]) -> x509.Name:
    return x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(o, v) for o, v in rdn]) for rdn in rdns])


@pytest.mark.parametrize(
    "name, text, same",
    [
        # escaped separators are part of the value, not separators
        (_name([(NameOID.ORGANIZATION_NAME, "Bank, A")]), "O=Bank\\, A", True),
        (_name([(NameOID.ORGANIZATION_NAME, "Bank, A")]), "O=Bank\\2C A", True),
        (_name([(NameOID.ORGANIZATION_NAME, "Bank, A")]), "O=Bank, A", False),
        (_name([(NameOID.ORGANIZATION_NAME, "A+B")]), "O=A\\+B", True),
        # multi-valued RDN: its members in any order
        (_name([(NameOID.COMMON_NAME, "a"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "b")]), "OU=b+CN=a", True),
        (_name([(NameOID.COMMON_NAME, "a"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "b")]), "OU=b,CN=a", False),
        # UTF-8 as hex escapes; other spellings of the same types
        (_name([(NameOID.COMMON_NAME, "Zürich")]), "CN=Z\\C3\\BCrich", True),
        (
            _name([(NameOID.STATE_OR_PROVINCE_NAME, "NY"), (NameOID.EMAIL_ADDRESS, "a@b.example")]),
            "E=A@B.example+S=ny",
            True,
        ),
        (
            _name([(NameOID.DOMAIN_COMPONENT, "example")], [(NameOID.DOMAIN_COMPONENT, "com")]),
            "DC=com,DC=example",
            True,
        ),
        (_name(), "", True),
        (_name([(NameOID.COMMON_NAME, "a")]), "", False),
        (_name([(NameOID.COMMON_NAME, "a")]), "CN=a\\", False),  # a dangling escape is not a name
        (_name([(NameOID.COMMON_NAME, "a")]), "CN=\\C3", False),  # hex escapes that are not UTF-8
    ],
)
def test_rfc4514_names_compare_parsed(name: x509.Name, text: str, same: bool) -> None:
    assert dn.same_name(name, text) is same


def test_our_own_rendering_of_real_certificate_names_parses_back(keys: dict[str, SoftwareKey]) -> None:
    for key in keys.values():
        assert dn.parse(key.cert.issuer.rfc4514_string()) == dn.name_key(key.cert.issuer)
    with pytest.raises(dn.DNSyntaxError, match="unknown attribute type"):
        dn.parse("FOO=bar")
