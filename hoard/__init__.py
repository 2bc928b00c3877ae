"""Hoard: a database-as-a-service control plane."""

__version__ = "0.5.0"
