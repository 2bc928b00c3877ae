"""Hoard's own CA, secret encryption and API tokens."""
