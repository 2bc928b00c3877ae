"""Durable workflows (create, delete, ...) and the health observer, run by workers."""
