"""`switchctl hsm ...`: create the SoftHSM dev token, list signing keys and certificates, print the active certificate,
sign and verify files offline. The hsm package is imported only when one of these commands runs.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from switchd.config import load_config
from switchd.ctl.render import as_json, table

if TYPE_CHECKING:
    from hsm.settings import HsmSettings


def add_hsm_parser(sub: Any) -> None:
    """Register `hsm` and its actions on switchctl's subparsers."""
    p = sub.add_parser("hsm", help="signing keys on the HSM: dev token, keys, certificate, sign/verify files")
    hsub = p.add_subparsers(dest="hsm_command", required=True, metavar="ACTION")

    a = hsub.add_parser(
        "init-dev",
        help="create the SoftHSM dev token under the data dir (own softhsm2.conf, PIN file, keys, self-signed certs)",
    )
    a.set_defaults(func=cmd_init_dev)

    a = hsub.add_parser("keys", help="configured keys and their certificates (label, algorithm, subject, expiry)")
    a.set_defaults(func=cmd_keys)

    a = hsub.add_parser("cert", help="print the certificate (PEM) of the active signing key, or of --label")
    a.add_argument("--label", help="a configured key label instead of the active one")
    a.set_defaults(func=cmd_cert)

    a = hsub.add_parser("sign", help="sign envelope files (AppHdr + Document) with the active key; writes FILE.signed")
    a.add_argument("files", nargs="+", type=Path)
    a.set_defaults(func=cmd_sign)

    a = hsub.add_parser(
        "verify", help="verify the AppHdr signature of files against a certificate (default: every configured key's)"
    )
    a.add_argument("files", nargs="+", type=Path)
    a.add_argument("--cert", type=Path, action="append", help="PEM certificate to verify against (repeatable)")
    a.set_defaults(func=cmd_verify)


def _settings(args: argparse.Namespace, *, dev_default: bool = False) -> HsmSettings:
    from hsm.settings import dev_settings

    cfg = load_config(args.config)
    if cfg.hsm is not None:
        return cfg.hsm
    if dev_default:
        return dev_settings(cfg.data_dir)
    print(f"switchctl: no [hsm] section in {cfg.source}", file=sys.stderr)
    raise SystemExit(2)


def _unavailable(exc: Exception) -> int:
    print(f"switchctl: hsm unavailable: {exc}", file=sys.stderr)
    return 1


def cmd_init_dev(args: argparse.Namespace) -> int:
    from hsm.devtoken import init_dev_token
    from hsm.errors import HsmUnavailable

    settings = _settings(args, dev_default=True)
    try:
        steps = init_dev_token(settings)
    except (HsmUnavailable, ValueError) as exc:
        return _unavailable(exc)
    if args.json:
        as_json([{"what": s.what, "name": s.name, "created": s.created} for s in steps])
        return 0
    for s in steps:
        print(f"{s.what:<6} {s.name}: {'created' if s.created else 'exists'}")
    if all(not s.created for s in steps):
        print(f"dev token {settings.token!r} exists; nothing to do")
    return 0


def _describe(settings: HsmSettings) -> list[dict[str, Any]]:
    from cryptography.hazmat.primitives import hashes

    from hsm.errors import HsmUnavailable
    from hsm.token import Token

    token = Token.open(settings)
    rows = []
    try:
        for spec in settings.keys:
            row: dict[str, Any] = {
                "label": spec.label,
                "algorithm": spec.algorithm,
                "active": spec.label == settings.active,
            }
            try:
                cert = token.key(spec.label).signing.cert
            except HsmUnavailable as exc:
                row.update(status=str(exc))
            else:
                row.update(
                    status="ok",
                    subject=cert.subject.rfc4514_string(),
                    serial=format(cert.serial_number, "x"),
                    not_after=cert.not_valid_after_utc.isoformat(),
                    expired=cert.not_valid_after_utc < datetime.now(UTC),
                    cert_sha256=cert.fingerprint(hashes.SHA256()).hex(),
                )
            rows.append(row)
    finally:
        token.close()
    return rows


def cmd_keys(args: argparse.Namespace) -> int:
    from hsm.errors import HsmUnavailable

    settings = _settings(args)
    try:
        rows = _describe(settings)
    except HsmUnavailable as exc:
        return _unavailable(exc)
    if args.json:
        as_json({"module": settings.module, "token": settings.token, "keys": rows})
    else:
        print(f"token {settings.token!r} via {settings.module}\n")
        table(
            ["label", "algorithm", "active", "subject", "serial", "not_after", "status"],
            [
                (
                    r["label"],
                    r["algorithm"],
                    "*" if r["active"] else "",
                    r.get("subject"),
                    r.get("serial"),
                    r.get("not_after"),
                    "EXPIRED" if r.get("expired") else r["status"],
                )
                for r in rows
            ],
        )
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def cmd_cert(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.serialization import Encoding

    from hsm.errors import HsmUnavailable
    from hsm.token import Token

    settings = _settings(args)
    label = args.label or settings.active
    if label is None or label not in {k.label for k in settings.keys}:
        print(f"switchctl: {label!r} is not a configured key label", file=sys.stderr)
        return 2
    try:
        token = Token.open(settings)
        try:
            cert = token.key(label).signing.cert
        finally:
            token.close()
    except HsmUnavailable as exc:
        return _unavailable(exc)
    pem = cert.public_bytes(Encoding.PEM).decode()
    if args.json:
        as_json({"label": label, "pem": pem})
    else:
        sys.stdout.write(pem)
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from hsm.errors import HsmUnavailable, SigningError
    from hsm.signer import sign_sync

    settings = _settings(args)
    try:
        signed = sign_sync(settings, [f.read_bytes() for f in args.files])
    except (HsmUnavailable, SigningError) as exc:
        return _unavailable(exc)
    out = []
    for f, s in zip(args.files, signed, strict=True):
        target = f.with_name(f.name + ".signed")
        target.write_bytes(s.data)
        out.append({"file": str(f), "signed": str(target), "key_label": s.key_label})
    if args.json:
        as_json(out)
    else:
        for o in out:
            print(f"{o['file']}: signed with {o['key_label']} -> {o['signed']}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from cryptography import x509

    from hsm.errors import HsmUnavailable, SignatureInvalid
    from hsm.token import Token
    from hsm.xmldsig import verify_envelope

    if args.cert:
        certs = [x509.load_pem_x509_certificate(p.read_bytes()) for p in args.cert]
    else:
        settings = _settings(args)
        try:
            token = Token.open(settings)
            try:
                certs = [token.key(k.label).signing.cert for k in settings.keys]
            finally:
                token.close()
        except HsmUnavailable as exc:
            return _unavailable(exc)
    results = []
    for f in args.files:
        try:
            v = verify_envelope(f.read_bytes(), certs)
        except SignatureInvalid as exc:
            results.append({"file": str(f), "valid": False, "reference": exc.reference, "reason": exc.message})
        else:
            subject = v.cert.subject.rfc4514_string()
            results.append({"file": str(f), "valid": True, "algorithm": v.algorithm, "subject": subject})
    if args.json:
        as_json(results)
    else:
        for r in results:
            if r["valid"]:
                print(f"{r['file']}: signature valid ({r['algorithm']}, {r['subject']})")
            else:
                print(f"{r['file']}: signature INVALID [{r['reference']}]: {r['reason']}")
    return 0 if all(r["valid"] for r in results) else 1
