"""HTTP channel: the inbound participant API (h11 over trio)."""
