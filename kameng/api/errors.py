"""The API's one error shape, its stable error codes, and turning anything that goes wrong
under /api into that shape (never an HTML page, never a traceback).

Every error answers

    {"error": {"code": "validation_failed", "message": "…", "fields": {"quantity": "…"}}}

`code` is stable (clients branch on it), `message` is for people and may change, `fields`
(always present, often empty) names each request field that was wrong.
"""

from __future__ import annotations

from flask import Response, current_app, jsonify, request
from flask_babel import force_locale
from werkzeug.exceptions import HTTPException

from ..errors import Conflict, DomainError, NotFound, PermissionDenied

API_PREFIX = "/api"

# code -> (HTTP status, what it means). The reference page lists this table.
ERROR_CODES: dict[str, tuple[int, str]] = {
    "bad_request": (400, "The request could not be understood."),
    "invalid_json": (400, "The body is not valid JSON."),
    "missing_signature": (401, "A signature header (X-Kameng-Key, -Timestamp, -Nonce, "
                               "-Signature) is missing or malformed."),
    "invalid_key": (401, "The key id is unknown here, revoked, or belongs to another site."),
    "stale_timestamp": (401, "X-Kameng-Timestamp is more than 300 seconds away from the "
                             "server's clock."),
    "bad_signature": (401, "The signature does not match the request."),
    "replayed_nonce": (401, "This nonce was already used with this key."),
    "forbidden": (403, "The key may not do this."),
    "insufficient_scope": (403, "The key lacks the scope this operation needs."),
    "buyer_key_required": (403, "Only a buyer (agent) key may do this."),
    "staff_key_required": (403, "Only a staff key may do this."),
    "not_agent": (403, "The key's buyer account is no longer at an agent level."),
    "owner_inactive": (403, "The key's owner account is disabled."),
    "not_found": (404, "Nothing here, or it belongs to someone else."),
    "unknown_shop": (404, "No shop lives at this host name."),
    "method_not_allowed": (405, "The path exists but not with this method."),
    "conflict": (409, "The request clashes with the current state."),
    "idempotency_key_reused": (409, "This Idempotency-Key was used with a different request."),
    "idempotency_in_progress": (409, "A request with this Idempotency-Key is still running."),
    "insufficient_funds": (409, "The wallet cannot cover the order."),
    "sold_out": (409, "Not enough stock for the quantity asked."),
    "too_large": (413, "The body is too large."),
    "unsupported_media_type": (415, "Send the body as application/json."),
    "validation_failed": (422, "A field is missing, unknown or wrong; see `fields`."),
    "rate_limited": (429, "Too many requests with this key; see Retry-After."),
    "internal_error": (500, "Something went wrong on our side."),
    "shop_suspended": (503, "The shop is suspended."),
}


class ApiError(Exception):
    """An error answered in the API's shape."""

    def __init__(self, code: str, message: str | None = None, *,
                 fields: dict[str, str] | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None):
        default_status, default_message = ERROR_CODES[code]
        super().__init__(message or default_message)
        self.code = code
        self.message = message or default_message
        self.fields = dict(fields or {})
        self.status = status or default_status
        self.headers = dict(headers or {})


def is_api_request() -> bool:
    path = request.path
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def error_response(error: ApiError) -> Response:
    response = jsonify({"error": {"code": error.code, "message": error.message,
                                  "fields": error.fields}})
    response.status_code = error.status
    response.headers["Cache-Control"] = "no-store"
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def field_name(field: str | None) -> str | None:
    """A service's field name as the API calls it."""
    if field is None:
        return None
    return {"qty": "quantity", "coupon": "coupon"}.get(field, field)


def english(error: DomainError) -> str:
    """A service's message as the API says it: in English, whatever the shop's language (the
    services raise lazily translated messages for the pages)."""
    with force_locale("en"):
        return error.message


def from_domain_error(error: DomainError, *, input_names: tuple[str, ...] = ()) -> ApiError:
    """A service's refusal in the API's shape: the class says the code, the field the field."""
    from ..inventory.service import SoldOut
    from ..ledger.service import InsufficientFunds

    message = english(error)
    field = field_name(error.field)
    if field in input_names:
        field = f"inputs.{field}"
    fields = {field: message} if field else {}
    if isinstance(error, SoldOut):
        return ApiError("sold_out", message, fields=fields)
    if isinstance(error, InsufficientFunds):
        return ApiError("insufficient_funds", "The wallet cannot cover this order.")
    if isinstance(error, NotFound):
        return ApiError("not_found", message)
    if isinstance(error, PermissionDenied):
        return ApiError("forbidden", message)
    if isinstance(error, Conflict):
        return ApiError("conflict", message, fields=fields)
    if error.status_code >= 500:
        return ApiError("internal_error", message)
    return ApiError("validation_failed", message, fields=fields)


def http_error(error: HTTPException) -> Response:
    """A werkzeug HTTP error (routing, 405, 413, 429, a 404 from abort, 503 …) in JSON."""
    code = {400: "bad_request", 401: "invalid_key", 403: "forbidden", 404: "not_found",
            405: "method_not_allowed", 409: "conflict", 413: "too_large",
            415: "unsupported_media_type", 422: "validation_failed", 429: "rate_limited",
            503: "shop_suspended"}.get(error.code or 500, "bad_request")
    message = None
    if error.code == 404 and error.description == "unknown-host":
        code, message = "unknown_shop", "No shop lives at this host name."
    headers = {}
    if error.code == 405 and getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(error.valid_methods)
    if error.code == 429:
        retry = getattr(error, "retry_after", None)
        headers["Retry-After"] = str(retry or 60)
        limit = getattr(error, "description", "")
        message = f"Too many requests with this key ({limit}). Wait and try again." \
            if limit else None
    status = error.code if error.code and error.code >= 400 else 400
    if code == "bad_request" and status != 400:
        status = 400
    return error_response(ApiError(code, message, status=status, headers=headers))


def domain_error(error: DomainError) -> Response:
    return error_response(from_domain_error(error))


def unexpected_error(error: Exception) -> Response:
    from ..extensions import db

    db.session.rollback()
    current_app.logger.exception("unhandled API error on %s %s", request.method, request.path)
    return error_response(ApiError("internal_error"))
