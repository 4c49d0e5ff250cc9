"""Benchmark messages: a richly populated CBPR+-style pacs.008.001.08 (~4.5 KB), as real payments look.

The test builders make minimal messages (~1.5 KB); real cross-border pacs.008s carry structured addresses,
intermediary agents, charges, regulatory reporting and remittance data. Both shapes are benchmarked.
"""

from __future__ import annotations

from tests.builders import stable_uetr

_ADDRESS = (
    "<PstlAdr><StrtNm>{street}</StrtNm><BldgNb>{nb}</BldgNb><PstCd>{pc}</PstCd><TwnNm>{town}</TwnNm>"
    "<CtrySubDvsn>{sub}</CtrySubDvsn><Ctry>{ctry}</Ctry></PstlAdr>"
)


def _addr(street: str, nb: str, pc: str, town: str, sub: str, ctry: str) -> str:
    return _ADDRESS.format(street=street, nb=nb, pc=pc, town=town, sub=sub, ctry=ctry)


def _agent(tag: str, bic: str, name: str, address: str) -> str:
    return f"<{tag}><FinInstnId><BICFI>{bic}</BICFI><Nm>{name}</Nm>{address}</FinInstnId></{tag}>"


def rich_pacs008(msg_id: str, e2e: str, amount: str = "125430.55", ccy: str = "USD") -> bytes:
    """A single-transaction CBPR+-style pacs.008 with AppHdr, valid against pacs.008.001.08 and our rules."""
    uetr = stable_uetr(e2e)
    ny = _addr("Avenue of the Americas", "1290", "10104", "New York", "NY", "US")
    ff = _addr("Taunusanlage", "12", "60325", "Frankfurt am Main", "Hessen", "DE")
    ld = _addr("Lombard Street", "54", "EC3V 9DS", "London", "England", "GB")
    doc = f"""<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08"><FIToFICstmrCdtTrf><GrpHdr>\
<MsgId>{msg_id}</MsgId><CreDtTm>2026-11-23T10:00:00Z</CreDtTm><NbOfTxs>1</NbOfTxs>\
<SttlmInf><SttlmMtd>INDA</SttlmMtd></SttlmInf></GrpHdr><CdtTrfTxInf>\
<PmtId><InstrId>{e2e}-I</InstrId><EndToEndId>{e2e}</EndToEndId><TxId>{e2e}-T</TxId><UETR>{uetr}</UETR></PmtId>\
<PmtTpInf><InstrPrty>NORM</InstrPrty><SvcLvl><Cd>G001</Cd></SvcLvl><CtgyPurp><Cd>SUPP</Cd></CtgyPurp></PmtTpInf>\
<IntrBkSttlmAmt Ccy="{ccy}">{amount}</IntrBkSttlmAmt><IntrBkSttlmDt>2026-11-23</IntrBkSttlmDt>\
<InstdAmt Ccy="{ccy}">{amount}</InstdAmt><ChrgBr>DEBT</ChrgBr>\
<ChrgsInf><Amt Ccy="{ccy}">0.00</Amt><Agt><FinInstnId><BICFI>AAAAUS33XXX</BICFI></FinInstnId></Agt></ChrgsInf>\
<InstgAgt><FinInstnId><BICFI>AAAAUS33XXX</BICFI></FinInstnId></InstgAgt>\
<InstdAgt><FinInstnId><BICFI>BBBBDEFFXXX</BICFI></FinInstnId></InstdAgt>\
{_agent("IntrmyAgt1", "CCCCGB2LXXX", "Correspondent Bank London plc", ld)}\
<UltmtDbtr><Nm>Global Widgets Holding Inc.</Nm>{ny}<Id><OrgId><LEI>5493001KJTIIGC8Y1R12</LEI></OrgId></Id></UltmtDbtr>\
<Dbtr><Nm>Global Widgets Manufacturing LLC</Nm>{ny}<Id><OrgId><LEI>5493001KJTIIGC8Y1R12</LEI></OrgId></Id>\
<CtryOfRes>US</CtryOfRes><CtctDtls><Nm>Treasury Operations</Nm><PhneNb>+1-212-5550100</PhneNb>\
<EmailAdr>treasury@widgets.example</EmailAdr></CtctDtls></Dbtr>\
<DbtrAcct><Id><Othr><Id>1234567890123</Id></Othr></Id><Ccy>{ccy}</Ccy><Nm>Operating account</Nm></DbtrAcct>\
{_agent("DbtrAgt", "AAAAUS33XXX", "Bank A New York Branch", ny)}\
{_agent("CdtrAgt", "BBBBDEFFXXX", "Bank B Frankfurt", ff)}\
<Cdtr><Nm>Rheinmetall Feinmechanik GmbH</Nm>{ff}<Id><OrgId><AnyBIC>BBBBDEFFXXX</AnyBIC></OrgId></Id>\
<CtryOfRes>DE</CtryOfRes></Cdtr>\
<CdtrAcct><Id><IBAN>DE89370400440532013000</IBAN></Id><Nm>Main account</Nm></CdtrAcct>\
<UltmtCdtr><Nm>Rheinmetall Feinmechanik Holding AG</Nm>{ff}</UltmtCdtr>\
<InstrForCdtrAgt><InstrInf>Please credit without delay, invoice series 2026-11</InstrInf></InstrForCdtrAgt>\
<Purp><Cd>GDDS</Cd></Purp>\
<RgltryRptg><DbtCdtRptgInd>DEBT</DbtCdtRptgInd><Authrty><Nm>Federal Reserve Bank</Nm><Ctry>US</Ctry></Authrty>\
<Dtls><Tp>TRADE</Tp><Ctry>DE</Ctry><Cd>101</Cd><Amt Ccy="{ccy}">{amount}</Amt>\
<Inf>Machine parts HS 8466</Inf></Dtls></RgltryRptg>\
<RmtInf><Ustrd>INV-2026-11-0042 PO-77812 spindle assemblies, 40 units, DAP Frankfurt</Ustrd>\
<Strd><RfrdDocInf><Tp><CdOrPrtry><Cd>CINV</Cd></CdOrPrtry></Tp><Nb>INV-2026-11-0042</Nb>\
<RltdDt>2026-11-02</RltdDt></RfrdDocInf><RfrdDocAmt><DuePyblAmt Ccy="{ccy}">{amount}</DuePyblAmt></RfrdDocAmt>\
<CdtrRefInf><Tp><CdOrPrtry><Cd>SCOR</Cd></CdOrPrtry></Tp><Ref>RF18539007547034</Ref></CdtrRefInf>\
<AddtlRmtInf>Payment for order PO-77812, 40 units spindle assembly</AddtlRmtInf></Strd></RmtInf>\
</CdtTrfTxInf></FIToFICstmrCdtTrf></Document>"""
    hdr = f"""<AppHdr xmlns="urn:iso:std:iso:20022:tech:xsd:head.001.001.02">\
<Fr><FIId><FinInstnId><BICFI>AAAAUS33XXX</BICFI></FinInstnId></FIId></Fr>\
<To><FIId><FinInstnId><BICFI>BBBBDEFFXXX</BICFI></FinInstnId></FIId></To>\
<BizMsgIdr>{msg_id}</BizMsgIdr><MsgDefIdr>pacs.008.001.08</MsgDefIdr><BizSvc>swift.cbprplus.02</BizSvc>\
<CreDt>2026-11-23T10:00:00Z</CreDt></AppHdr>"""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<BizMsg xmlns="urn:switchd:xsd:envelope">{hdr}{doc}</BizMsg>'
    ).encode()
