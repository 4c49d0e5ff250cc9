"""Hostile XML over HTTP: entity bombs, external entities, deep nesting, oversize. Refused, and nothing leaks."""

from __future__ import annotations

from pathlib import Path

from tests.builders import pacs008
from tests.conftest import RunningDaemon

XML = {"Content-Type": "application/xml"}
NS = "urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08"

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">\n' for i in range(1, 10)
    )
    + f']>\n<Document xmlns="{NS}"><FIToFICstmrCdtTrf>&lol9;</FIToFICstmrCdtTrf></Document>'
).encode()


def _xxe(target: Path) -> bytes:
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY xxe SYSTEM "file://{target}">]>\n'
        f'<Document xmlns="{NS}"><FIToFICstmrCdtTrf><GrpHdr><MsgId>&xxe;</MsgId></GrpHdr>'
        "</FIToFICstmrCdtTrf></Document>"
    ).encode()


async def test_billion_laughs_is_refused(daemon: RunningDaemon) -> None:
    async with daemon.client() as c:
        r = await c.post("/v1/messages", content=BILLION_LAUGHS, headers=XML)
        assert r.status_code == 400
        assert "DOCTYPE" in r.json()["errors"][0]["detail"]
        # the daemon is still serving
        ok = await c.post("/v1/messages", content=pacs008(msg_id="AFTER-BOMB"), headers=XML)
        assert ok.status_code == 202


async def test_external_entity_is_refused_and_nothing_leaks(daemon: RunningDaemon, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    async with daemon.client() as c:
        r = await c.post("/v1/messages", content=_xxe(secret), headers=XML)
        assert r.status_code == 400
        assert "TOP-SECRET-VALUE" not in r.text
        detail = await c.get(f"/v1/messages/{r.json()['id']}")
    assert "TOP-SECRET-VALUE" not in detail.text


async def test_parameter_entity_and_external_dtd_are_refused(daemon: RunningDaemon, tmp_path: Path) -> None:
    dtd = tmp_path / "evil.dtd"
    dtd.write_text("<!ENTITY % all \"<!ENTITY leak SYSTEM 'file:///etc/hostname'>\"> %all;")
    payloads = [
        f'<!DOCTYPE d [<!ENTITY % ext SYSTEM "file://{dtd}"> %ext;]><Document xmlns="{NS}">&leak;</Document>',
        f'<!DOCTYPE Document SYSTEM "file://{dtd}"><Document xmlns="{NS}"/>',
    ]
    async with daemon.client() as c:
        for p in payloads:
            r = await c.post("/v1/messages", content=p.encode(), headers=XML)
            assert r.status_code == 400, r.text


async def test_deep_nesting_is_refused(daemon: RunningDaemon) -> None:
    deep = f'<Document xmlns="{NS}">'.encode() + b"<a>" * 50_000 + b"</a>" * 50_000 + b"</Document>"
    async with daemon.client() as c:
        r = await c.post("/v1/messages", content=deep, headers=XML)
    assert r.status_code == 400
    assert "depth" in r.json()["errors"][0]["detail"].lower()


async def test_xinclude_is_not_processed(daemon: RunningDaemon, tmp_path: Path) -> None:
    secret = tmp_path / "inc.txt"
    secret.write_text("INCLUDED-SECRET")
    msg = (
        f'<Document xmlns="{NS}" xmlns:xi="http://www.w3.org/2001/XInclude"><FIToFICstmrCdtTrf>'
        f'<xi:include href="file://{secret}" parse="text"/></FIToFICstmrCdtTrf></Document>'
    ).encode()
    async with daemon.client() as c:
        r = await c.post("/v1/messages", content=msg, headers=XML)
    assert r.status_code == 422  # schema-invalid, and the include stays an unexpanded element
    assert "INCLUDED-SECRET" not in r.text
