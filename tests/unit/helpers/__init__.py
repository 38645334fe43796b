"""Helpers shared by the unit tests (no test module imports another)."""
