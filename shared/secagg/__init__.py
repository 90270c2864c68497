"""Secure aggregation primitives and protocol state machines (no Flower imports)."""
