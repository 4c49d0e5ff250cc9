"""Signing and verification in the running daemon: a SoftHSM dev token, HTTP on 127.0.0.1, a directory connector
whose files are exactly what a bank would receive, the journal in a real SQLite file, and checks by code we did not
write (signxml with the BAH reference resolution, xmlsec1/openssl made signatures)."""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import trio
from lxml import etree

from hsm.errors import SignatureInvalid
from hsm.settings import HsmSettings
from hsm.xmldsig import verify_envelope
from switchd.config import load_config
from switchd.journal import Journal
from tests.builders import Tx, pacs008
from tests.conftest import RunningDaemon, start_daemon, switchctl, write_config
from tests.hsm.conftest import DevToken, SoftwareKey, exported_cert, hsm_keys, make_software_key, signers_of
from tests.hsm.tools import foreign_signed, openssl, signxml_verify

DS = "{http://www.w3.org/2000/09/xmldsig#}"
WAIT_S = 30
XML = {"content-type": "application/xml"}


def hsm_table(settings: HsmSettings, *, active: str = "sig-rsa", pin_file: str | None = None) -> str:
    hsm = f"""
[hsm]
token = "{settings.token}"
pin_file = "{pin_file or settings.pin_file}"
softhsm2_conf = "{settings.softhsm2_conf}"
login_lock = "{settings.login_lock}"
active = "{active}"
workers = 1
"""
    return hsm + hsm_keys()


def connector_and_signer(outbox_dir: Path, *bank_c_certs: Path) -> str:
    signing = f"\nsigning_certs = {[str(c) for c in bank_c_certs]!r}".replace("'", '"') if bank_c_certs else ""
    return f"""
[[participants]]
name = "bank-c"
bics = ["CCCCGB2LXXX"]
token_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"{signing}

[[connectors]]
name = "outdir"
kind = "directory"
backoff_initial_s = 0.05
backoff_max_s = 0.5

[connectors.options]
directory = "{outbox_dir}"

[[routes]]
name = "all"
connector = "outdir"
"""


async def start(tmp_path: Path, nursery: trio.Nursery, hsm: str, extra: str = "") -> RunningDaemon:
    outbox_dir = tmp_path / "to-bank"
    outbox_dir.mkdir(exist_ok=True)
    return await start_daemon(write_config(tmp_path, extra=connector_and_signer(outbox_dir) + extra + hsm), nursery)


async def delivered_file(outbox_dir: Path, msg_id: str) -> bytes:
    """The bytes the directory connector wrote for `msg_id` (waits for them)."""
    needle = f"<MsgId>{msg_id}</MsgId>".encode()
    with trio.fail_after(WAIT_S):
        while True:
            for f in sorted(outbox_dir.iterdir()):
                if f.is_file() and not f.name.startswith(".") and needle in (data := f.read_bytes()):
                    return data
            await trio.sleep(0.05)


async def journaled_delivered(rd: RunningDaemon, message_id: str) -> None:
    """Until the journal records the delivery of `message_id` (the file appears a moment before: the connector
    writes it, then the delivery worker journals its outcome)."""
    async with rd.client() as c:
        with trio.fail_after(WAIT_S):
            while True:
                events = (await c.get(f"/v1/messages/{message_id}")).json()["events"]
                if any(e["kind"] == "delivered" for e in events):
                    return
                await trio.sleep(0.05)


async def wait_readyz(rd: RunningDaemon, status: int) -> None:
    """Until /readyz answers `status`."""
    async with rd.client(None) as anon:
        with trio.fail_after(WAIT_S):
            while (await anon.get("/readyz")).status_code != status:
                await trio.sleep(0.1)


def assert_waits_unsent(rd: RunningDaemon, mid: str) -> None:
    """The message's one part is pending in the journal and no attempt was made: nothing left unsigned."""
    journal = Journal.open(load_config(rd.config_path).journal_path, readonly=True)
    try:
        (part,) = journal.outbox(mid)
        assert part.state == "pending" and journal.attempts(part.id) == []
    finally:
        journal.close()


def signature_method(data: bytes) -> str:
    method = etree.fromstring(data).find(f".//{DS}SignatureMethod")
    assert method is not None
    return str(method.get("Algorithm", "")).rpartition("#")[2]


@pytest.fixture
async def signing_daemon(
    dev_token: DevToken, tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[tuple[RunningDaemon, Path]]:
    rd = await start(tmp_path, nursery, hsm_table(dev_token.settings))
    yield rd, tmp_path / "to-bank"
    await rd.stop()


async def test_outbound_messages_are_signed_exported_and_rotated(
    signing_daemon: tuple[RunningDaemon, Path], tmp_path: Path
) -> None:
    rd, outbox_dir = signing_daemon
    async with rd.client() as c:
        r = await c.post("/v1/messages", content=pacs008(msg_id="SIGN-1"), headers=XML)
        assert r.status_code == 202, r.text
        first_id = r.json()["id"]
    sent = await delivered_file(outbox_dir, "SIGN-1")

    # Checked by signxml (adapted only in reference resolution) against the certificate switchctl exports.
    rsa_cert = exported_cert(rd.config_path)
    assert len(signxml_verify(sent, rsa_cert)) == 3
    assert verify_envelope(sent, [rsa_cert]).algorithm == "rsa-sha256"
    # One changed character in the Document, the AppHdr or the KeyInfo fails.
    for before, after in ((b"SIGN-1</MsgId>", b"SIGN-2</MsgId>"), (b"<BizMsgIdr>SIGN-1", b"<BizMsgIdr>SIGN-2")):
        assert before in sent
        with pytest.raises(SignatureInvalid):
            verify_envelope(sent.replace(before, after, 1), [rsa_cert])
    root = etree.fromstring(sent)
    x509_el = root.find(f".//{DS}X509Certificate")
    assert x509_el is not None and x509_el.text
    x509_el.text = x509_el.text.replace("A", "B", 1)
    with pytest.raises(SignatureInvalid):
        verify_envelope(etree.tostring(root), [rsa_cert])

    # `switchctl export --sent` writes exactly those bytes and names the key.
    await journaled_delivered(rd, first_id)
    out = tmp_path / "exported.xml"
    done = switchctl(rd.config_path, "export", first_id, "--sent", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == sent
    assert "key_label=sig-rsa" in done.stderr

    # A bare Document gets an AppHdr built by switchd (from the switch to the bank, BizMsgIdr = MsgId), then signed.
    async with rd.client() as c:
        r = await c.post(
            "/v1/messages",
            content=pacs008(msg_id="BARE-1", app_hdr=False),
            headers=XML,
        )
        assert r.status_code == 202, r.text
    bare = await delivered_file(outbox_dir, "BARE-1")
    signxml_verify(bare, rsa_cert)
    hdr = etree.fromstring(bare).find("{*}AppHdr")
    assert hdr is not None
    assert hdr.findtext("{*}BizMsgIdr") == "BARE-1"
    assert hdr.findtext("{*}MsgDefIdr") == "pacs.008.001.08"
    assert hdr.findtext("{*}Fr/{*}FIId/{*}FinInstnId/{*}BICFI") == load_config(rd.config_path).switch_bic
    assert hdr.findtext("{*}To/{*}FIId/{*}FinInstnId/{*}BICFI") == "BBBBDEFFXXX"
    assert hdr.findtext("{*}CreDt")

    # Rotation: make the EC key active with a reload; the next message is signed with it, the first still verifies.
    rd.config_path.write_text(rd.config_path.read_text().replace('active = "sig-rsa"', 'active = "sig-ec"'))
    rd.daemon.request_reload()
    with trio.fail_after(WAIT_S):
        while rd.daemon.config.hsm is None or rd.daemon.config.hsm.active != "sig-ec":
            await trio.sleep(0.05)
    async with rd.client() as c:
        r = await c.post("/v1/messages", content=pacs008(msg_id="SIGN-2"), headers=XML)
        assert r.status_code == 202, r.text
        second_id = r.json()["id"]
    sent2 = await delivered_file(outbox_dir, "SIGN-2")
    ec_cert = exported_cert(rd.config_path, "sig-ec")
    assert signature_method(sent2) == "ecdsa-sha256"
    assert len(signxml_verify(sent2, ec_cert)) == 3
    assert verify_envelope(sent, [rsa_cert, ec_cert]).algorithm == "rsa-sha256"
    with pytest.raises(SignatureInvalid):
        verify_envelope(sent2, [rsa_cert])

    # The journal records which key signed what.
    journal = Journal.open(load_config(rd.config_path).journal_path, readonly=True)
    try:
        labels = {}
        for mid in (first_id, second_id):
            (part,) = journal.outbox(mid)
            labels[mid] = [a.key_label for a in journal.attempts(part.id) if a.outcome == "delivered"]
    finally:
        journal.close()
    assert labels == {first_id: ["sig-rsa"], second_id: ["sig-ec"]}
    done = switchctl(rd.config_path, "show", second_id)
    assert "key_label=sig-ec" in done.stdout


async def test_token_unusable_at_start_readiness_fails_messages_wait_then_go_signed(
    dev_token: DevToken, tmp_path: Path, nursery: trio.Nursery
) -> None:
    assert dev_token.settings.pin_file is not None
    late_pin = tmp_path / "late.pin"  # not there yet: the PIN cannot be read
    rd = await start(tmp_path, nursery, hsm_table(dev_token.settings, pin_file=str(late_pin)))
    outbox_dir = tmp_path / "to-bank"
    try:
        async with rd.client(None) as anon:
            r = await anon.get("/readyz")
            assert r.status_code == 503
            assert "PIN" in r.json()["problems"]["hsm"]
        async with rd.client() as c:
            r = await c.post("/v1/messages", content=pacs008(msg_id="WAIT-1"), headers=XML)
            assert r.status_code == 202, r.text  # accepted: it is durable, and waits for the HSM
            mid = r.json()["id"]
        await trio.sleep(1.0)
        assert not any(outbox_dir.iterdir()), "nothing may leave unsigned"
        assert_waits_unsent(rd, mid)

        # The operator's view says what is wrong (status runs switchctl as a separate process: off the trio thread).
        await trio.sleep(1.5)  # the runtime file is rewritten every second
        status = await trio.to_thread.run_sync(switchctl, rd.config_path, "status")
        assert "not ready because of hsm" in status.stdout and "UNAVAILABLE" in status.stdout, status.stdout

        late_pin.write_text(Path(dev_token.settings.pin_file).read_text())
        late_pin.chmod(0o600)
        sent = await delivered_file(outbox_dir, "WAIT-1")
        signxml_verify(sent, exported_cert(rd.config_path))
        await wait_readyz(rd, 200)
        await trio.sleep(1.5)
        status = await trio.to_thread.run_sync(switchctl, rd.config_path, "status")
        assert "signing  key 'sig-rsa' on token" in status.stdout and "signed: ready" in status.stdout, status.stdout
    finally:
        await rd.stop()


@pytest.fixture
def bank_c_key(tmp_path: Path) -> tuple[Path, Path]:
    """bank-c's own key and certificate, made by openssl (not by our code)."""
    key_pem, cert_pem = tmp_path / "bank-c.key.pem", tmp_path / "bank-c.cert.pem"
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key_pem), "-out", str(cert_pem),
        "-days", "2", "-subj", "/CN=Bank C/O=Elsewhere",
    )  # fmt: skip
    return key_pem, cert_pem


@pytest.fixture
def throwaway(tmp_path: Path) -> Path:
    path = tmp_path / "throwaway.pem"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path))
    return path


async def test_inbound_signature_required_for_participants_with_certificates(
    tmp_path: Path,
    nursery: trio.Nursery,
    bank_c_key: tuple[Path, Path],
    throwaway: Path,
    software_keys: Callable[[str], SoftwareKey],
) -> None:
    key_pem, cert_pem = bank_c_key
    outbox_dir = tmp_path / "to-bank"
    outbox_dir.mkdir()
    token = "demo-bank-c"
    # bank-c's previous key: still configured, its certificate expired yesterday
    expired = make_software_key(tmp_path, "rsa", "Bank C 2025", valid_days=(-30, -1))
    cfg = write_config(tmp_path, extra=connector_and_signer(outbox_dir, cert_pem, expired.cert_pem))
    cfg.write_text(cfg.read_text().replace("0" * 64, hashlib.sha256(token.encode()).hexdigest()))
    rd = await start_daemon(cfg, nursery)

    def message(msg_id: str) -> bytes:
        return pacs008(msg_id=msg_id, instg_bic="CCCCGB2LXXX", instd_bic="BBBBDEFFXXX", txs=[Tx(end_to_end_id=msg_id)])

    work = tmp_path / "work"
    work.mkdir()
    good = foreign_signed(message("IN-GOOD"), key_pem, cert_pem, work, throwaway, ec=False)
    other = foreign_signed(message("IN-OTHER"), software_keys("rsa").key_pem, software_keys("rsa").cert_pem, work,
                           throwaway, ec=False)  # fmt: skip
    tampered = foreign_signed(message("IN-TAMPER"), key_pem, cert_pem, work, throwaway, ec=False).replace(
        b"IN-TAMPER</EndToEndId>", b"IN-TAMPEX</EndToEndId>"
    )
    too_old = foreign_signed(message("IN-EXPIRED"), expired.key_pem, expired.cert_pem, work, throwaway, ec=False)
    # Sgntr holding something other than a ds:Signature: schema-valid (any element of another namespace), not signed.
    no_signature = message("IN-EMPTY").replace(
        b"</AppHdr>", b'<Sgntr><x:Seal xmlns:x="urn:example:x"/></Sgntr></AppHdr>', 1
    )
    assert b"<Sgntr>" in no_signature
    try:
        async with httpx.AsyncClient(
            base_url=rd.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as c:
            post = {"headers": {"content-type": "application/xml"}}
            r = await c.post("/v1/messages", content=good, **post)  # type: ignore[arg-type]
            assert r.status_code == 202, r.text
            cases = [
                ("DS0A", message("IN-UNSIGNED")),
                ("DS0A", pacs008(msg_id="IN-BARE", instg_bic="CCCCGB2LXXX", app_hdr=False)),
                ("DS0E", other),
                ("DS0D", too_old),
                ("DS0B", tampered),
            ]
            for code, body in cases:
                r = await c.post("/v1/messages", content=body, **post)  # type: ignore[arg-type]
                assert r.status_code == 403, (code, r.text)
                answer = r.json()
                assert [e["code"] for e in answer["errors"]] == [code]
                report = etree.fromstring(answer["status_report"].encode())
                assert report.findtext(".//{*}GrpSts") == "RJCT"
                assert report.findtext(".//{*}StsRsnInf/{*}Rsn/{*}Cd") == code
        # The good one went on (its signature kept as the participant made it, inside the inbound original).
        await delivered_file(outbox_dir, "IN-GOOD")
    finally:
        await rd.stop()


async def test_hsm_lost_at_runtime_messages_wait_then_go_signed(
    dev_token: DevToken, tmp_path: Path, nursery: trio.Nursery
) -> None:
    assert dev_token.settings.pin_file is not None
    pin = tmp_path / "runtime.pin"
    pin.write_text(Path(dev_token.settings.pin_file).read_text())
    pin.chmod(0o600)
    rd = await start(tmp_path, nursery, hsm_table(dev_token.settings, pin_file=str(pin)))
    outbox_dir = tmp_path / "to-bank"
    try:
        async with rd.client() as c:
            r = await c.post("/v1/messages", content=pacs008(msg_id="RT-1"), headers=XML)
            assert r.status_code == 202, r.text
        await delivered_file(outbox_dir, "RT-1")

        # The HSM goes away: the signer process dies and a new one cannot log in (the PIN cannot be read).
        pin.rename(tmp_path / "runtime.pin.away")
        victims = signers_of()
        assert victims, "no signer process found"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        async with rd.client() as c:
            r = await c.post("/v1/messages", content=pacs008(msg_id="RT-2"), headers=XML)
            assert r.status_code == 202, r.text  # intake stays open: the message is durable and waits
            mid = r.json()["id"]
        await wait_readyz(rd, 503)
        await trio.sleep(1.0)
        assert not [f for f in outbox_dir.iterdir() if b"RT-2" in f.read_bytes()], "nothing may leave unsigned"
        assert_waits_unsent(rd, mid)

        # The HSM is back: the waiting message is signed and sent, readiness returns.
        (tmp_path / "runtime.pin.away").rename(pin)
        sent = await delivered_file(outbox_dir, "RT-2")
        signxml_verify(sent, exported_cert(rd.config_path))
        await wait_readyz(rd, 200)
    finally:
        await rd.stop()
