"""Distinguished names written as text (RFC 4514, e.g. XMLDSig's X509IssuerName) compared with certificate names.

Tools render the same name differently: spaces around `=` and `,`, lower-case attribute types (`cn=`), `S`/`E` for
ST/emailAddress, OIDs instead of short names, escaped or hex-encoded characters, quoted values. So names are
compared parsed, never as text.

Rules (X.520 / RFC 4517-4518 matching, as RFC 5280 section 7.1 asks of certificate names). A name is the sequence
of its RDNs; RFC 4514 writes the last RDN first, so the text is reversed before comparing, and a different order
is a different name. An RDN is a set of (attribute type, value): `+` joins them, their order does not matter.
Types compare by OID, whatever the spelling. Values compare after Unicode NFKC, case folding and insignificant
space removal (leading and trailing spaces dropped, inner runs of spaces made one): the directory string attributes
certificates use are all case-ignore in X.520. Anything else (another value, one RDN more or less, another type)
is another name. Text that is not a distinguished name raises DNSyntaxError: the caller treats it as no match.
"""

from __future__ import annotations

import re
import unicodedata

from cryptography import x509

# Attribute type names (upper case) -> OID. RFC 4514's table, the other X.520 names certificates use, and the
# spellings other tools emit (S, E, SERIALNUMBER, OID.n.n).
_TYPES: dict[str, str] = {
    "CN": "2.5.4.3",
    "COMMONNAME": "2.5.4.3",
    "SN": "2.5.4.4",
    "SURNAME": "2.5.4.4",
    "SERIALNUMBER": "2.5.4.5",
    "C": "2.5.4.6",
    "COUNTRYNAME": "2.5.4.6",
    "L": "2.5.4.7",
    "LOCALITYNAME": "2.5.4.7",
    "ST": "2.5.4.8",
    "S": "2.5.4.8",
    "STATEORPROVINCENAME": "2.5.4.8",
    "STREET": "2.5.4.9",
    "STREETADDRESS": "2.5.4.9",
    "O": "2.5.4.10",
    "ORGANIZATIONNAME": "2.5.4.10",
    "OU": "2.5.4.11",
    "ORGANIZATIONALUNITNAME": "2.5.4.11",
    "T": "2.5.4.12",
    "TITLE": "2.5.4.12",
    "DESCRIPTION": "2.5.4.13",
    "BUSINESSCATEGORY": "2.5.4.15",
    "POSTALCODE": "2.5.4.17",
    "NAME": "2.5.4.41",
    "GN": "2.5.4.42",
    "GIVENNAME": "2.5.4.42",
    "INITIALS": "2.5.4.43",
    "GENERATIONQUALIFIER": "2.5.4.44",
    "DNQUALIFIER": "2.5.4.46",
    "PSEUDONYM": "2.5.4.65",
    "ORGANIZATIONIDENTIFIER": "2.5.4.97",
    "UID": "0.9.2342.19200300.100.1.1",
    "USERID": "0.9.2342.19200300.100.1.1",
    "DC": "0.9.2342.19200300.100.1.25",
    "DOMAINCOMPONENT": "0.9.2342.19200300.100.1.25",
    "E": "1.2.840.113549.1.9.1",
    "EMAIL": "1.2.840.113549.1.9.1",
    "EMAILADDRESS": "1.2.840.113549.1.9.1",
}
_DESCR = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_NUMERICOID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+")
_HEX = "0123456789abcdefABCDEF"
# Characters RFC 4514 lets a backslash escape (RFC 2253's list; RFC 4514 adds only that any of them may be escaped).
_ESCAPABLE = ' "#+,;<=>\\'
# DER universal string tags a `#hex` value may hold, and how their bytes read as text.
_DER_STRINGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be", 0x1C: "utf-32-be"}

RDN = tuple[tuple[str, str], ...]  # sorted (OID, normalised value) pairs


class DNSyntaxError(ValueError):
    """The text is not a distinguished name; the message says where (0-based character offset) and why."""


def _normal(value: str) -> str:
    """A value as it compares: NFKC, case-folded, white space trimmed and each inner run of it made one space."""
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


def parse(text: str) -> tuple[RDN, ...]:
    """The RDNs of an RFC 4514 string in ASN.1 order (the text's last RDN first). Raises DNSyntaxError."""
    return _Parser(text).parse()


def name_key(name: x509.Name) -> tuple[RDN, ...]:
    """A certificate name in the form `parse` returns, for comparison."""
    rdns = []
    for rdn in name.rdns:
        pairs = []
        for attr in rdn:
            value = attr.value
            text = value if isinstance(value, str) else "#" + bytes(value).hex()
            pairs.append((attr.oid.dotted_string, _normal(text)))
        rdns.append(tuple(sorted(pairs)))
    return tuple(rdns)


def same_name(name: x509.Name, text: str) -> bool:
    """Whether `text` (RFC 4514, as another tool wrote it) is `name`. Text that does not parse is not."""
    try:
        return parse(text) == name_key(name)
    except DNSyntaxError:
        return False


class _Parser:
    """Recursive descent over RFC 4514 section 3, lenient where tools differ (spaces, `;`, quotes, OID. prefix)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, why: str) -> DNSyntaxError:
        return DNSyntaxError(f"not a distinguished name at character {self.pos}: {why}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_spaces(self) -> None:
        while self.peek() == " ":
            self.pos += 1

    def parse(self) -> tuple[RDN, ...]:
        self.skip_spaces()
        if self.pos == len(self.text):
            return ()  # the empty name
        rdns = []
        while True:
            pairs = [self.attribute()]
            while self.peek() == "+":
                self.pos += 1
                pairs.append(self.attribute())
            rdns.append(tuple(sorted(pairs)))
            if self.pos == len(self.text):
                break
            if self.peek() not in ",;":  # `;` is RFC 2253's other separator, still written by some tools
                raise self.fail(f"expected ',' or '+', found {self.peek()!r}")
            self.pos += 1
        rdns.reverse()  # RFC 4514 starts with the last RDN of the sequence
        return tuple(rdns)

    def attribute(self) -> tuple[str, str]:
        self.skip_spaces()
        oid = self.attribute_type()
        self.skip_spaces()
        if self.peek() != "=":
            raise self.fail("expected '=' after the attribute type")
        self.pos += 1
        self.skip_spaces()
        value = self.hex_value() if self.peek() == "#" else self.string_value()
        self.skip_spaces()
        return oid, _normal(value)

    def attribute_type(self) -> str:
        rest = self.text[self.pos :]
        if rest[:4].upper() == "OID.":  # RFC 1779 style, still printed by some tools
            self.pos += 4
            rest = rest[4:]
        m = _NUMERICOID.match(rest)
        if m:
            self.pos += m.end()
            return m.group()
        m = _DESCR.match(rest)
        if not m:
            raise self.fail("expected an attribute type")
        oid = _TYPES.get(m.group().upper())
        if oid is None:
            raise self.fail(f"unknown attribute type {m.group()!r}")
        self.pos += m.end()
        return oid

    def hex_value(self) -> str:
        """`#` and the hex of a BER/DER value: the text of a string type (other types never match a text value)."""
        self.pos += 1
        start = self.pos
        while self.peek() and self.peek() in _HEX:
            self.pos += 1
        digits = self.text[start : self.pos]
        if not digits or len(digits) % 2:
            raise self.fail("'#' must be followed by an even number of hex digits")
        der = bytes.fromhex(digits)
        if len(der) < 2 or der[0] not in _DER_STRINGS:
            raise self.fail("a '#' value must be a DER string")
        length, offset = der[1], 2
        if length & 0x80:
            n = length & 0x7F
            length, offset = int.from_bytes(der[2 : 2 + n], "big"), 2 + n
        if offset + length != len(der):
            raise self.fail("the DER length does not match the value")
        try:
            return der[offset:].decode(_DER_STRINGS[der[0]])
        except UnicodeDecodeError:
            raise self.fail("the DER string does not decode") from None

    def string_value(self) -> str:
        quoted = self.peek() == '"'  # RFC 2253 allowed quoted values; RFC 4514 does not, tools still write them
        if quoted:
            self.pos += 1
        out: list[str] = []
        pending = bytearray()  # hex-escaped bytes: UTF-8 that may span several \XX pairs

        def flush() -> None:
            if pending:
                try:
                    out.append(pending.decode("utf-8"))
                except UnicodeDecodeError:
                    raise self.fail("hex escapes that are not UTF-8") from None
                pending.clear()

        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c == "\\":
                nxt = self.text[self.pos + 1 : self.pos + 3]
                if len(nxt) == 2 and nxt[0] in _HEX and nxt[1] in _HEX:
                    pending.append(int(nxt, 16))
                    self.pos += 3
                    continue
                if nxt[:1] and nxt[0] in _ESCAPABLE:
                    flush()
                    out.append(nxt[0])
                    self.pos += 2
                    continue
                raise self.fail("a backslash must escape a special character or two hex digits")
            flush()
            if quoted:
                if c == '"':
                    self.pos += 1
                    return "".join(out)
            elif c in ",;+":
                break
            elif c in '"<>':
                raise self.fail(f"{c!r} must be escaped in a value")
            out.append(c)
            self.pos += 1
        flush()
        if quoted:
            raise self.fail("unterminated quoted value")
        return "".join(out)
