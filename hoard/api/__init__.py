"""The /v2 REST API: validate, authorize, record desired state, start workflows."""
