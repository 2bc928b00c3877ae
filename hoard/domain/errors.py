"""Domain errors. The API maps each to an RFC 9457 problem with its HTTP status."""

from __future__ import annotations


class HoardError(Exception):
    status = 500
    title = "Internal error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(HoardError):
    status = 422
    title = "Invalid input"


class NotFound(HoardError):
    status = 404
    title = "Not found"


class Conflict(HoardError):
    status = 409
    title = "Conflict"


class QuotaExceeded(HoardError):
    status = 403
    title = "Quota exceeded"


class Unauthorized(HoardError):
    status = 401
    title = "Unauthorized"


class Forbidden(HoardError):
    status = 403
    title = "Forbidden"
