"""One logged-in PKCS#11 session on the configured token (python-pkcs11): keys by label, certificates, raw signing.

Theory of operation (see NOTES.md "PKCS#11 with SoftHSM2"). python-pkcs11 initialises the module without OS
locking, so SoftHSM runs without mutexes: one `Token` per process, used from one thread at a time. Login state is
per process; concurrent logins on one SoftHSM file token fail, and so, now and then, does a token lookup beside a
login, so opening a session (module load, token lookup, C_Login) runs under an exclusive file lock (`login_lock`).
The PIN is read from the file or variable named in the settings when opening, handed to the module and dropped; it
is never logged and never part of an exception message. A PIN the token refuses raises PinRejected carrying
`pin_source_state` (what identifies that PIN without holding it), so the caller can avoid trying it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pkcs11
import pkcs11.exceptions as p11err
from cryptography import x509
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from hsm.errors import HsmUnavailable, PinRejected
from hsm.settings import HsmSettings, KeySettings
from hsm.xmldsig import SigningKey

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Library

# secp256r1 as DER ECParameters (namedCurve OID 1.2.840.10045.3.1.7): what the token reports for a P-256 key.
P256_PARAMS = bytes.fromhex("06082a8648ce3d030107")
# Which SOFTHSM2_CONF each module path was initialised with in this process: pkcs11.lib() is a per-path
# singleton, and SoftHSM reads its config only at C_Initialize, so a changed conf needs lib.reinitialize().
_INITIALISED_WITH: dict[str, str | None] = {}


def read_pin(settings: HsmSettings) -> str:
    """The user PIN from `pin_file` or `pin_env`. Raises HsmUnavailable without ever quoting the PIN."""
    if settings.pin_env is not None:
        pin = os.environ.get(settings.pin_env)
        if not pin:
            raise HsmUnavailable(f"the PIN variable {settings.pin_env} is not set")
        return pin
    if settings.pin_file is None:
        raise HsmUnavailable("no pin_file or pin_env configured")
    try:
        pin = Path(settings.pin_file).read_text().strip()
    except OSError as exc:
        raise HsmUnavailable(f"cannot read the PIN file {settings.pin_file}: {exc.strerror}") from None
    if not pin:
        raise HsmUnavailable(f"the PIN file {settings.pin_file} is empty")
    return pin


def pin_source_state(settings: HsmSettings) -> tuple[object, ...]:
    """What identifies the PIN a login would read now, without reading it (so without holding any of it).

    For `pin_file`: the path, inode, size, modification and change times (or the errno when it cannot be stat'ed):
    writing, replacing or touching the file changes it. For `pin_env`: the variable's name only, since a running
    process's environment does not change under it (the signer processes keep the one they were spawned with).
    """
    if settings.pin_env is not None:
        return ("env", settings.pin_env)
    if settings.pin_file is None:
        return ("none",)
    try:
        st = os.stat(settings.pin_file)
    except OSError as exc:
        return ("file", settings.pin_file, "error", exc.errno)
    return ("file", settings.pin_file, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def use_softhsm_conf(settings: HsmSettings) -> None:
    """Point SOFTHSM2_CONF at the configured SoftHSM config (if any). Changing the environment is not safe while
    other threads may read it: in a threaded process, call this first from the thread that owns the others."""
    conf = settings.softhsm2_conf
    if conf is not None and os.environ.get("SOFTHSM2_CONF") != conf:
        os.environ["SOFTHSM2_CONF"] = conf


def load_module(settings: HsmSettings, *, rescan: bool = False) -> Library:
    """The PKCS#11 module, with SOFTHSM2_CONF pointing at the configured SoftHSM config. Raises HsmUnavailable.

    `rescan`: initialise an already loaded module again, so that it sees tokens created since (SoftHSM lists its
    tokens at C_Initialize). It ends the module's sessions in this process: only for a process that keeps none."""
    conf = settings.softhsm2_conf
    if conf is not None:
        if not Path(conf).is_file():
            raise HsmUnavailable(f"no SoftHSM config at {conf} (create the dev token: switchctl hsm init-dev)")
        use_softhsm_conf(settings)
    if not Path(settings.module).exists() and "/" in settings.module:
        raise HsmUnavailable(f"PKCS#11 module {settings.module} does not exist")
    try:
        lib = pkcs11.lib(settings.module)
        if settings.module in _INITIALISED_WITH and (rescan or _INITIALISED_WITH[settings.module] != conf):
            lib.reinitialize()
    except (RuntimeError, OSError, p11err.PKCS11Error) as exc:
        raise HsmUnavailable(f"cannot load PKCS#11 module {settings.module}: {exc}") from None
    _INITIALISED_WITH[settings.module] = conf
    return lib


@contextmanager
def login_lock(settings: HsmSettings) -> Iterator[None]:
    """Exclusive lock around opening a session (module load, token lookup, C_Login): concurrent logins on one
    SoftHSM file token fail without it, and so, now and then, does a token lookup beside a login."""
    if settings.login_lock is None:
        yield
        return
    path = Path(settings.login_lock)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def find_token(lib: Library, label: str) -> pkcs11.Token:
    try:
        return lib.get_token(token_label=label)
    except p11err.NoSuchToken:
        raise HsmUnavailable(
            f"no token labelled {label!r} (is the HSM connected? dev: switchctl hsm init-dev)"
        ) from None
    except p11err.MultipleTokensReturned:
        raise HsmUnavailable(f"several tokens are labelled {label!r}; labels must be unique") from None
    except p11err.PKCS11Error as exc:
        raise HsmUnavailable(f"cannot list tokens: {type(exc).__name__}") from None


def open_session(settings: HsmSettings, *, rw: bool = False) -> pkcs11.Session:
    """A logged-in session on the configured token. Raises HsmUnavailable with the reason (never the PIN)."""
    # The whole set-up under the lock, not C_Login alone: processes that load the module and list the tokens while
    # another logs in fail now and then (no such token, GeneralError: 3-6 of 120 logins of 4 processes starting at
    # once, on this machine's SoftHSM), and the signer processes do start at once.
    with login_lock(settings):
        lib = load_module(settings)
        token = find_token(lib, settings.token)
        # Taken before the read: a PIN written in between then counts as a change, and gets its own attempt.
        source = pin_source_state(settings)
        pin = read_pin(settings)
        try:
            return token.open(rw=rw, user_pin=pin)
        except p11err.UserAlreadyLoggedIn:
            # Login state is per process: another session of this process logged in already; this one shares it.
            return token.open(rw=rw)
        except (p11err.PinIncorrect, p11err.PinInvalid, p11err.PinLenRange):
            rejected = PinRejected(f"the token {settings.token!r} rejected the PIN")
            rejected.pin_source = source
            raise rejected from None
        except p11err.PinLocked:
            # Not PinRejected: a locked PIN is refused without being checked, so trying again costs nothing, and
            # signing resumes by itself once the security officer unlocks it.
            raise HsmUnavailable(f"the PIN of token {settings.token!r} is locked (too many wrong PINs)") from None
        except p11err.PKCS11Error as exc:
            raise HsmUnavailable(f"cannot log in to token {settings.token!r}: {type(exc).__name__}") from None


def key_kind(algorithm: str) -> str:
    return "ec" if algorithm.startswith("ec-") else "rsa"


def public_attributes(key: Any) -> dict[str, Any]:
    """What describes a public or private key object: type, size / curve."""
    kt = key[Attribute.KEY_TYPE]
    if kt == KeyType.RSA:
        return {"type": "rsa", "bits": int.from_bytes(key[Attribute.MODULUS], "big").bit_length()}
    if kt == KeyType.EC:
        return {"type": "ec", "p256": key[Attribute.EC_PARAMS] == P256_PARAMS}
    return {"type": str(kt)}


def check_key_matches(key: Any, spec: KeySettings) -> None:
    """The key on the token is the algorithm config says. Raises HsmUnavailable."""
    attrs = public_attributes(key)
    expected = {"rsa-2048": ("rsa", 2048), "rsa-3072": ("rsa", 3072), "ec-p256": ("ec", True)}[spec.algorithm]
    actual = (attrs["type"], attrs.get("bits", attrs.get("p256")))
    if actual != expected:
        raise HsmUnavailable(f"key {spec.label!r} on the token is not {spec.algorithm}")


def certificate_on_token(session: pkcs11.Session, label: str) -> x509.Certificate | None:
    for obj in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: label}):
        return x509.load_der_x509_certificate(obj[Attribute.VALUE])
    return None


def load_certificate(session: pkcs11.Session, spec: KeySettings) -> x509.Certificate:
    """The key's certificate: the configured PEM file, else the certificate object with its label on the token."""
    if spec.cert is not None:
        try:
            return x509.load_pem_x509_certificate(Path(spec.cert).read_bytes())
        except (OSError, ValueError) as exc:
            raise HsmUnavailable(f"cannot read the certificate of key {spec.label!r} ({spec.cert}): {exc}") from None
    cert = certificate_on_token(session, spec.label)
    if cert is None:
        raise HsmUnavailable(f"no certificate labelled {spec.label!r} on the token and none configured (cert)")
    return cert


@dataclass
class TokenKey:
    """A private key on the token with what the signature needs to say about it."""

    spec: KeySettings
    private: Any  # pkcs11.PrivateKey
    signing: SigningKey

    def sign(self, signed_info: bytes) -> bytes:
        """SignatureValue bytes for the canonical SignedInfo (RSA PKCS#1 v1.5 / ECDSA raw r||s, both SHA-256)."""
        if self.signing.kind == "rsa":
            out: bytes = self.private.sign(signed_info, mechanism=Mechanism.SHA256_RSA_PKCS)
            return out
        # SoftHSM has no CKM_ECDSA_SHA256: hash here, sign the digest with CKM_ECDSA. The token returns r||s,
        # which is exactly the XMLDSig ECDSA SignatureValue form.
        raw: bytes = self.private.sign(hashlib.sha256(signed_info).digest(), mechanism=Mechanism.ECDSA)
        return raw


class Token:
    """A logged-in session plus the configured keys found on it (looked up once, by label, then cached)."""

    def __init__(self, settings: HsmSettings, session: pkcs11.Session) -> None:
        self.settings = settings
        self.session = session
        self._keys: dict[str, TokenKey] = {}

    @classmethod
    def open(cls, settings: HsmSettings) -> Token:
        """Open and log in. Raises HsmUnavailable (module, token, PIN) naming what is wrong."""
        return cls(settings, open_session(settings))

    def key(self, label: str, settings: HsmSettings | None = None) -> TokenKey:
        """The key with this label (from `settings` when given: a reload may add keys). Raises HsmUnavailable."""
        if label in self._keys:
            return self._keys[label]
        settings = settings or self.settings
        try:
            spec = settings.key(label)
        except KeyError:
            raise HsmUnavailable(f"key {label!r} is not configured") from None
        try:
            private = self.session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
        except p11err.NoSuchKey:
            raise HsmUnavailable(f"no private key labelled {label!r} on token {settings.token!r}") from None
        except p11err.MultipleObjectsReturned:
            raise HsmUnavailable(f"several private keys are labelled {label!r}; labels must be unique") from None
        except p11err.PKCS11Error as exc:
            raise HsmUnavailable(f"cannot look up key {label!r}: {type(exc).__name__}") from None
        check_key_matches(private, spec)
        cert = load_certificate(self.session, spec)
        signing = SigningKey.from_cert(cert)
        if signing.kind != key_kind(spec.algorithm):
            raise HsmUnavailable(f"the certificate of key {label!r} does not hold a {spec.algorithm} key")
        key = TokenKey(spec, private, signing)
        self._keys[label] = key
        return key

    def sign(self, label: str, signed_info: bytes) -> bytes:
        """Sign with the key `label`. Raises HsmUnavailable when the token fails (session lost, device gone)."""
        try:
            return self.key(label).sign(signed_info)
        except p11err.PKCS11Error as exc:
            raise HsmUnavailable(f"the token failed to sign with {label!r}: {type(exc).__name__}") from None

    def close(self) -> None:
        # A session that is already gone (device removed) has nothing left to close.
        with contextlib.suppress(p11err.PKCS11Error):
            self.session.close()
