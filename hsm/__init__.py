"""The only code that touches PKCS#11 (python-pkcs11): token sessions, signer, BAH XML signatures."""
