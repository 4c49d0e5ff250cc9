"""Development token: a SoftHSM2 token under the data dir with the configured key pairs and self-signed certificates.

Everything lives under the data dir: the token's own softhsm2.conf (tokendir beside it), the PIN file (mode 0600)
and the login lock; SOFTHSM2_CONF points at that conf, never at the machine-wide one. Idempotent: what exists is
kept and reported as existing. The certificate is built with `cryptography` around the token's public key and
signed by the token itself (the private key is sensitive and never leaves it).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pkcs11
from asn1crypto.core import Integer, OctetString
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from pkcs11 import Attribute, CertificateType, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from hsm.errors import HsmUnavailable
from hsm.settings import HsmSettings, KeySettings
from hsm.token import certificate_on_token, find_token, load_module, open_session, read_pin
from hsm.xmldsig import raw_to_der_ecdsa

CERT_DAYS = 3 * 365


@dataclass(frozen=True)
class InitStep:
    what: str  # "conf", "pin", "token", "key", "cert"
    name: str
    created: bool


def init_dev_token(settings: HsmSettings, *, common_name: str = "switchd dev signer") -> list[InitStep]:
    """Create whatever of the dev token is missing; return what was created and what already existed.

    Raises HsmUnavailable (SoftHSM missing, PIN rejected) or ValueError (settings not for SoftHSM).
    """
    if not settings.is_softhsm or settings.softhsm2_conf is None:
        raise ValueError("init-dev makes SoftHSM tokens: [hsm] module must be SoftHSM with a softhsm2_conf")
    steps: list[InitStep] = []
    conf = Path(settings.softhsm2_conf)
    steps.append(InitStep("conf", str(conf), _write_conf(conf)))
    if settings.pin_file is not None:
        steps.append(InitStep("pin", settings.pin_file, _write_pin(Path(settings.pin_file))))
    pin = read_pin(settings)

    lib = load_module(settings)
    try:
        find_token(lib, settings.token)
        created = False
    except HsmUnavailable:
        _init_token(settings, pin, conf)
        lib.reinitialize()  # SoftHSM reads its token folder at C_Initialize only
        created = True
    steps.append(InitStep("token", settings.token, created))

    session = open_session(settings, rw=True)
    try:
        for spec in settings.keys:
            private, made = _keypair(session, spec)
            steps.append(InitStep("key", f"{spec.label} ({spec.algorithm})", made))
            if spec.cert is None:
                steps.append(InitStep("cert", spec.label, _certificate(session, spec, private, common_name)))
    finally:
        session.close()
    return steps


def _write_conf(conf: Path) -> bool:
    if conf.exists():
        return False
    conf.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tokendir = conf.parent / "tokens"
    tokendir.mkdir(exist_ok=True, mode=0o700)
    conf.write_text(
        "# SoftHSM2 config of switchd's development token (switchctl hsm init-dev); not the machine-wide one.\n"
        f"directories.tokendir = {tokendir}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
    )
    return True


def _write_pin(path: Path) -> bool:
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_EXCL + mode 0600 at creation: the PIN is never readable by others, not even for an instant.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(8) + "\n")
    return True


def _init_token(settings: HsmSettings, pin: str, conf: Path) -> None:
    # python-pkcs11 has no C_InitToken; softhsm2-util (same package as the module) does it. The SO PIN is random
    # and dropped: a dev token is re-created, not administered. PINs on argv are visible in /proc for the few
    # milliseconds the command runs: acceptable for a development token only.
    tool = shutil.which("softhsm2-util")
    if tool is None:
        raise HsmUnavailable("softhsm2-util not found (Debian package softhsm2)")
    so_pin = secrets.token_hex(8)
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    cmd = [tool, "--init-token", "--free", "--label", settings.token, "--pin", pin, "--so-pin", so_pin]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).replace(pin, "****").replace(so_pin, "****").strip()
        raise HsmUnavailable(f"softhsm2-util could not create token {settings.token!r}: {detail}")


def _keypair(session: pkcs11.Session, spec: KeySettings) -> tuple[Any, bool]:
    try:
        return session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=spec.label), False
    except pkcs11.NoSuchKey:
        pass
    key_id = hashlib.sha256(spec.label.encode()).digest()[:8]
    private_template = {
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.SIGN: True,
        Attribute.PRIVATE: True,
    }
    public_template = {Attribute.VERIFY: True}
    if spec.algorithm == "ec-p256":
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True
        )
        _, private = params.generate_keypair(
            id=key_id,
            label=spec.label,
            store=True,
            private_template=private_template,
            public_template=public_template,
        )
    else:
        bits = 2048 if spec.algorithm == "rsa-2048" else 3072
        _, private = session.generate_keypair(
            KeyType.RSA,
            bits,
            id=key_id,
            label=spec.label,
            store=True,
            private_template=private_template,
            public_template=public_template,
        )
    return private, True


def _public_key(session: pkcs11.Session, spec: KeySettings) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    pub = session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=spec.label)
    if spec.algorithm == "ec-p256":
        point = bytes(OctetString.load(pub[Attribute.EC_POINT]))
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    n = int.from_bytes(pub[Attribute.MODULUS], "big")
    e = int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big")
    return rsa.RSAPublicNumbers(e, n).public_key()


class _TokenRsaKey(rsa.RSAPrivateKey):
    """cryptography's view of an RSA key on the token: only `sign` (PKCS#1 v1.5, SHA-256) works, via PKCS#11."""

    def __init__(self, private: Any, public: rsa.RSAPublicKey) -> None:
        self._private = private
        self._public = public

    def sign(self, data: bytes, padding: Any, algorithm: Any) -> bytes:
        out: bytes = self._private.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS)
        return out

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def decrypt(self, ciphertext: bytes, padding: Any) -> bytes:
        raise NotImplementedError("the key never leaves the token")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        raise NotImplementedError("the key never leaves the token")

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:
        raise NotImplementedError("the key never leaves the token")

    def __copy__(self) -> _TokenRsaKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _TokenRsaKey:
        return self


class _TokenEcKey(ec.EllipticCurvePrivateKey):
    """cryptography's view of a P-256 key on the token: `sign` hashes here and signs the digest via CKM_ECDSA."""

    def __init__(self, private: Any, public: ec.EllipticCurvePublicKey) -> None:
        self._private = private
        self._public = public

    def sign(self, data: bytes | bytearray | memoryview, signature_algorithm: Any) -> bytes:
        raw = self._private.sign(hashlib.sha256(bytes(data)).digest(), mechanism=Mechanism.ECDSA)
        return raw_to_der_ecdsa(raw)  # X.509 wants the DER ECDSA-Sig-Value, the token gives r||s

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def exchange(self, algorithm: Any, peer_public_key: Any) -> bytes:
        raise NotImplementedError("the key never leaves the token")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise NotImplementedError("the key never leaves the token")

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:
        raise NotImplementedError("the key never leaves the token")

    def __copy__(self) -> _TokenEcKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _TokenEcKey:
        return self


def _certificate(session: pkcs11.Session, spec: KeySettings, private: Any, common_name: str) -> bool:
    if certificate_on_token(session, spec.label) is not None:
        return False
    public = _public_key(session, spec)
    signer: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        _TokenEcKey(private, public) if isinstance(public, ec.EllipticCurvePublicKey) else _TokenRsaKey(private, public)
    )
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} {spec.label}"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "switchd development"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(
            signer, hashes.SHA256(), rsa_padding=padding.PKCS1v15() if isinstance(signer, rsa.RSAPrivateKey) else None
        )
    )
    session.create_object(
        {
            Attribute.CLASS: ObjectClass.CERTIFICATE,
            Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
            Attribute.TOKEN: True,
            Attribute.PRIVATE: False,
            Attribute.LABEL: spec.label,
            Attribute.ID: private[Attribute.ID],
            Attribute.SUBJECT: cert.subject.public_bytes(),
            Attribute.ISSUER: cert.issuer.public_bytes(),
            Attribute.SERIAL_NUMBER: _der_integer(cert.serial_number),
            Attribute.VALUE: cert.public_bytes(Encoding.DER),
        }
    )
    return True


def _der_integer(value: int) -> bytes:
    out: bytes = Integer(value).dump()
    return out
