"""HSM test fixtures: one real SoftHSM dev token per session (made by `switchctl hsm init-dev`), keys made by others.

The token lives under tmp_path_factory with its own softhsm2.conf; nothing touches the machine-wide SoftHSM config.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import NameOID
from lxml import etree

from hsm.canonical import CanonicalEnvelope, canonical_envelope, digests, insert_signature, signature_element
from hsm.service import SigningService
from hsm.settings import HsmSettings
from hsm.xmldsig import SignFn, SigningKey, verify_envelope
from switchd.config import load_config
from tests.builders import ENVELOPE_NS, ENVELOPE_TAG, pacs008
from tests.conftest import children, proc_file, switchctl

HSM_CONFIG = """
[paths]
data_dir = "var"

[[participants]]
name = "bank-a"
bics = ["AAAAUS33XXX"]
token_sha256 = "c2f1bcf461c5f642545991f11db2ca335ee1da5b7ded58dfae51af7ae45d452e"

[hsm]
token = "switchd-test"
active = "{active}"
{extra}
"""


def hsm_keys(rsa: str = "sig-rsa", ec: str = "sig-ec") -> str:
    """TOML of the `[[hsm.keys]]` the tests and benches sign with: an RSA-2048 key and an EC P-256 key (to follow
    an `[hsm]` table; `switchctl hsm init-dev` makes both on the dev token)."""
    return f"""
[[hsm.keys]]
label = "{rsa}"
algorithm = "rsa-2048"

[[hsm.keys]]
label = "{ec}"
algorithm = "ec-p256"
"""


def write_hsm_config(directory: Path, *, active: str = "sig-rsa", extra: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "switchd.toml"
    path.write_text(HSM_CONFIG.format(active=active, extra=extra) + hsm_keys())
    return path


@dataclass(frozen=True)
class DevToken:
    config: Path
    settings: HsmSettings  # active: sig-rsa
    init_output: str


@pytest.fixture(scope="session")
def dev_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevToken]:
    if shutil.which("softhsm2-util") is None or not Path("/usr/lib/softhsm/libsofthsm2.so").exists():
        pytest.fail("SoftHSM2 is missing: `make setup` installs the Debian package softhsm2")
    config = write_hsm_config(tmp_path_factory.mktemp("hsm"))
    done = switchctl(config, "hsm", "init-dev")
    assert done.returncode == 0, done.stderr
    settings = load_config(config).hsm
    assert settings is not None
    before = os.environ.get("SOFTHSM2_CONF")
    yield DevToken(config, settings, done.stdout)
    # In-process token use points SOFTHSM2_CONF at this token: do not leave it set for other tests.
    if before is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = before


def laid_out(raw: bytes) -> tuple[CanonicalEnvelope, etree._Element]:
    """The envelope `raw` laid out for signing (hsm.canonical, in our BizMsg wrapper, as the daemon's builder
    does), and its AppHdr element (left as it was)."""
    root = etree.fromstring(raw)
    hdr, doc = (c for c in root if isinstance(c.tag, str))
    return canonical_envelope(etree.Element(ENVELOPE_TAG, nsmap={None: ENVELOPE_NS}), hdr, doc), hdr


def sign_laid_out(
    envelope: CanonicalEnvelope, key: SigningKey, sign: SignFn, *, key_info_id: bytes | None = None
) -> bytes:
    """What the signing service does with a laid-out envelope, in one process: its digests, the ds:Signature over
    them (SignedInfo to `sign`), spliced in."""
    return insert_signature(envelope, signature_element(digests(envelope), key, sign, key_info_id=key_info_id))


def signers_of(pid: int | None = None) -> list[int]:
    """The child processes of `pid` (default: this one) that loaded SoftHSM: its signer processes (intake workers
    never load it)."""
    return [c for c in children(pid or os.getpid()) if b"libsofthsm2" in proc_file(c, "maps")]


def exported_cert(config: Path, label: str | None = None) -> x509.Certificate:
    """The certificate `switchctl hsm cert [--label L]` prints for `config` (the active key's without a label)."""
    done = switchctl(config, "hsm", "cert", *(["--label", label] if label else []))
    assert done.returncode == 0, done.stderr
    return x509.load_pem_x509_certificate(done.stdout.encode())


def real_pin(dev_token: DevToken) -> str:
    """The dev token's user PIN, as its PIN file holds it."""
    assert dev_token.settings.pin_file is not None
    return Path(dev_token.settings.pin_file).read_text()


async def signs_once_the_pin_is_right(
    service: SigningService, pin_file: Path, dev_token: DevToken, msg_id: str
) -> None:
    """The operator writes the token's real PIN into `pin_file`, which `service` reads: it must become ready by
    itself (no restart, no reload) and sign `msg_id` with the dev token's sig-rsa key."""
    pin_file.write_text(real_pin(dev_token))
    with trio.fail_after(60):  # logging in again: this only bounds a hang
        await service.wait_ready()
        (signed,) = await service.sign([pacs008(msg_id=msg_id)])
    assert service.ready and service.last_error is None
    verify_envelope(signed.data, [service.certificates["sig-rsa"]])


@dataclass(frozen=True)
class SoftwareKey:
    """A key and self-signed certificate that are not ours (made with cryptography or openssl in the test)."""

    kind: str  # "rsa" | "ec"
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    key_pem: Path
    cert_pem: Path

    def sign_raw(self, data: bytes) -> bytes:
        """XMLDSig SignatureValue bytes: RSA PKCS#1 v1.5 / ECDSA r||s, SHA-256."""
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        r, s = utils.decode_dss_signature(self.key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def make_software_key(
    directory: Path, kind: str, cn: str = "Other Bank", valid_days: tuple[int, int] = (-1, 30)
) -> SoftwareKey:
    """A key and self-signed certificate valid from `valid_days[0]` to `valid_days[1]` days from now."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        rsa.generate_private_key(65537, 2048) if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "X")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=valid_days[0]))
        .not_valid_after(now + datetime.timedelta(days=valid_days[1]))
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    key_pem = directory / f"{kind}-{cn.replace(' ', '_')}.key.pem"
    cert_pem = directory / f"{kind}-{cn.replace(' ', '_')}.cert.pem"
    key_pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return SoftwareKey(kind, key, cert, key_pem, cert_pem)


@pytest.fixture(scope="session")
def software_keys(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], SoftwareKey]:
    directory = tmp_path_factory.mktemp("softkeys")
    made: dict[str, SoftwareKey] = {}

    def get(kind: str) -> SoftwareKey:
        if kind not in made:
            made[kind] = make_software_key(directory, kind)
        return made[kind]

    return get


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(cmd, capture_output=True, timeout=60, check=False, **kwargs)  # type: ignore[call-overload,no-any-return]
