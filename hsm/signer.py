"""Signing envelopes with the token in this process: the per-process signer and the sync helper for tools.

`Signer` is what each signer worker process (hsm.service) keeps between jobs, what the daemon opens and closes
again to check the token before it says ready (hsm.service.check_here), and what `sign_sync` uses for one
command-line run. It is synchronous and single-threaded by design (one session per process, see hsm.token).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from hsm.canonical import Digests, signature_element
from hsm.errors import HsmUnavailable, SigningError
from hsm.settings import HsmSettings
from hsm.token import Token
from hsm.xmldsig import sign_envelope

_DER = Encoding.DER


@dataclass(frozen=True)
class SignedMessage:
    """A signed envelope and which key signed it (journal the label: rotation makes it matter later)."""

    data: bytes
    key_label: str
    algorithm: str  # the configured algorithm of the key: rsa-2048 | rsa-3072 | ec-p256
    cert_sha256: str  # SHA-256 fingerprint (hex) of the certificate placed in KeyInfo


class Signer:
    """A logged-in token and the configured keys. Not thread-safe (SoftHSM runs without locks here)."""

    def __init__(self, token: Token) -> None:
        self.token = token

    @classmethod
    def open(cls, settings: HsmSettings) -> Signer:
        """Log in and check every configured key and certificate. Raises HsmUnavailable."""
        signer = cls(Token.open(settings))
        try:
            for spec in settings.keys:
                signer.token.key(spec.label)
        except BaseException:
            signer.close()
            raise
        return signer

    def certificates(self, settings: HsmSettings | None = None) -> dict[str, bytes]:
        """DER certificate of every configured key, by label (from the token or the configured files)."""
        settings = settings or self.token.settings
        return {
            k.label: self.token.key(k.label, settings).signing.cert.public_bytes(Encoding.DER) for k in settings.keys
        }

    def sign(
        self, items: Sequence[bytes | Digests], settings: HsmSettings | None = None
    ) -> list[SignedMessage | SigningError]:
        """Sign each item with the active key of `settings` (default: those the token was opened with).

        Envelope bytes are parsed and canonicalised (xmldsig); `data` is the signed envelope. For the Digests of a
        laid-out envelope (hsm.canonical: the envelope itself need not come here) `data` is the ds:Signature
        element, for canonical.insert_signature.
        An item that cannot be signed gets its SigningError in its place; HsmUnavailable (token failure) is raised
        for the whole batch, since nothing after it could be signed either.
        """
        settings = settings or self.token.settings
        label = settings.active
        if label is None:
            raise HsmUnavailable("no active key configured")
        key = self.token.key(label, settings)
        fingerprint = key.signing.cert.fingerprint(hashes.SHA256()).hex()

        def sign_signed_info(signed_info: bytes) -> bytes:
            return self.token.sign(label, signed_info)

        out: list[SignedMessage | SigningError] = []
        for item in items:
            try:
                if isinstance(item, Digests):
                    signed = signature_element(item, key.signing, sign_signed_info)
                else:
                    signed = sign_envelope(item, key.signing, sign_signed_info)
            except HsmUnavailable:
                raise
            except SigningError as exc:
                out.append(exc)
                continue
            except Exception as exc:  # e.g. lxml refusing to canonicalise this envelope: its fault, not the token's
                out.append(SigningError(f"cannot sign this envelope: {type(exc).__name__}: {exc}"))
                continue
            out.append(SignedMessage(signed, label, key.spec.algorithm, fingerprint))
        return out

    def close(self) -> None:
        self.token.close()


def sign_sync(settings: HsmSettings, envelopes: Sequence[bytes]) -> list[SignedMessage]:
    """Open the token, sign every envelope with the active key, close. For tools and tests, not the daemon.

    Raises HsmUnavailable, or the first envelope's SigningError.
    """
    signer = Signer.open(settings)
    try:
        results = signer.sign(envelopes)
    finally:
        signer.close()
    for r in results:
        if isinstance(r, SigningError):
            raise r
    return [r for r in results if isinstance(r, SignedMessage)]
