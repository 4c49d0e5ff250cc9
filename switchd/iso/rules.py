"""Business rules an XSD cannot express, each reported with an ISO 20022 ExternalStatusReason1Code.

Run after XSD validation, on the Document (and AppHdr) of a payment message; every finding is returned, not the first.
Which rules apply to which message type: see `_RULES_BY_FAMILY` below the table.

Reason codes (names and definitions from the ISO 20022 external code set ExternalStatusReason1Code):

    code  name                                    when
    ----  --------------------------------------  ----------------------------------------------------------------
    AM19  InvalidGroupNumberOfTransactions        GrpHdr/NbOfTxs (camt.056 CtrlData/NbOfTxs) is not the number of
                                                  transactions in the message
    AM20  InvalidPaymentInfoNumberOfTransactions  pain.001/pain.008 PmtInf/NbOfTxs is not the number of its
                                                  transactions
    AM16  InvalidGroupControlSum                  GrpHdr/CtrlSum (camt.056 CtrlData/CtrlSum) is not the sum of
                                                  every transaction amount
    AM17  InvalidPaymentInfoControlSum            pain.001/pain.008 PmtInf/CtrlSum is not the sum of its amounts
    AM10  InvalidControlSum                       pacs.008/pacs.009 GrpHdr/TtlIntrBkSttlmAmt, pacs.004
                                                  TtlRtrdIntrBkSttlmAmt, is not the sum of the transaction amounts
                                                  ("sum of amounts does not equal the control sum")
    CURR  IncorrectCurrency                       a transaction amount's currency differs from the total's
    AM11  InvalidTransactionCurrency              a currency code ISO 4217 does not list, or one without minor
                                                  units (metals, funds, XXX/XTS): no credit transfer is made in it
    CH20  DecimalPointsNotCompatibleWithCurrency  more decimals than the currency's ISO 4217 minor units
    RC01  BankIdentifierIncorrect                 a BICFI (any agent, AppHdr Fr/To) breaks ISO 9362 format or
                                                  names a country that is not ISO 3166
    AC02  InvalidDebtorAccountNumber              DbtrAcct IBAN: wrong country, length, BBAN format or check digits
    AC03  InvalidCreditorAccountNumber            CdtrAcct IBAN: same checks
    AC01  IncorrectAccountNumber                  any other IBAN in the message (agents' or charges accounts)
    CH16  ElementContentFormallyIncorrect         UETR is not a canonical UUID version 4 (variant 8-b)
    CH17  ElementNotAdmitted                      pacs.008/pacs.009 InstgAgt / InstdAgt both in GrpHdr and in a
                                                  transaction (message rules InstructingAgentRule,
                                                  InstructedAgentRule)
    CH21  RequiredCompulsoryElementMissing        pacs.004, pacs.028, camt.056, camt.029: a transaction that does
                                                  not name its original message (OrgnlGrpInf/OrgnlMsgId, its own
                                                  or its group's) or its original transaction (OrgnlEndToEndId,
                                                  OrgnlTxId, OrgnlUETR or OrgnlInstrId): it cannot be correlated
    MD01  NoMandate                               pain.008: a collection without DrctDbtTx/MndtRltdInf/MndtId
    FF01  InvalidFileFormat                       AppHdr and Document disagree: MsgDefIdr is not the Document's
                                                  message, or BizMsgIdr is not GrpHdr/MsgId
    AG08  InvalidAccessRights                     (check_sender_authority) the sender acts as a BIC it does not
                                                  own, or as an agent identified without a BIC

Why these codes. AM19/AM20 over the generic AM18 (InvalidNumberOfTransactions), whose definition reserves it for
when one "cannot specify between group and payment information levels": we always can. AM16 is the GrpHdr/CtrlSum
element; TtlIntrBkSttlmAmt gets the generic AM10 so the sender can tell which total is wrong. AM11 over AM03
(NotAllowedCurrency: "a non processable currency outside of existing agreement"), which we keep for a future
per-route currency agreement; an unknown code is invalid, not disallowed. CH20 is the code made for the decimals
rule. RC01 ("has an incorrect format") fits a malformed BIC better than RC02-RC07 ("invalid or missing"), which
also mean unknown. AC02/AC03 name the account like AM19 names the level; AC01 remains for other accounts. There
is no UETR code; CH16 says the content of an element is formally incorrect. FF01 for an envelope whose header
misdescribes its Document (the file's format is inconsistent). AG08 "transaction failed due to invalid or missing
user or access right": the authenticated participant has no right to act as that bank. CH21 ("mandatory element is
missing"): the XSD leaves every Orgnl* id optional, but a return, cancellation, status request or resolution that
names no original cannot be matched with the payment it is about. MD01 ("no mandate") is the code made for a
direct debit without one: the XSD leaves MndtRltdInf optional, a collection needs it.

Sources: the ExternalStatusReason1Code table as republished by Thought Machine's Vault Payments docs
(vault-portal.thoughtmachine.net/vault-payments/latest/EN/using_vault_payments/manual_decisions) and netbank.ph's
API docs; the InstructingAgentRule / InstructedAgentRule / TotalInterbankSettlementAmount(AndSum)Rule names from
the ISO 20022 message definition (as mirrored by tools20022). The BIC pattern follows the official
BICFIDec2014Identifier type: ISO 9362:2014 allows digits in the 4-character party prefix.

Amounts are compared by value, as XSD `fractionDigits` does: 100.50 EUR and 100.5 EUR are the same, and
"100.0" JPY has no decimals.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from decimal import Decimal
from types import MappingProxyType

import pycountry  # comes with schwifty, which uses it for the same purpose
from lxml import etree
from schwifty import registry as iban_registry
from schwifty.exceptions import SchwiftyException

from switchd.errors import Finding
from switchd.iso.catalogue import MessageDef
from switchd.iso.currencies import MINOR_UNITS
from switchd.iso.refs import MessageRefs, TxRefs, tx_by_path, tx_for
from switchd.iso.xml import element_at, element_path

# ISO 3166 alpha-2, plus XK: SWIFT issues Kosovo BICs with the user-assigned code XK.
COUNTRIES: frozenset[str] = frozenset({c.alpha_2 for c in pycountry.countries} | {"XK"})

_BIC = re.compile(r"[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}(?:[A-Z0-9]{3})?")
_UUID4 = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}")
_IBAN_CHARS = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{1,30}")
# ISO 7064 MOD 97-10 turns letters into two digits: A=10 ... Z=35. A list indexed by code point rather than a
# dict: str.translate with it is twice as fast (~0.6 us for an IBAN).
_NUMERIFY: list[str] = [chr(i) for i in range(128)]
for _i in range(26):
    _NUMERIFY[ord("A") + _i] = str(10 + _i)


def _iban_specs() -> Mapping[str, tuple[int, re.Pattern[str]]]:
    # schwifty's registry (the SWIFT IBAN registry, maintained upstream), read once into (length, BBAN regex):
    # building a schwifty IBAN costs ~20 us here, iban_problem ~6 us.
    specs = {}
    for cc in sorted(COUNTRIES):
        try:
            spec = iban_registry.get_iban_spec(cc)
        except SchwiftyException:
            continue
        specs[cc] = (spec.iban_length, spec.regex)
    return MappingProxyType(specs)


IBAN_SPECS: Mapping[str, tuple[int, re.Pattern[str]]] = _iban_specs()
# The check-digit suffix of each country, already numerified: "DE" -> "131400" (country + "00").
_IBAN_SUFFIX: Mapping[str, str] = MappingProxyType({cc: (cc + "00").translate(_NUMERIFY) for cc in IBAN_SPECS})

# BICs found valid, so the handful of BICs a message names (its agents, AppHdr Fr/To, each checked by more than
# one rule) cost a set lookup (~0.02 us) rather than bic_problem (~1 us). bic_problem is a pure function of the
# text, so this changes no verdict. A network has tens of thousands of BICs at most; the cap bounds the memory
# a stream of made-up valid-looking BICs could take (cleared when full: refilling costs ~1 us a BIC).
_VALID_BICS: set[str] = set()
_MAX_VALID_BICS = 100_000

_IBAN_CODES: Mapping[str, str] = MappingProxyType({"DbtrAcct": "AC02", "CdtrAcct": "AC03"})  # else AC01


# -- single-value checks (public: other modules and switchctl may reuse them) -----------------------------------


def bic_problem(bic: str) -> str | None:
    """Why `bic` is not an ISO 9362 BIC (8 or 11 characters, real country), or None if it is one."""
    if len(bic) not in (8, 11):
        return f"BIC {bic!r} has {len(bic)} characters, not 8 or 11"
    if _BIC.fullmatch(bic) is None:
        return f"BIC {bic!r} is not 4 letters/digits, 2 letters (country), 2 and optionally 3 letters/digits"
    if bic[4:6] not in COUNTRIES:
        return f"BIC {bic!r} names country {bic[4:6]!r}, which is not an ISO 3166 code"
    return None


def _known_bic_problem(bic: str) -> str | None:
    """bic_problem(bic), remembering the BICs found valid."""
    if bic in _VALID_BICS:
        return None
    problem = bic_problem(bic)
    if problem is None:
        if len(_VALID_BICS) >= _MAX_VALID_BICS:
            _VALID_BICS.clear()
        _VALID_BICS.add(bic)
    return problem


def iban_problem(iban: str) -> str | None:
    """Why `iban` is not a valid IBAN (country, length, BBAN format, ISO 7064 check digits), or None."""
    value = iban.upper()
    if _IBAN_CHARS.fullmatch(value) is None:
        return f"IBAN {iban!r} is not 2 letters, 2 digits and up to 30 letters/digits"
    country = value[:2]
    spec = IBAN_SPECS.get(country)
    if spec is None:
        return f"IBAN {iban!r}: country {country!r} has no IBAN format"
    length, bban_format = spec
    if len(value) != length:
        return f"IBAN {iban!r} has {len(value)} characters; {country} IBANs have {length}"
    bban = value[4:]
    if bban_format.match(bban) is None:
        return f"IBAN {iban!r}: the account part does not follow the {country} format"
    # Compute the check digits rather than test "mod 97 == 1": that test also passes the aliases 00, 01 and 99.
    # Many countries' BBANs are all digits: nothing to translate then (the regex above made them ASCII).
    digits = bban if bban.isdigit() else bban.translate(_NUMERIFY)
    expected = 98 - int(digits + _IBAN_SUFFIX[country]) % 97
    if int(value[2:4]) != expected:  # two ASCII digits, by the regex above
        return f"IBAN {iban!r} has check digits {value[2:4]}, expected {expected:02d}"
    return None


def amount_problem(amount: Decimal, currency: str) -> tuple[str, str] | None:
    """(code, why) when `amount` in `currency` breaks ISO 4217 (unknown code, too many decimals), else None."""
    if currency not in MINOR_UNITS:
        return "AM11", f"currency {currency!r} is not an ISO 4217 currency code"
    minor = MINOR_UNITS[currency]
    if minor is None:
        return "AM11", f"currency {currency!r} has no ISO 4217 minor unit: not a currency to transfer"
    exponent = amount.normalize().as_tuple().exponent
    decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    if decimals > minor:
        return "CH20", f"{amount} {currency} has {decimals} decimals; {currency} allows {minor}"
    return None


def uetr_problem(uetr: str) -> str | None:
    if _UUID4.fullmatch(uetr) is None:
        return f"UETR {uetr!r} is not a UUID version 4 (xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx)"
    return None


# -- helpers ------------------------------------------------------------------------------------------------------


def _qualifier(el: etree._Element) -> str:
    """ "{namespace}" of `el`, to prefix local names with (cheaper than etree.QName)."""
    tag = el.tag
    return tag[: tag.index("}") + 1] if tag.startswith("{") else ""


def _tx_ref(tx: TxRefs | None) -> str | None:
    if tx is None:
        return None
    return tx.end_to_end_id or tx.tx_id or tx.instr_id or tx.uetr or tx.path


def _count_problem(text: str | None, actual: int) -> str | None:
    if text is None:
        return f"missing; the message holds {actual}"
    if not (text.isascii() and text.isdigit()) or int(text) != actual:  # "²".isdigit() is True
        return f"says {text}, the message holds {actual}"
    return None


# -- the rules ----------------------------------------------------------------------------------------------------

# Which checks run on which message type (families not listed - status reports - get the identifier checks only).
# counts: NbOfTxs/CtrlSum (and PmtInf ones, and the settlement total where the message has one);
# agent_levels: InstgAgt/InstdAgt in GrpHdr exclude them in transactions; originals: CH21 above; mandates: MD01.
_COUNTS, _AGENT_LEVELS, _ORIGINALS, _MANDATES = "counts", "agent_levels", "originals", "mandates"
_RULES_BY_FAMILY: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "pacs.008": frozenset({_COUNTS, _AGENT_LEVELS}),
        "pacs.009": frozenset({_COUNTS, _AGENT_LEVELS}),
        "pain.001": frozenset({_COUNTS}),
        "pain.008": frozenset({_COUNTS, _MANDATES}),
        "pacs.004": frozenset({_COUNTS, _ORIGINALS}),
        "camt.056": frozenset({_COUNTS, _ORIGINALS}),
        "pacs.028": frozenset({_ORIGINALS}),
        "camt.029": frozenset({_ORIGINALS}),
    }
)
_NO_RULES: frozenset[str] = frozenset()
# The element holding the settlement total, where it is not TtlIntrBkSttlmAmt.
_TOTAL_NAME: Mapping[str, str] = MappingProxyType({"pacs.004": "TtlRtrdIntrBkSttlmAmt"})
# Where NbOfTxs/CtrlSum sit, where it is not GrpHdr.
_COUNT_BLOCK: Mapping[str, str] = MappingProxyType({"camt.056": "CtrlData"})

# MessageDef.family is a computed property (~0.5 us): cache it per message id. Ids come from the catalogue; the
# cap only guards against a caller inventing definitions without end.
_FAMILIES: dict[str, str] = {}


def _family(defn: MessageDef) -> str:
    family = _FAMILIES.get(defn.id)
    if family is None:
        family = defn.family
        if len(_FAMILIES) < 256:
            _FAMILIES[defn.id] = family
    return family


def check_rules(
    defn: MessageDef, document: etree._Element, refs: MessageRefs, app_hdr: etree._Element | None
) -> list[Finding]:
    """Every business-rule finding for `document` (and `app_hdr`), in a stable order; [] when it passes.

    `refs` must come from `extract_refs(defn, document)`. Pure: raises nothing for odd input (a value that is
    absent is the XSD's business); the tree is not modified.
    """
    findings: list[Finding] = []
    if app_hdr is not None:
        _app_hdr(defn, refs, app_hdr, findings)
    family = _family(defn)
    if defn.role == "payment":
        rules = _RULES_BY_FAMILY.get(family, _NO_RULES)
        if _COUNTS in rules:
            _counts_and_sums(refs, findings, family)
        if _AGENT_LEVELS in rules:
            _agent_levels(refs, findings)
        for tx in refs.transactions:
            _tx_values(tx, findings)
        if _ORIGINALS in rules:
            _originals(refs, findings)
        if _MANDATES in rules:
            _mandates(refs, findings)
    if refs.ttl_amount is not None and refs.ttl_ccy is not None:
        problem = amount_problem(refs.ttl_amount, refs.ttl_ccy)
        if problem is not None:
            total_name = _TOTAL_NAME.get(family, "TtlIntrBkSttlmAmt")
            findings.append(Finding(problem[0], problem[1], path=f"{refs.path}/GrpHdr/{total_name}"))
    _identifiers(document, refs, findings)
    return with_lines(findings, document, app_hdr)


def with_lines(findings: list[Finding], document: etree._Element, app_hdr: etree._Element | None) -> list[Finding]:
    """`findings`, each that has a path but no line given the source line of the element its path names.

    Most rules work on refs (values and paths, no elements), so the line is looked up here, for findings only:
    a message that passes costs nothing. A path naming an absent element (a missing DrctDbtTx, say) keeps no line.
    """
    out = findings
    for i, finding in enumerate(findings):
        if finding.line is not None or not finding.path:
            continue
        top = document if finding.path.startswith("/Document") else app_hdr
        el = element_at(top, finding.path) if top is not None else None
        if el is not None and el.sourceline is not None:
            if out is findings:
                out = list(findings)
            out[i] = replace(finding, line=el.sourceline)
    return out


def _app_hdr(defn: MessageDef, refs: MessageRefs, app_hdr: etree._Element, findings: list[Finding]) -> None:
    q = _qualifier(app_hdr)
    mdi_tag, bmi_tag = q + "MsgDefIdr", q + "BizMsgIdr"
    mdi_text = bmi_text = None
    for child in app_hdr:  # one pass over a dozen children; find() would walk ElementPath twice
        tag = child.tag
        if tag == mdi_tag:
            mdi_text = (child.text or "").strip()
        elif tag == bmi_tag:
            bmi_text = (child.text or "").strip()
    if mdi_text != defn.id:
        findings.append(
            Finding(
                "FF01",
                f"AppHdr/MsgDefIdr is {mdi_text!r} but the Document is {defn.id}",
                path="/AppHdr/MsgDefIdr",
            )
        )
    if refs.msg_id is not None and bmi_text != refs.msg_id:
        findings.append(
            Finding(
                "FF01",
                f"AppHdr/BizMsgIdr is {bmi_text!r} but GrpHdr/MsgId is {refs.msg_id!r}",
                path="/AppHdr/BizMsgIdr",
            )
        )
    for bic_el in app_hdr.iter(q + "BICFI"):
        problem = _known_bic_problem((bic_el.text or "").strip())
        if problem is not None:
            findings.append(Finding("RC01", problem, path=element_path(bic_el), line=bic_el.sourceline))


def _sum_amounts(txs: Iterable[TxRefs]) -> Decimal | None:
    """The sum of the amounts, or None when one could not be read (that is an XSD finding already, not a wrong
    total). A plain loop: a generator over the transactions costs a frame per call."""
    total = Decimal(0)
    for tx in txs:
        amount = tx.amount
        if amount is None:
            return None
        total += amount
    return total


def _counts_and_sums(refs: MessageRefs, findings: list[Finding], family: str) -> None:
    txs = refs.transactions
    block = _COUNT_BLOCK.get(family, "GrpHdr")
    # camt.056 CtrlData is optional; a pacs.004 returning the whole group (GrpRtr) may list no transaction, and its
    # NbOfTxs then counts the original's.
    counted = refs.nb_of_txs is not None or block == "GrpHdr"
    if counted and not (family == "pacs.004" and not txs):
        problem = _count_problem(refs.nb_of_txs, len(txs))
        if problem is not None:
            findings.append(Finding("AM19", f"{block}/NbOfTxs {problem}", path=f"{refs.path}/{block}/NbOfTxs"))
    total = _sum_amounts(txs)
    # ctrl_sum is None when its text is not a number: that never equals a sum
    if refs.ctrl_sum_text is not None and total is not None and txs and refs.ctrl_sum != total:
        why = f"{block}/CtrlSum says {refs.ctrl_sum_text}, amounts sum to {total}"
        findings.append(Finding("AM16", why, path=f"{refs.path}/{block}/CtrlSum"))
    if refs.payment_infos:  # pain.001 / pain.008 only: no grouping to build for the others
        by_pmt_inf: dict[int | None, list[TxRefs]] = {}
        for tx in txs:
            by_pmt_inf.setdefault(tx.pmt_inf_index, []).append(tx)
        for pi in refs.payment_infos:
            pi_txs = by_pmt_inf.get(pi.index, [])
            if pi.nb_of_txs is not None:
                problem = _count_problem(pi.nb_of_txs, pi.tx_count)
                if problem is not None:
                    findings.append(Finding("AM20", f"PmtInf/NbOfTxs {problem}", path=f"{pi.path}/NbOfTxs"))
            pi_total = _sum_amounts(pi_txs)
            if pi.ctrl_sum_text is not None and pi_total is not None and pi.ctrl_sum != pi_total:
                why = f"PmtInf/CtrlSum says {pi.ctrl_sum_text}, its amounts sum to {pi_total}"
                findings.append(Finding("AM17", why, path=f"{pi.path}/CtrlSum"))
    if refs.ttl_amount_text is not None and txs:
        _total_settlement(refs, total, findings, _TOTAL_NAME.get(family, "TtlIntrBkSttlmAmt"))


def _total_settlement(refs: MessageRefs, total: Decimal | None, findings: list[Finding], total_name: str) -> None:
    """pacs.008/pacs.009 TotalInterbankSettlementAmountRule (one currency) and ...AndSumRule (the sum); the same
    for the pacs.004 total returned.

    `total` is the sum of the transaction amounts (None when one could not be read)."""
    ttl_ccy = refs.ttl_ccy
    mismatched = False
    for tx in refs.transactions:
        if tx.currency is not None and tx.currency != ttl_ccy:
            mismatched = True
            amount_name = (tx.amount_path or "").rpartition("/")[2] or "the amount"
            findings.append(
                Finding(
                    "CURR",
                    f"{amount_name} is in {tx.currency} but {total_name} is in {ttl_ccy}",
                    path=tx.amount_path,
                    tx_ref=_tx_ref(tx),
                )
            )
    if mismatched or total is None:
        return  # a sum across currencies means nothing: the CURR findings say what to fix
    if refs.ttl_amount is None or refs.ttl_amount != total:
        amount_name = (refs.transactions[0].amount_path or "").rpartition("/")[2] or "the amounts"
        findings.append(
            Finding(
                "AM10",
                f"{total_name} says {refs.ttl_amount_text}, {amount_name} sum to {total}",
                path=f"{refs.path}/GrpHdr/{total_name}",
            )
        )


def _agent_levels(refs: MessageRefs, findings: list[Finding]) -> None:
    """pacs.008/pacs.009 InstructingAgentRule / InstructedAgentRule: an agent in GrpHdr excludes it in
    transactions."""
    if refs.instg_agt_bic is not None:
        for tx in refs.transactions:
            if tx.instg_agt_bic is not None:
                _agent_level_finding(tx, "InstgAgt", findings)
    if refs.instd_agt_bic is not None:
        for tx in refs.transactions:
            if tx.instd_agt_bic is not None:
                _agent_level_finding(tx, "InstdAgt", findings)


def _agent_level_finding(tx: TxRefs, name: str, findings: list[Finding]) -> None:
    findings.append(
        Finding(
            "CH17",
            f"{name} is in GrpHdr, so it is not allowed in the transaction",
            path=f"{tx.path}/{name}",
            tx_ref=_tx_ref(tx),
        )
    )


def _tx_values(tx: TxRefs, findings: list[Finding]) -> None:
    if tx.amount is not None and tx.currency is not None:
        problem = amount_problem(tx.amount, tx.currency)
        if problem is not None:
            findings.append(Finding(problem[0], problem[1], path=tx.amount_path, tx_ref=_tx_ref(tx)))
    if tx.uetr is not None:
        why = uetr_problem(tx.uetr)
        if why is not None:
            where = "OrgnlUETR" if tx.original_uetr is not None else "PmtId/UETR"
            findings.append(Finding("CH16", why, path=f"{tx.path}/{where}", tx_ref=_tx_ref(tx)))


def _originals(refs: MessageRefs, findings: list[Finding]) -> None:
    """CH21 for a transaction of a return / cancellation / status request / resolution that cannot be matched
    with its original: no original message id, or no id of the original transaction."""
    for tx in refs.transactions:
        if tx.original_msg_id is None:
            why = "names no original message: OrgnlGrpInf/OrgnlMsgId is missing here and in its group"
            findings.append(Finding("CH21", why, path=tx.path, tx_ref=_tx_ref(tx)))
        if (
            tx.original_end_to_end_id is None
            and tx.original_uetr is None
            and tx.original_tx_id is None
            and tx.original_instr_id is None
        ):
            why = "names no original transaction: OrgnlEndToEndId, OrgnlTxId, OrgnlUETR and OrgnlInstrId are missing"
            findings.append(Finding("CH21", why, path=tx.path, tx_ref=_tx_ref(tx)))


def _mandates(refs: MessageRefs, findings: list[Finding]) -> None:
    """MD01 for a pain.008 collection without a mandate id."""
    for tx in refs.transactions:
        if tx.mandate_id is None:
            why = "direct debit without a mandate: DrctDbtTx/MndtRltdInf/MndtId is missing"
            findings.append(Finding("MD01", why, path=f"{tx.path}/DrctDbtTx", tx_ref=_tx_ref(tx)))


def _identifiers(document: etree._Element, refs: MessageRefs, findings: list[Finding]) -> None:
    """Every BICFI and IBAN in the Document, wherever it is (intermediary and reimbursement agents too)."""
    q = _qualifier(document)
    bicfi, iban_tag = q + "BICFI", q + "IBAN"
    # Most messages have no finding here. With several transactions, check each tag on its own walk first,
    # which spares asking every element its tag (~0.2 us; a walk costs ~1.5 us, so it pays from ~3
    # transactions: measured, bench/rules_bench.py); only when something is wrong walk again in document order,
    # for the findings.
    if len(refs.transactions) > 2 and _all_valid(document, bicfi, iban_tag):
        return
    by_path: dict[str, TxRefs] | None = None  # built on the first finding
    # One C-level walk for both tags; Python only sees the matches. Which account an IBAN belongs to (two
    # parent hops and a tag: ~0.5 us) and where it is only matter for a finding.
    for el in document.iter(bicfi, iban_tag):
        value = (el.text or "").strip()
        if el.tag == bicfi:
            why = _known_bic_problem(value)
            code = "RC01"
        else:
            why = iban_problem(value)
            code = "AC01"
            if why is not None:
                account = el.getparent()  # IBAN <- Id <- DbtrAcct / CdtrAcct / ...
                account = account.getparent() if account is not None else None
                if account is not None:
                    code = {q + name: c for name, c in _IBAN_CODES.items()}.get(account.tag, "AC01")
        if why is not None:
            path = element_path(el)
            if by_path is None:
                by_path = tx_by_path(refs.transactions)
            tx_ref = _tx_ref(tx_for(path, by_path))
            findings.append(Finding(code, why, path=path, line=el.sourceline, tx_ref=tx_ref))


def _all_valid(document: etree._Element, bicfi: str, iban_tag: str) -> bool:
    """Whether every BICFI and IBAN in `document` is valid (the quick half of _identifiers)."""
    for el in document.iter(bicfi):
        if _known_bic_problem((el.text or "").strip()) is not None:
            return False
    return all(iban_problem((el.text or "").strip()) is None for el in document.iter(iban_tag))


# -- sender authority ---------------------------------------------------------------------------------------------


def _owns(claimed: str, bic8s: frozenset[str], bic11s: frozenset[str]) -> bool:
    c = claimed.upper()
    return c[:8] in bic8s or (len(c) == 11 and c in bic11s) or (len(c) == 8 and c + "XXX" in bic11s)


# (bic8s, bic11s) by the participant's BIC set: a participant sends many messages with the same frozenset, and
# normalising it costs ~2 us. Bounded like the other caches (participants come from the configuration).
_OWNED: dict[frozenset[str], tuple[frozenset[str], frozenset[str]]] = {}


def _owned(participant_bics: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
    cacheable = isinstance(participant_bics, frozenset)  # a caller may pass a set despite the annotation
    got = _OWNED.get(participant_bics) if cacheable else None
    if got is None:
        owned = {b.strip().upper() for b in participant_bics}
        bic8s = frozenset(b[:8] for b in owned if len(b) == 8 or b.endswith("XXX"))
        bic11s = frozenset(b for b in owned if len(b) == 11)
        got = (bic8s, bic11s)
        if cacheable:
            if len(_OWNED) >= 1024:
                _OWNED.clear()
            _OWNED[participant_bics] = got
    return got


def check_sender_authority(
    defn: MessageDef,
    document: etree._Element,
    refs: MessageRefs,
    app_hdr: etree._Element | None,
    participant_bics: frozenset[str],
) -> list[Finding]:
    """AG08 for every BIC the message makes the sender act as that `participant_bics` does not cover.

    The sender acts as: pain.001 every PmtInf/DbtrAgt; pain.008 every PmtInf/CdtrAgt (a direct debit is
    presented by the creditor's bank: the debtor's bank is the one being asked to pay, so a participant may
    collect only through itself); camt.056 / camt.029 the Assgnmt/Assgnr agent (an assigner that is a party, not
    an agent, is refused like an agent without a BIC); other messages (pacs.008, pacs.009, pacs.004, pacs.028)
    GrpHdr/InstgAgt and each transaction's InstgAgt; and the AppHdr Fr (FIId BICFI or OrgId AnyBIC).
    "AAAAUS33" and "AAAAUS33XXX" are the same BIC;
    owning either covers every branch AAAAUS33xxx; owning AAAAUS33ABC covers that branch only. An agent that
    should be checked but carries no BICFI (e.g. only a clearing member id) is refused: we can only verify BICs.
    """
    bic8s, bic11s = _owned(participant_bics)
    findings: list[Finding] = []

    # Paths are built only for a refusal: most messages have none.
    family = _family(defn)
    if family == "pain.001":
        for pi in refs.payment_infos:
            bic = pi.dbtr_agt_bic
            if bic is not None and (bic == "" or not _owns(bic, bic8s, bic11s)):
                _refuse(bic, f"{pi.path}/DbtrAgt", "DbtrAgt", None, findings)
    elif family == "pain.008":
        for pi in refs.payment_infos:
            bic = pi.cdtr_agt_bic
            if bic is not None and (bic == "" or not _owns(bic, bic8s, bic11s)):
                _refuse(bic, f"{pi.path}/CdtrAgt", "CdtrAgt", None, findings)
    elif family in ("camt.056", "camt.029"):
        bic = refs.instg_agt_bic
        if bic is not None and (bic == "" or not _owns(bic, bic8s, bic11s)):
            where = f"{refs.path}/Assgnmt/Assgnr" + ("/Agt" if bic else "")  # "": a Pty, not an Agt
            _refuse(bic, where, "Assgnr", None, findings)
    else:
        bic = refs.instg_agt_bic
        if bic is not None and (bic == "" or not _owns(bic, bic8s, bic11s)):
            _refuse(bic, f"{refs.path}/GrpHdr/InstgAgt", "InstgAgt", None, findings)
        # Without an InstgAgt or an AppHdr a payment names nobody as instructing it: the chain then starts at the
        # debtor's side, and the sender must be that bank, or it would pay in another bank's name (the switch
        # forwards under its own BIC and signature).
        first_agent = _FIRST_AGENT.get(family) if refs.instg_agt_bic is None and app_hdr is None else None
        for tx in refs.transactions:
            bic = tx.instg_agt_bic
            if bic is not None and (bic == "" or not _owns(bic, bic8s, bic11s)):
                _refuse(bic, f"{tx.path}/InstgAgt", "InstgAgt", tx, findings)
            elif bic is None and first_agent is not None:
                first = tx.dbtr_agt_bic if first_agent == "DbtrAgt" else _fi_bic(document, f"{tx.path}/{first_agent}")
                if first is None or first == "" or not _owns(first, bic8s, bic11s):
                    _refuse(
                        first or "",
                        f"{tx.path}/{first_agent}",
                        f"{first_agent} (no InstgAgt names the sender)",
                        tx,
                        findings,
                    )
    if app_hdr is not None:
        q = _qualifier(app_hdr)
        fr_tag = q + "Fr"
        for fr in app_hdr:  # the first Fr, as find() would, without ElementPath (~3 us)
            if fr.tag == fr_tag:
                for el in fr.iter(q + "BICFI", q + "AnyBIC"):
                    bic = (el.text or "").strip()
                    if not _owns(bic, bic8s, bic11s):
                        findings.append(
                            Finding(
                                "AG08",
                                f"AppHdr/Fr {bic} is not a BIC of the sending participant",
                                path=element_path(el),
                                line=el.sourceline,
                            )
                        )
                break
    return with_lines(findings, document, app_hdr)


# The agent a payment without InstgAgt (and without AppHdr) is sent as: the debtor's agent, or in pacs.009 the
# debtor itself, a financial institution.
_FIRST_AGENT: Mapping[str, str] = MappingProxyType({"pacs.008": "DbtrAgt", "pacs.009": "Dbtr"})


def _fi_bic(document: etree._Element, path: str) -> str | None:
    """FinInstnId/BICFI of the agent at `path`: None when absent, "" when it has no BICFI (as refs reads agents)."""
    agent = element_at(document, path)
    if agent is None:
        return None
    q = _qualifier(agent)
    bicfi = agent.find(f"{q}FinInstnId/{q}BICFI")
    return (bicfi.text or "").strip() if bicfi is not None else ""


def _refuse(bic: str, path: str, what: str, tx: TxRefs | None, findings: list[Finding]) -> None:
    """The AG08 finding for an agent the sender may not act as (`bic` "": one without a BICFI)."""
    if bic == "":
        why = f"{what} has no BICFI, so the sender's right to act as it cannot be verified"
        findings.append(Finding("AG08", why, path=path, tx_ref=_tx_ref(tx)))
    else:
        findings.append(
            Finding(
                "AG08",
                f"{what} {bic} is not a BIC of the sending participant",
                path=f"{path}/FinInstnId/BICFI",
                tx_ref=_tx_ref(tx),
            )
        )
