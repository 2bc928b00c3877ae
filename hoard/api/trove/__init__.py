"""A Trove v1.0-compatible API: a thin translation onto the services /v2 uses.

Mounted at ``/v1.0`` beside ``/v2``; see docs/trove.md for what is supported."""
