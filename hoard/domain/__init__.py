"""Pure domain: names, statuses, catalog, errors. Imports nothing else from Hoard."""
