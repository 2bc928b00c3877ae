"""Engines: what a database is. One module per engine; none knows where it runs."""
