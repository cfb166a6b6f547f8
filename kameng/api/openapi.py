"""The OpenAPI 3.1 document of the API, built from one source of truth: the `Operation` each view
declares next to itself (kameng/api/views.py, `@operation(...)`). The same declaration
validates the request (query parameters and JSON body: unknown fields are refused), so the
document cannot drift from what the server accepts. Response shapes are the `SCHEMAS` below.

Two documents: the shop API (every shop host, /api/v1/openapi.json) and the super-admin API
(the admin host, same path). /api/v1/docs renders the document as a readable page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ERROR_CODES

API_VERSION = "1.0.0"
TEXT = r"^[^\x00-\x1f\x7f]*$"  # one line of text: no control characters
MAX_ID = 2**31 - 1

# Statuses any signed operation may answer with an error (all in the one error shape).
COMMON_ERRORS = (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
ERROR_DESCRIPTIONS = {
    400: "Malformed request (e.g. the body is not JSON).",
    401: "The signature is missing, stale, replayed, or does not match; or the key is "
         "unknown here or revoked.",
    403: "The key may not do this (scope, kind of key, owner disabled).",
    404: "Not found, or not yours.",
    409: "Conflict with the current state (funds, stock, Idempotency-Key).",
    413: "The body is too large.",
    415: "The body is not application/json.",
    422: "Validation failed: `fields` names every field that was wrong or unknown.",
    429: "Rate limit of this key reached: wait for Retry-After seconds.",
    503: "The shop is suspended.",
}


@dataclass
class Operation:
    """One API operation: its route, who may call it, what it takes and what it answers."""

    site: str  # "shop" (every shop host) or "platform" (the admin host)
    method: str
    path: str  # OpenAPI path below /api/v1, e.g. "/products/{product_id}"
    operation_id: str
    summary: str
    tag: str
    auth: str  # "public", "any" (staff or buyer key), "staff", "buyer", "platform"
    scope: str | None = None
    description: str = ""
    path_params: dict[str, dict] = field(default_factory=dict)
    query: dict[str, dict] = field(default_factory=dict)  # every query parameter is optional
    headers: dict[str, dict] = field(default_factory=dict)
    body: dict | None = None  # JSON schema of the request body (inline, no $ref)
    responses: dict[int, tuple[str, str | None]] = field(default_factory=dict)  # schema name
    public_doc: bool = False  # a public page (docs, the document itself): no error list

    @property
    def full_path(self) -> str:
        return "/api/v1" + self.path


OPERATIONS: list[Operation] = []


def register(operation: Operation) -> Operation:
    OPERATIONS[:] = [o for o in OPERATIONS if o.operation_id != operation.operation_id]
    OPERATIONS.append(operation)
    return operation


def operations(site: str) -> list[Operation]:
    return [o for o in OPERATIONS if o.site == site]


# -- schema helpers ---------------------------------------------------------------------------


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict) -> dict:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    kind = schema.get("type")
    return {**schema, "type": [kind, "null"]}


def text(max_length: int, min_length: int = 0, **extra) -> dict:
    return {"type": "string", "minLength": min_length, "maxLength": max_length,
            "pattern": TEXT, **extra}


def obj(properties: dict, required: list[str] | None = None, **extra) -> dict:
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required,
            "additionalProperties": False, **extra}


ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
MONEY = {"type": "integer", "description": "minor units (分, cents) of `currency`"}
DATETIME = {"type": "string", "format": "date-time"}
CURRENCY = {"type": "string", "pattern": "^[A-Z]{3}$"}
LIMIT = {"type": "integer", "minimum": 1, "maximum": 200, "default": 50,
         "description": "page size"}
ORDER_STATUSES = ["pending", "paid", "delivering", "awaiting", "delivered", "failed",
                  "expired", "cancelled", "refunded"]
WEBHOOK_EVENT_NAMES = ["order.paid", "order.delivered", "order.failed", "stock.low"]

SCHEMAS: dict[str, dict] = {
    "Error": obj({"error": obj({
        "code": {"type": "string", "enum": sorted(ERROR_CODES)},
        "message": {"type": "string"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "request field -> what is wrong with it"},
    })}),
    "InputField": obj({
        "name": {"type": "string"}, "label": {"type": "string"},
        "type": {"type": "string", "enum": ["text", "email", "number", "tel"]},
        "required": {"type": "boolean"}, "pattern": {"type": "string"},
    }),
    "Price": obj({
        "currency": CURRENCY,
        "unit_price": MONEY,
        "level": nullable({"type": "string", "description": "the buyer level priced for"}),
    }),
    "PriceBreak": obj({"min_quantity": {"type": "integer"}, "unit_price": MONEY}),
    "Category": obj({"id": ID, "name": {"type": "string"}}),
    "Product": obj({
        "id": ID,
        "name": {"type": "string"},
        "description_html": {"type": "string", "description": "sanitised HTML"},
        "category": nullable(ref("Category")),
        "delivery_kind": {"type": "string", "enum": ["card", "text", "manual", "topup"]},
        "input_fields": {"type": "array", "items": ref("InputField")},
        "min_quantity": {"type": "integer"},
        "max_quantity": {"type": "integer"},
        "price": ref("Price"),
        "price_breaks": {"type": "array", "items": ref("PriceBreak")},
        "stock": nullable({"type": "integer",
                           "description": "units available now; null: not limited"}),
        "available": {"type": "boolean", "description": "on sale and in stock"},
    }),
    "ProductEnvelope": obj({"product": ref("Product")}),
    "ProductList": obj({"products": {"type": "array", "items": ref("Product")},
                        "next_after": nullable({**ID, "description": "pass as `after` for "
                                                "the next page; null: last page"})}),
    "Delivered": obj({"title": {"type": "string"},
                      "items": {"type": "array", "items": {"type": "string"}}}),
    "OrderLine": obj({
        "product_id": nullable(ID), "title": {"type": "string"},
        "quantity": {"type": "integer"}, "unit_price": MONEY, "total": MONEY,
        "inputs": {"type": "object", "additionalProperties": {"type": "string"}},
    }),
    "Order": obj({
        "id": ID, "number": {"type": "string"},
        "status": {"type": "string", "enum": ORDER_STATUSES},
        "currency": CURRENCY, "total": MONEY, "amount_due": MONEY,
        "created_at": DATETIME, "paid_at": nullable(DATETIME),
        "delivered_at": nullable(DATETIME),
        "lines": {"type": "array", "items": ref("OrderLine")},
        "delivered": {"type": "array", "items": ref("Delivered"),
                      "description": "what was delivered: only to the buyer who bought it"},
    }, required=["id", "number", "status", "currency", "total", "amount_due", "created_at",
                 "paid_at", "delivered_at", "lines"]),
    "OrderEnvelope": obj({"order": ref("Order")}),
    "OrderList": obj({"orders": {"type": "array", "items": ref("Order")},
                      "next_before": nullable(ID)}),
    "Delivery": obj({"order_id": ID, "status": {"type": "string", "enum": ORDER_STATUSES},
                     "delivered": {"type": "array", "items": ref("Delivered")}}),
    "Wallet": obj({"wallet": obj({
        "owner": {"type": "string", "enum": ["buyer", "shop"]},
        "currency": CURRENCY, "balance": MONEY, "held": MONEY, "available": MONEY,
    })}),
    "Transaction": obj({
        "id": ID, "amount": {**MONEY, "description": "+ credit, - debit"},
        "currency": CURRENCY, "kind": {"type": "string"}, "order_id": nullable(ID),
        "memo": {"type": "string"}, "created_at": DATETIME,
    }),
    "TransactionList": obj({"transactions": {"type": "array", "items": ref("Transaction")},
                            "next_before": nullable(ID)}),
    "Webhook": obj({
        "id": ID, "url": {"type": "string"},
        "events": {"type": "array", "items": {"type": "string", "enum": WEBHOOK_EVENT_NAMES}},
        "active": {"type": "boolean"}, "created_at": DATETIME,
    }),
    "WebhookEnvelope": obj({"webhook": ref("Webhook")}),
    "WebhookCreated": obj({"webhook": ref("Webhook"),
                           "secret": {"type": "string", "description": "shown once"}}),
    "WebhookList": obj({"webhooks": {"type": "array", "items": ref("Webhook")}}),
    "KeyInfo": obj({"key": obj({
        "id": {"type": "string"}, "kind": {"type": "string",
                                           "enum": ["staff", "customer", "platform"]},
        "name": {"type": "string"},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "shop": nullable({"type": "string", "description": "the shop's slug"}),
        "level": nullable({"type": "string", "description": "a buyer key's price level"}),
    })}),
    "Subscription": obj({
        "plan": {"type": "string"}, "plan_name": {"type": "string"},
        "status": {"type": "string"}, "period_start": {"type": "string", "format": "date"},
        "period_end": {"type": "string", "format": "date"},
        "trial_ends_at": nullable(DATETIME), "grace_until": nullable(DATETIME),
    }),
    "Invoice": obj({
        "number": {"type": "string"}, "status": {"type": "string"},
        "total": MONEY, "currency": CURRENCY, "due_at": DATETIME,
        "paid_at": nullable(DATETIME),
    }),
    "Billing": obj({
        "subscription": nullable(ref("Subscription")),
        "open_invoices": {"type": "array", "items": ref("Invoice")},
        "amount_due": MONEY, "currency": CURRENCY,
    }),
    "Shop": obj({
        "slug": {"type": "string"}, "name": {"type": "string"},
        "status": {"type": "string", "enum": ["active", "suspended"]},
        "created_at": DATETIME,
        "hosts": {"type": "array", "items": {"type": "string"}},
        "billing": ref("Billing"),
    }),
    "ShopEnvelope": obj({"shop": ref("Shop")}),
    "ShopList": obj({"shops": {"type": "array", "items": ref("Shop")}}),
}


# -- validating what a client sent -------------------------------------------------------------


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "null":
        return value is None
    return False


def _join(prefix: str, name: str | int) -> str:
    return f"{prefix}.{name}" if prefix else str(name)


def validate(schema: dict, value: Any, where: str = "") -> dict[str, str]:
    """Check `value` against a (small, inline) JSON schema: field path -> what is wrong."""
    errors: dict[str, str] = {}
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else (kinds or [])
    if kinds and not any(_type_ok(kind, value) for kind in kinds):
        return {where or "body": f"must be {' or '.join(kinds)}"}
    if value is None:
        return errors
    if "enum" in schema and value not in schema["enum"]:
        return {where or "body": f"must be one of {', '.join(map(str, schema['enum']))}"}
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors[where] = f"must be at least {schema['minLength']} characters"
        elif len(value) > schema.get("maxLength", 10**9):
            errors[where] = f"must be at most {schema['maxLength']} characters"
        elif "pattern" in schema and not re.search(schema["pattern"], value):
            errors[where] = "is not in the expected format" if schema["pattern"] != TEXT \
                else "must not contain control characters"
    elif isinstance(value, int) and not isinstance(value, bool):
        if value < schema.get("minimum", -(10**18)):
            errors[where] = f"must be at least {schema['minimum']}"
        elif value > schema.get("maximum", 10**18):
            errors[where] = f"must be at most {schema['maximum']}"
    elif isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors[where] = f"needs at least {schema['minItems']} items"
        elif len(value) > schema.get("maxItems", 10**9):
            errors[where] = f"takes at most {schema['maxItems']} items"
        elif schema.get("uniqueItems") and len({repr(v) for v in value}) != len(value):
            errors[where] = "must not repeat an item"
        else:
            for index, item in enumerate(value):
                errors.update(validate(schema.get("items", {}), item, _join(where, index)))
    elif isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors[_join(where, name)] = "is required"
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                errors.update(validate(properties[name], item, _join(where, name)))
            elif extra is False:
                errors[_join(where, name)] = "is not a known field"
            elif isinstance(extra, dict):
                errors.update(validate(extra, item, _join(where, name)))
        if len(value) > schema.get("maxProperties", 10**9):
            errors[where or "body"] = f"takes at most {schema['maxProperties']} fields"
    return errors


def parse_query(operation: Operation, args) -> tuple[dict, dict[str, str]]:
    """The operation's query parameters, typed, and the errors (unknown ones are errors)."""
    values, errors = {}, {}
    for name in args:
        if name not in operation.query:
            errors[name] = "is not a known parameter"
    for name, schema in operation.query.items():
        raw = args.getlist(name)
        if not raw:
            continue
        if len(raw) > 1:
            errors[name] = "is given more than once"
            continue
        value: Any = raw[0]
        if schema.get("type") == "integer":
            if not re.fullmatch(r"-?[0-9]{1,12}", value):
                errors[name] = "must be an integer"
                continue
            value = int(value)
        errors.update(validate(schema, value, name))
        values[name] = value
    return values, errors


# -- the document -----------------------------------------------------------------------------

SIGNING = """Every request but this document and the reference page is signed with an API key:

    X-Kameng-Key: <key id, kk_…>
    X-Kameng-Timestamp: <unix seconds; at most 300 s from the server's clock>
    X-Kameng-Nonce: <16-64 characters A-Z a-z 0-9 _ -, never reused with the key>
    X-Kameng-Signature: hex(HMAC-SHA256(secret, canonical))

    canonical = METHOD + "\\n" + target + "\\n" + timestamp + "\\n" + nonce + "\\n"
                + hex(SHA-256(raw body))

`target` is the path as sent (percent-encoded as on the request line) followed by "?query"
when there is a query string; the body hash of a GET is the hash of the empty string.
Money is integer minor units (分, cents) with a currency code. Errors always answer
{"error": {"code", "message", "fields"}}; unknown body fields and query parameters are
refused (422)."""


def _parameters(operation: Operation) -> list[dict]:
    params = [{"name": name, "in": "path", "required": True, "schema": schema}
              for name, schema in operation.path_params.items()]
    params += [{"name": name, "in": "query", "required": False, "schema": schema,
                **({"description": schema["description"]} if "description" in schema else {})}
               for name, schema in operation.query.items()]
    params += [{"name": name, "in": "header", "required": False, "schema": schema,
                **({"description": schema["description"]} if "description" in schema else {})}
               for name, schema in operation.headers.items()]
    return params


def _auth_note(operation: Operation) -> str:
    who = {"public": "No signature needed.",
           "any": "A staff key or an agent buyer's key",
           "staff": "A staff key", "buyer": "An agent buyer's key",
           "platform": "A super-admin key (admin host)"}[operation.auth]
    if operation.auth != "public" and operation.scope:
        who += f" with the `{operation.scope}` scope."
    elif operation.auth != "public":
        who += "."
    return who


def operation_document(operation: Operation) -> dict:
    responses: dict[str, dict] = {}
    for status, (description, schema) in sorted(operation.responses.items()):
        entry: dict[str, Any] = {"description": description}
        if schema is not None:
            media = "text/html" if schema == "html" else "application/json"
            entry["content"] = {media: {"schema": {"type": "string"} if schema == "html"
                                        else ({"type": "object"} if schema == "document"
                                              else ref(schema))}}
        responses[str(status)] = entry
    if not operation.public_doc:
        for status in COMMON_ERRORS:
            responses.setdefault(str(status), {"$ref": f"#/components/responses/E{status}"})
        responses.setdefault("405", {"$ref": "#/components/responses/E405"})
    doc: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "description": (operation.description + "\n\n" if operation.description else "")
        + _auth_note(operation),
        "tags": [operation.tag],
        "parameters": _parameters(operation),
        "responses": responses,
        "security": [] if operation.auth == "public" else [{"KamengSignature": []}],
    }
    if operation.body is not None:
        doc["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": operation.body}}}
    return doc


def document(site: str, server_url: str, title: str) -> dict:
    """The OpenAPI 3.1 document of one site's API."""
    paths: dict[str, dict] = {}
    for operation in operations(site):
        paths.setdefault(operation.full_path, {})[operation.method.lower()] = \
            operation_document(operation)
    used = _used_schemas(paths)
    errors = {f"E{status}": {"description": ERROR_DESCRIPTIONS.get(status, "Error"),
                             "content": {"application/json": {"schema": ref("Error")}}}
              for status in (*COMMON_ERRORS, 405)}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": API_VERSION, "description": SIGNING},
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": {name: schema for name, schema in SCHEMAS.items() if name in used},
            "responses": errors,
            "securitySchemes": {"KamengSignature": {
                "type": "apiKey", "in": "header", "name": "X-Kameng-Key",
                "description": "The key id; X-Kameng-Timestamp, X-Kameng-Nonce and "
                               "X-Kameng-Signature must come with it (see the description)."}},
        },
    }


def _used_schemas(paths: dict) -> set[str]:
    """Every component schema the paths refer to, directly or through other schemas."""
    found: set[str] = {"Error"}
    pending = [paths]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            target = value.get("$ref", "")
            if isinstance(target, str) and target.startswith("#/components/schemas/"):
                name = target.rsplit("/", 1)[1]
                if name not in found:
                    found.add(name)
                    pending.append(SCHEMAS[name])
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return found


# -- the reference page ----------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRow:
    name: str
    type: str
    required: bool
    description: str


def schema_type(schema: dict) -> str:
    """A short human name of a schema's type: "integer", "Product", "array of string" …"""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[1]
    if "anyOf" in schema:
        return " or ".join(schema_type(s) for s in schema["anyOf"])
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        return " or ".join(kind if "items" not in schema else
                           [f"array of {schema_type(schema['items'])}" if k == "array" else k
                            for k in kind])
    if kind == "array":
        return f"array of {schema_type(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {schema_type(schema['additionalProperties'])}"
    return kind


def _constraints(schema: dict) -> str:
    parts = []
    if "enum" in schema:
        parts.append("one of " + ", ".join(f"{v}" for v in schema["enum"]))
    for key, label in (("minimum", "min"), ("maximum", "max"), ("minLength", "min length"),
                       ("maxLength", "max length"), ("maxItems", "max items")):
        if key in schema and not (key == "minLength" and schema[key] == 0):
            parts.append(f"{label} {schema[key]}")
    if schema.get("pattern") and schema["pattern"] != TEXT:
        parts.append(f"pattern {schema['pattern']}")
    if schema.get("description"):
        parts.append(schema["description"])
    return "; ".join(parts)


def field_rows(schema: dict) -> list[FieldRow]:
    """The fields of an object schema, one row each (nested objects flattened with dots)."""
    rows = []
    required = set(schema.get("required", []))
    for name, sub in schema.get("properties", {}).items():
        rows.append(FieldRow(name, schema_type(sub), name in required, _constraints(sub)))
        if sub.get("type") == "object" and "properties" in sub:
            rows += [FieldRow(f"{name}.{row.name}", row.type, row.required, row.description)
                     for row in field_rows(sub)]
        items = sub.get("items", {})
        if items.get("type") == "object" and "properties" in items:
            rows += [FieldRow(f"{name}[].{row.name}", row.type, row.required, row.description)
                     for row in field_rows(items)]
    if isinstance(schema.get("additionalProperties"), dict) and not schema.get("properties"):
        rows.append(FieldRow("<name>", schema_type(schema["additionalProperties"]), False,
                             _constraints(schema["additionalProperties"])))
    return rows
