"""Backups: where the bytes go (``BackupStore``: a local directory or any
S3-compatible store), and how they are protected on the way (client-side
AES-256-GCM streaming encryption with a per-project key; a checksum, SHA-256 of
the stored object's header and segment tags, recorded in the manifest).
Everything streams in bounded memory: a database backup is never held whole in
memory or written anywhere in plaintext.

``pipeline.upload`` / ``pipeline.download`` are the entry points; the modules
below them each do one job (``store``, ``local``, ``s3``, ``crypto``,
``checksum``, ``prefetch``).
"""
