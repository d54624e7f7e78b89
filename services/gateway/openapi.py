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

# docs/API.md, input rules: text fields (username, password, item, tokens) hold no control
# characters (Unicode category Cc), and `item` is not blank (whitespace and invisible format
# characters only). Written with \\u escapes, which ECMA-262 and Python regexes read alike.
_CONTROL = "\\u0000-\\u001f\\u007f-\\u009f"
_NO_CONTROL = f"^[^{_CONTROL}]*$"
# Whitespace (str.isspace) and format characters (Cf) that services/orders counts as blank: those
# of the Basic Multilingual Plane (a class range beyond it is not portable between regex dialects).
_BLANK = (
    " \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
    "\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890\\u0891\\u08e2\\u180e\\u200b-\\u200f"
    "\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb"
)
_NOT_BLANK = f"^[^{_CONTROL}]*[^{_CONTROL}{_BLANK}][^{_CONTROL}]*$"
_TEXT = {"type": "string", "pattern": _NO_CONTROL}
_USERNAME = {"type": "string", "pattern": "^[A-Za-z0-9_.-]{3,64}$"}
_PASSWORD = {"type": "string", "minLength": 8, "maxLength": 256, "pattern": _NO_CONTROL}
_CSRF_HEADER = {
    "name": "X-CSRF-Token",
    "in": "header",
    "required": False,
    "description": "Required for unsafe requests authenticated by a cookie (`sid` or `at`).",
    "schema": {"type": "string"},
}
_REFRESH_COOKIE = {
    "name": "rt",
    "in": "cookie",
    "required": False,
    "description": (
        "The cookie carrier's refresh token (`__Secure-rt` when secure), sent with X-CSRF-Token "
        "and no body."
    ),
    "schema": {"type": "string"},
}
_ORDER_ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
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
    "502": _problem("The upstream's answer was broken or could not be re-framed."),
    "503": _problem(
        "A store, or every replica the gateway could send the request to, is unavailable; "
        "try again after Retry-After.",
        _RETRY_AFTER,
    ),
    "504": _problem("The request was sent, and no answer came within the gateway's deadline."),
}
_UNAUTHORIZED = _problem("No valid credential.", _CHALLENGE)
# 404, 405, 408, 413, 431, ...: every other answer is problem details too.
_ANY_OTHER = _problem("Any other failure.")
_CSRF = _problem("Cookie credential without a valid X-CSRF-Token.")

# OpenAPI links: where a response's values feed the next request (stateful testing follows them).
_SIGNED_UP = {"username": "$request.body#/username", "password": "$request.body#/password"}
_REFRESH_WITH_ISSUED = {
    "operationId": "refresh",
    "requestBody": {"refresh_token": "$response.body#/refresh_token"},
    "description": "Spend the refresh token just issued (the header carrier's body holds it).",
}


def _linked(response: dict[str, Any], **links: dict[str, Any]) -> dict[str, Any]:
    return {**response, "links": links}


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {JSON: {"schema": schema}}}


_SERVER_TIMING = {
    "Server-Timing": {
        "description": (
            "With SERVER_TIMING=1: one entry per hop that checked the credential, e.g. "
            '`orders;desc="credential=jwt carrier=header cache=hit store=0 result=ok";dur=0.012`'
            ' (docs/API.md, "The page and per-hop timings").'
        ),
        "schema": {"type": "string"},
    }
}


def _timed(response: dict[str, Any]) -> dict[str, Any]:
    """A response of a credential-checked operation: it may carry Server-Timing."""
    if "$ref" in response:
        return response
    return {**response, "headers": {**response.get("headers", {}), **_SERVER_TIMING}}


def _operation(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    security: list[dict[str, list[str]]] | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    answers = {**_COMMON_FAILURES, **responses, "default": _ANY_OTHER}
    if security:
        answers = {status: _timed(response) for status, response in answers.items()}
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "responses": answers,
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
            "username": _TEXT,
            "password": _TEXT,
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
    "SessionRecord": {
        "type": "object",
        "description": "The caller's own session as stored (never its CSRF token).",
        "required": ["sub", "username", "created_at", "idle_expires_at", "absolute_expires_at"],
        "properties": {
            "sub": {"type": "string"},
            "username": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "idle_expires_at": {"type": "string", "format": "date-time"},
            "absolute_expires_at": {"type": "string", "format": "date-time"},
        },
        "additionalProperties": False,
    },
    "Design": {
        "type": "object",
        "description": "The design this gateway runs, and how credential cookies are set.",
        "required": [
            "SESSION_CACHE",
            "GATEWAY_TOKEN_EXCHANGE",
            "JWT_REVOCATION",
            "GATEWAY_EDGE_AUTH",
            "SERVER_TIMING",
            "COOKIE_SECURE",
            "cookies",
        ],
        "properties": {
            "SESSION_CACHE": {"enum": ["off", "push"]},
            "GATEWAY_TOKEN_EXCHANGE": {"enum": ["off", "on"]},
            "JWT_REVOCATION": {"enum": ["push", "off"]},
            "GATEWAY_EDGE_AUTH": {"enum": ["off", "on"]},
            "SERVER_TIMING": {"enum": ["off", "on"]},
            "COOKIE_SECURE": {"enum": ["off", "on"]},
            "cookies": {"type": "object", "additionalProperties": {"type": "object"}},
        },
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
            "item": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": _NOT_BLANK},
            "quantity": {
                "type": "integer",
                "minimum": 1,
                "maximum": 1000,
                "description": "Written as an integer: 2, never 2.0 or 2e0 (those are 422).",
            },
        },
        "additionalProperties": False,
    },
    "Order": {
        "type": "object",
        "required": ["id", "item", "quantity", "owner", "created_at"],
        "properties": {
            "id": _ORDER_ID,
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
            "createUser",
            "Create an account",
            {
                "201": _linked(
                    _json(_ref("User"), "Created"),
                    LogIn={"operationId": "logIn", "requestBody": _SIGNED_UP},
                    OpenSession={"operationId": "openSession", "requestBody": _SIGNED_UP},
                ),
                "409": _problem("That username is taken."),
            },
            body=_body(_ref("Credentials")),
        )
    },
    "/auth/token": {
        "post": _operation(
            "logIn",
            "Log in for an access token (in the body, or as the at/rt cookies)",
            {
                "200": _linked(
                    _json({"oneOf": [_ref("TokenPair"), _ref("CookieTokens")]}),
                    Refresh=_REFRESH_WITH_ISSUED,
                ),
                "401": _UNAUTHORIZED,
                "429": _problem("Too many failed logins for this account.", _RETRY_AFTER),
            },
            body=_body(_ref("Login")),
        )
    },
    "/auth/refresh": {
        "post": _operation(
            "refresh",
            "Spend a refresh token (body, or the rt cookie with X-CSRF-Token) for a new pair",
            {
                "200": _linked(
                    _json({"oneOf": [_ref("TokenPair"), _ref("CookieTokens")]}),
                    RefreshAgain=_REFRESH_WITH_ISSUED,
                ),
                "401": _UNAUTHORIZED,
                "403": _CSRF,
            },
            body=_body(
                {
                    "type": "object",
                    "required": ["refresh_token"],
                    "properties": {"refresh_token": _TEXT},
                },
                required=False,
            ),
            parameters=[_CSRF_HEADER, _REFRESH_COOKIE],
        )
    },
    "/auth/session": {
        "post": _operation(
            "openSession",
            "Log in for a session cookie",
            {
                "200": _json(_ref("Session")),
                "401": _UNAUTHORIZED,
                "429": _problem("Too many failed logins for this account.", _RETRY_AFTER),
            },
            body=_body(_ref("Credentials")),
        ),
        "get": _operation(
            "sessionRecord",
            "The caller's own session record, with its idle and absolute expiry",
            {"200": _json(_ref("SessionRecord")), "401": _UNAUTHORIZED},
            security=[{"sessionCookie": []}],
        ),
    },
    "/auth/logout": {
        "post": _operation(
            "logOut",
            "End the session, or revoke the access token and its refresh family",
            {"204": {"description": "Logged out"}, "401": _UNAUTHORIZED, "403": _CSRF},
            body=_body(
                {"type": "object", "properties": {"refresh_token": _TEXT}},
                required=False,
            ),
            security=_ANY_CREDENTIAL,
            parameters=[_CSRF_HEADER],
        )
    },
    "/auth/me": {
        "get": _operation(
            "me",
            "Who the credential belongs to",
            {"200": _json(_ref("Me")), "401": _UNAUTHORIZED},
            security=_ANY_CREDENTIAL,
        )
    },
    "/auth/.well-known/jwks.json": {
        "get": _operation("jwks", "The public signing keys", {"200": _json(_ref("JwkSet"))})
    },
    "/orders": {
        "post": _operation(
            "createOrder",
            "Create an order (idempotent with Idempotency-Key)",
            {
                "201": _linked(
                    {
                        **_json(_ref("Order"), "Created"),
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    },
                    GetOrder={
                        "operationId": "getOrder",
                        "parameters": {"path.id": "$response.body#/id"},
                        "description": "The order just created, at its Location.",
                    },
                ),
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
            "listOrders",
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
            "getOrder",
            "One of the caller's orders",
            {
                "200": _json(_ref("Order")),
                "401": _UNAUTHORIZED,
                "404": _problem("No such order (or someone else's)."),
            },
            security=_ANY_CREDENTIAL,
            parameters=[{"name": "id", "in": "path", "required": True, "schema": _ORDER_ID}],
        )
    },
}

# Every service's own routes, here as the gateway's.
for _path, _id, _summary in (
    ("/healthz", "healthz", "Liveness: no dependency checks"),
    ("/readyz", "readyz", "Readiness: 503 until the gateway can serve (its keys are loaded)"),
):
    PATHS[_path] = {
        "get": {
            "operationId": _id,
            "summary": _summary,
            "security": [],
            "responses": {"200": _json({"type": "object"}), "503": _problem("Not ready.")},
        }
    }
PATHS["/metrics"] = {
    "get": {
        "operationId": "metrics",
        "summary": "Prometheus text format",
        "security": [],
        "responses": {
            "200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
        },
    }
}
PATHS["/openapi.json"] = {
    "get": {
        "operationId": "openapi",
        "summary": "This document",
        "security": [],
        "responses": {"200": _json({"type": "object"})},
    }
}

# The page (services/gateway/page.py): the gateway's own, like /openapi.json.
_PAGE = "Content-Security-Policy: default-src 'none'; script-src 'self'; ... (docs/API.md)"
for _path, _id, _media, _summary in (
    ("/", "page", "text/html", "The page for people: three logins, state, per-hop checks"),
    ("/page.js", "pageScript", "text/javascript", "The page's one script"),
    ("/page.css", "pageStyle", "text/css", "The page's style sheet"),
    ("/favicon.svg", "pageIcon", "image/svg+xml", "The page's icon"),
):
    PATHS[_path] = {
        "get": {
            "operationId": _id,
            "summary": _summary,
            "description": _PAGE,
            "security": [],
            "responses": {
                "200": {"description": "OK", "content": {_media: {"schema": {"type": "string"}}}}
            },
        }
    }
PATHS["/design"] = {
    "get": {
        "operationId": "design",
        "summary": "The design this gateway runs (for the page)",
        "security": [],
        "responses": {"200": _json(_ref("Design"))},
    }
}
# The bench's relay chain (docs/API.md, "Bench topology"): in the document only when the gateway
# routes it (RELAY_UPSTREAMS set).
_HOPS = {
    "name": "hops",
    "in": "query",
    "required": True,
    "description": "How many relays answer, relay-1 first.",
    "schema": {"type": "integer", "minimum": 1, "maximum": 8},
}
_BAD_HOPS = _problem(
    "`hops` is missing, repeated, not an integer from 1 to 8, or more than the chain's relays; "
    "or the request could not be parsed."
)
_NEXT_FAILED = {
    "502": _problem("A relay's next relay failed to answer."),
    "503": _problem(
        "A relay's next relay could not be reached (or its store is down).", _RETRY_AFTER
    ),
    "504": _problem("A relay's next relay, or the relay, did not answer in time."),
}
BENCH_PATHS: dict[str, Any] = {
    "/relay/private": {
        "get": _operation(
            "relayPrivate",
            "The bench's hop chain: every relay checks the caller's credential",
            {
                "200": _json(_ref("RelayPrivate")),
                "400": _BAD_HOPS,
                "401": _UNAUTHORIZED,
                **_NEXT_FAILED,
            },
            security=_ANY_CREDENTIAL,
            parameters=[_HOPS],
        )
    },
    "/relay/public": {
        "get": _operation(
            "relayPublic",
            "The bench's control chain: the same hops, no credential checked anywhere",
            {"200": _json(_ref("RelayPublic")), "400": _BAD_HOPS, **_NEXT_FAILED},
            parameters=[_HOPS],
        )
    },
}
BENCH_SCHEMAS: dict[str, Any] = {
    "RelayPrivate": {
        "type": "object",
        "required": ["hops", "sub"],
        "additionalProperties": False,
        "properties": {
            "hops": {"type": "integer", "minimum": 1, "maximum": 8},
            "sub": {"type": "string"},
        },
    },
    "RelayPublic": {
        "type": "object",
        "required": ["hops"],
        "additionalProperties": False,
        "properties": {"hops": {"type": "integer", "minimum": 1, "maximum": 8}},
    },
}

# Routes of the gateway itself, not of the contract's services.
GATEWAY_OWN_PATHS = frozenset(
    {"/openapi.json", "/", "/page.js", "/page.css", "/favicon.svg", "/design"}
)


def document(*, bench: bool = False) -> dict[str, Any]:
    """The contract's document; bench: with the relay chain's routes (RELAY_UPSTREAMS set)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "authscale",
            "version": "1",
            "description": "The public contract of authscale's gateway (docs/API.md).",
        },
        "paths": {**PATHS, **BENCH_PATHS} if bench else PATHS,
        "components": {
            "schemas": {**SCHEMAS, **BENCH_SCHEMAS} if bench else SCHEMAS,
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
