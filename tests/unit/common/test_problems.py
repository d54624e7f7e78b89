"""Request bodies: UTF-8 JSON text (RFC 8259) and nothing else, refused with a 422 problem."""

from __future__ import annotations

import json

import pytest

from services.common.problems import ProblemError, parse_json_object

VALID = '{"item": "caf\\u00e9 \\ud83d\\ude00", "quantity": 1, "nested": [{"a": [1, 2.5, null]}]}'


def test_strict_json_still_accepts_valid_documents() -> None:
    assert parse_json_object(VALID.encode()) == json.loads(VALID)
    assert parse_json_object('{"item": "😀 é"}'.encode()) == {"item": "😀 é"}  # raw UTF-8
    assert parse_json_object(b'{"a": {"a": 1}, "b": {"a": 2}}')  # same name, other objects


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\xef\xbb\xbf" + VALID.encode(), id="UTF-8 BOM"),
        pytest.param(VALID.encode("utf-16"), id="UTF-16 with BOM"),
        pytest.param(VALID.encode("utf-16-le"), id="UTF-16LE"),
        pytest.param(VALID.encode("utf-16-be"), id="UTF-16BE"),
        pytest.param(VALID.encode("utf-32"), id="UTF-32"),
        pytest.param(b'{"item": "abc\xffdef"}', id="invalid UTF-8"),
        pytest.param(b'{"item": "\xc0\xaf"}', id="overlong UTF-8"),
        pytest.param(b'{"item": "\xed\xa0\xbd\xed\xb8\x80"}', id="CESU-8 surrogate pair"),
        pytest.param(b'{"item": "\xed\xa0\x80"}', id="CESU-8 lone surrogate"),
        pytest.param(b'{"item": "ab\\ud800cd"}', id="escaped lone high surrogate"),
        pytest.param(b'{"item": "\\udc00"}', id="escaped lone low surrogate"),
        pytest.param(b'{"item": "\\ude00\\ud83d"}', id="escaped pair reversed"),
        pytest.param(b'{"\\ud800": "x"}', id="surrogate in a member name"),
        pytest.param(b'{"a": [{"b": ["\\ud800"]}]}', id="surrogate deep inside"),
        pytest.param(b'{"item": "a", "item": "b"}', id="duplicate member"),
        pytest.param(b'{"a": {"x": 1, "x": 1}}', id="duplicate member, nested"),
        pytest.param(b'{"quantity": NaN}', id="NaN"),
        pytest.param(b'{"quantity": -Infinity}', id="Infinity"),
        pytest.param(b'{"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", id="too deep"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[]", id="not an object"),
    ],
)
def test_anything_but_strict_utf8_json_is_422(body: bytes) -> None:
    with pytest.raises(ProblemError) as caught:
        parse_json_object(body)
    assert caught.value.status == 422
