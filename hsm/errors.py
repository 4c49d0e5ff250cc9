"""Typed errors of the hsm package: what callers catch to keep a message waiting, or to reject a signature.

SwitchdError (switchd.errors)
 └── HsmError
      ├── HsmUnavailable     the token cannot sign now: module, token, PIN, key or session problem; retry later
      │    └── PinRejected   the token refused the PIN: do not log in with the same PIN again (PINs get locked)
      ├── SigningError       this envelope cannot be signed (not AppHdr + Document, already signed); a bug upstream
      └── SignatureInvalid   a signature did not verify; `reference` names the part that failed, if one did

Every class takes one message string so instances pickle across the signer worker processes unchanged.
"""

from __future__ import annotations

from switchd.errors import SwitchdError


class HsmError(SwitchdError):
    """Base class of every error the hsm package raises on purpose."""


class HsmUnavailable(HsmError):
    """The HSM cannot sign now. Nothing was signed; the caller keeps the message and retries later.

    The text says what is wrong (module missing, no token with that label, PIN rejected, key missing, session
    lost) and never contains the PIN.
    """


class PinRejected(HsmUnavailable):
    """The token refused the PIN (incorrect or malformed). Unlike other outages, trying again with the same PIN only
    spends the token's failed-login budget: real HSMs lock the user PIN after a few failures.

    `pin_source` says which PIN was tried without containing it: for a PIN file, its identity and modification
    state (`pin_source_state`) taken before it was read, for a variable its name. It is an attribute, not part of
    the message or `args`, and travels with the pickled exception from a signer process.
    """

    pin_source: tuple[object, ...] | None = None


class SigningError(HsmError):
    """The envelope itself cannot be signed (wrong shape, already signed). Retrying will not help."""


class SignatureInvalid(HsmError):
    """A signature did not verify. `reference` is "AppHdr", "Document", "KeyInfo", "SignatureValue" or None;
    `reason` says why in the terms a status report needs: "missing" (no signature), "untrusted" (a key we do not
    trust for this sender), "expired" (the certificate is not valid at the time asked) or "invalid" (anything else:
    a changed part, a bad value, another layout)."""

    def __init__(self, message: str, reference: str | None = None, reason: str = "invalid") -> None:
        super().__init__(message, reference)
        self.message = message
        self.reference = reference
        self.reason = reason

    def __str__(self) -> str:
        return self.message
