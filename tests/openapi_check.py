"""Every response the suite gets from the gateway, checked against the OpenAPI document.

The Api client in tests/stackutil.py calls check_response for each answer, so the e2e and
security suites keep /openapi.json true: a status the operation does not declare, a content
type it does not list, or a body its schema refuses fails the test that saw it. The bench's relay
routes are checked too (the document as a gateway with RELAY_UPSTREAMS serves it).
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from services.gateway.openapi import document


@cache
def _operations() -> list[tuple[re.Pattern[str], str, dict[str, Any]]]:
    found = []
    for template, item in document(bench=True)["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
        for method, operation in item.items():
            found.append((pattern, method.upper(), operation))
    return found


def operation_for(method: str, path: str) -> dict[str, Any] | None:
    path = path.partition("?")[0]
    for pattern, verb, operation in _operations():
        if verb == method.upper() and pattern.match(path):
            return operation
    return None


def check_response(method: str, path: str, status: int, content_type: str, raw: bytes) -> None:
    """Raise AssertionError when the answer breaks the document; unknown routes are not checked."""
    operation = operation_for(method, path)
    if operation is None:
        return
    responses = operation["responses"]
    declared = responses.get(str(status)) or responses.get("default")
    assert declared is not None, f"{method} {path}: {status} is not declared"
    content = declared.get("content")
    if not content:
        assert not raw, f"{method} {path}: {status} declares no body, got {raw[:80]!r}"
        return
    assert content_type in content, f"{method} {path}: {status} answered {content_type}"
    schema = content[content_type]["schema"]
    if not content_type.endswith("json"):
        return
    body = json.loads(raw)
    root = {**schema, "components": document(bench=True)["components"]}
    errors = sorted(Draft202012Validator(root).iter_errors(body), key=str)
    assert not errors, f"{method} {path}: {status} body breaks the schema: {errors[0].message}"
