"""switchd: an ISO 20022 message-switch gateway (trio daemon, SQLite journal, PKCS#11 signing)."""

__version__ = "0.1.0"
