"""ISO 20022 knowledge as pure functions: parsing, catalogue, validation, rules, status reports."""
