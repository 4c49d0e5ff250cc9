"""Tests of the ISO 20022 schemas and their generator."""
