"""Providers: where a node runs. One module per provider; none knows which engine it runs."""
