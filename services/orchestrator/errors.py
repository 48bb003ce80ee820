"""API errors: one exception type that becomes ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def validation_error(message: str, field: str | None = None) -> ApiError:
    return ApiError(422, "validation_error", message, field)


def unauthorized(message: str = "a valid API key is required (Authorization: Bearer KEY)") -> ApiError:
    return ApiError(401, "unauthorized", message)


def forbidden(message: str = "this route needs the admin key") -> ApiError:
    return ApiError(403, "forbidden", message)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def conflict(message: str) -> ApiError:
    return ApiError(409, "conflict", message)


def unavailable(message: str) -> ApiError:
    return ApiError(503, "unavailable", message)
