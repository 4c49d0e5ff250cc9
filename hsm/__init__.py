"""The only code that touches PKCS#11: token sessions, the signing service, XMLDSig for the BAH, dev tokens.

Importing `hsm` is cheap (no PKCS#11 module is loaded): switchd.config imports `hsm.settings`.
"""
