"""The contract (docs/API.md) as an OpenAPI 3.1 document, served by the gateway at /openapi.json.

Written as data, beside the routes it describes; tests check that it validates, that it lists
exactly the routes the services register, and that the suite's responses match its schemas.
It is long because it is one literal document (schemas, then paths); there is no logic to split.
"""

from __future__ import annotations

from typing import Any

from services.common.verify.sessions import SESSION_ID_RE

JSON = "application/json"
PROBLEM = "application/problem+json"

_USERNAME = {"type": "string", "pattern": "^[A-Za-z0-9_.-]{3,64}$"}
_PASSWORD = {"type": "string", "minLength": 8, "maxLength": 256}
_CSRF_HEADER = {
    "name": "X-CSRF-Token",
    "in": "header",
    "required": False,
    "description": "Required for unsafe requests authenticated by a cookie (`sid` or `at`).",
    "schema": {"type": "string"},
}
_ANY_CREDENTIAL: list[dict[str, list[str]]] = [
    {"bearer": []},
    {"accessCookie": []},
    {"sessionCookie": []},
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM: {"schema": _ref("Problem")}},
    }
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}}}
_CHALLENGE = {"WWW-Authenticate": {"schema": {"type": "string"}}}
_COMMON_FAILURES = {
    "400": _problem("The request could not be parsed."),
    "415": _problem("Not application/json, or a Content-Encoding other than identity."),
    "422": _problem("The body or a parameter breaks the input rules."),
    "503": _problem("A store is unavailable; try again.", _RETRY_AFTER),
}
_UNAUTHORIZED = _problem("No valid credential.", _CHALLENGE)
# 404, 405, 408, 413, 431, 502, ...: every other answer is problem details too.
_ANY_OTHER = _problem("Any other failure.")
_CSRF = _problem("Cookie credential without a valid X-CSRF-Token.")


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {JSON: {"schema": schema}}}


def _operation(
    summary: str,
    responses: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    security: list[dict[str, list[str]]] | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {**_COMMON_FAILURES, **responses, "default": _ANY_OTHER},
        "security": security if security is not None else [],
    }
    if body is not None:
        operation["requestBody"] = body
    if parameters:
        operation["parameters"] = parameters
    return operation


SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
        },
    },
    "Credentials": {
        "type": "object",
        "required": ["username", "password"],
        "properties": {"username": _USERNAME, "password": _PASSWORD},
    },
    "Login": {
        "type": "object",
        "required": ["username", "password"],
        "properties": {
            "username": {"type": "string"},
            "password": {"type": "string"},
            "carrier": {"enum": ["header", "cookie"], "default": "header"},
        },
    },
    "User": {
        "type": "object",
        "required": ["id", "username"],
        "properties": {"id": {"type": "string"}, "username": _USERNAME},
    },
    "TokenPair": {
        "type": "object",
        "required": ["access_token", "token_type", "expires_in", "refresh_token"],
        "properties": {
            "access_token": {"type": "string"},
            "token_type": {"const": "Bearer"},
            "expires_in": {"type": "integer", "minimum": 1},
            "refresh_token": {"type": "string"},
        },
    },
    "CookieTokens": {
        "type": "object",
        "description": "The cookie carrier: the tokens are in the `at` and `rt` cookies.",
        "required": ["csrf_token", "expires_in"],
        "properties": {
            "csrf_token": {"type": "string"},
            "expires_in": {"type": "integer", "minimum": 1},
        },
        "additionalProperties": False,
    },
    "Session": {
        "type": "object",
        "required": ["csrf_token"],
        "properties": {"csrf_token": {"type": "string"}},
        "additionalProperties": False,
    },
    "Me": {
        "type": "object",
        "required": ["sub", "username", "auth"],
        "properties": {
            "sub": {"type": "string"},
            "username": {"type": "string"},
            "auth": {"enum": ["jwt", "session"]},
        },
    },
    "JwkSet": {
        "type": "object",
        "required": ["keys"],
        "properties": {
            "keys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["kty", "n", "e", "kid", "alg", "use"],
                    "properties": {
                        "kty": {"const": "RSA"},
                        "alg": {"const": "RS256"},
                        "use": {"const": "sig"},
                        "kid": {"type": "string"},
                        "n": {"type": "string"},
                        "e": {"type": "string"},
                    },
                },
            }
        },
    },
    "NewOrder": {
        "type": "object",
        "required": ["item", "quantity"],
        "properties": {
            "item": {"type": "string", "minLength": 1, "maxLength": 200},
            "quantity": {"type": "integer", "minimum": 1, "maximum": 1000},
        },
        "additionalProperties": False,
    },
    "Order": {
        "type": "object",
        "required": ["id", "item", "quantity", "owner", "created_at"],
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "item": {"type": "string"},
            "quantity": {"type": "integer"},
            "owner": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "OrderList": {
        "type": "object",
        "required": ["orders"],
        "properties": {"orders": {"type": "array", "items": _ref("Order")}},
    },
}

PATHS: dict[str, Any] = {
    "/auth/users": {
        "post": _operation(
            "Create an account",
            {"201": _json(_ref("User"), "Created"), "409": _problem("That username is taken.")},
            body=_body(_ref("Credentials")),
        )
    },
    "/auth/token": {
        "post": _operation(
            "Log in for an access token (in the body, or as the at/rt cookies)",
            {
                "200": _json({"oneOf": [_ref("TokenPair"), _ref("CookieTokens")]}),
                "401": _UNAUTHORIZED,
                "429": _problem("Too many failed logins for this account.", _RETRY_AFTER),
            },
            body=_body(_ref("Login")),
        )
    },
    "/auth/refresh": {
        "post": _operation(
            "Spend a refresh token (body, or the rt cookie with X-CSRF-Token) for a new pair",
            {
                "200": _json({"oneOf": [_ref("TokenPair"), _ref("CookieTokens")]}),
                "401": _UNAUTHORIZED,
                "403": _CSRF,
            },
            body=_body(
                {
                    "type": "object",
                    "required": ["refresh_token"],
                    "properties": {"refresh_token": {"type": "string"}},
                },
                required=False,
            ),
            parameters=[_CSRF_HEADER],
        )
    },
    "/auth/session": {
        "post": _operation(
            "Log in for a session cookie",
            {
                "200": _json(_ref("Session")),
                "401": _UNAUTHORIZED,
                "429": _problem("Too many failed logins for this account.", _RETRY_AFTER),
            },
            body=_body(_ref("Credentials")),
        )
    },
    "/auth/logout": {
        "post": _operation(
            "End the session, or revoke the access token and its refresh family",
            {"204": {"description": "Logged out"}, "401": _UNAUTHORIZED, "403": _CSRF},
            body=_body(
                {"type": "object", "properties": {"refresh_token": {"type": "string"}}},
                required=False,
            ),
            security=_ANY_CREDENTIAL,
            parameters=[_CSRF_HEADER],
        )
    },
    "/auth/me": {
        "get": _operation(
            "Who the credential belongs to",
            {"200": _json(_ref("Me")), "401": _UNAUTHORIZED},
            security=_ANY_CREDENTIAL,
        )
    },
    "/auth/.well-known/jwks.json": {
        "get": _operation("The public signing keys", {"200": _json(_ref("JwkSet"))})
    },
    "/orders": {
        "post": _operation(
            "Create an order (idempotent with Idempotency-Key)",
            {
                "201": {
                    **_json(_ref("Order"), "Created"),
                    "headers": {"Location": {"schema": {"type": "string"}}},
                },
                "401": _UNAUTHORIZED,
                "403": _CSRF,
                "409": _problem("This Idempotency-Key was used with another body."),
            },
            body=_body(_ref("NewOrder")),
            security=_ANY_CREDENTIAL,
            parameters=[
                _CSRF_HEADER,
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
                },
            ],
        ),
        "get": _operation(
            "The caller's orders, newest first",
            {"200": _json(_ref("OrderList")), "401": _UNAUTHORIZED},
            security=_ANY_CREDENTIAL,
            parameters=[
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                }
            ],
        ),
    },
    "/orders/{id}": {
        "get": _operation(
            "One of the caller's orders",
            {
                "200": _json(_ref("Order")),
                "401": _UNAUTHORIZED,
                "404": _problem("No such order (or someone else's)."),
            },
            security=_ANY_CREDENTIAL,
            parameters=[
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
        )
    },
}

# Every service's own routes, here as the gateway's.
for _path, _summary in (
    ("/healthz", "Liveness: no dependency checks"),
    ("/readyz", "Readiness: 503 until the dependencies answer"),
):
    PATHS[_path] = {
        "get": {
            "summary": _summary,
            "security": [],
            "responses": {"200": _json({"type": "object"}), "503": _problem("Not ready.")},
        }
    }
PATHS["/metrics"] = {
    "get": {
        "summary": "Prometheus text format",
        "security": [],
        "responses": {
            "200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
        },
    }
}
PATHS["/openapi.json"] = {
    "get": {
        "summary": "This document",
        "security": [],
        "responses": {"200": _json({"type": "object"})},
    }
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "authscale",
            "version": "1",
            "description": "The public contract of authscale's gateway (docs/API.md).",
        },
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "accessCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "at",
                    "description": "The access token in a cookie (`__Host-at` when secure).",
                },
                "sessionCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "sid",
                    "description": (
                        f"A session id ({SESSION_ID_RE.pattern}; `__Host-sid` when secure)."
                    ),
                },
            },
        },
    }
