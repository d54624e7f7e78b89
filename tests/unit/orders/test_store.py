"""Orders' validation of bodies, items and idempotency keys."""

from __future__ import annotations

import pytest

from services.common.problems import ProblemError
from services.orders.store import validate_idempotency_key, validate_order


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"item": "", "quantity": 1},
        {"item": "x" * 201, "quantity": 1},
        {"item": "a", "quantity": 0},
        {"item": "a", "quantity": 1001},
        {"item": "a", "quantity": True},
        {"item": "a", "quantity": 1.5},
        {"item": 5, "quantity": 1},
        {"item": "a", "quantity": 1, "owner": "x"},
        {"item": "a\x00", "quantity": 1},
        {"item": "   ", "quantity": 1},
    ],
)
def test_order_validation_refuses(body: dict[str, object]) -> None:
    with pytest.raises(ProblemError) as info:
        validate_order(body)
    assert info.value.status == 422


def test_order_validation_accepts_bounds() -> None:
    assert validate_order({"item": "x" * 200, "quantity": 1000}) == ("x" * 200, 1000)
    assert validate_idempotency_key("abc-123") == "abc-123"
    for bad in ("", "a b", "x" * 256, "é"):
        with pytest.raises(ProblemError):
            validate_idempotency_key(bad)


@pytest.mark.parametrize(
    "item",
    ["a\x00b", "a\x07b", "line\nbreak", "tab\there", "\x7f", "next\x85line", "esc\x1b[31m"],
)
def test_items_with_control_characters_are_422(item: str) -> None:
    with pytest.raises(ProblemError) as caught:
        validate_order({"item": item, "quantity": 1})
    assert caught.value.status == 422


@pytest.mark.parametrize("item", [" ", "\t\n", "\u2003\u3000", "\u200b", "\u00a0\ufeff"])
def test_blank_items_are_422(item: str) -> None:
    with pytest.raises(ProblemError) as caught:
        validate_order({"item": item, "quantity": 1})
    assert caught.value.status == 422


@pytest.mark.parametrize("item", ["tea", "caf\u00e9", "\U0001f600 x", " padded ", "a b"])
def test_ordinary_items_pass(item: str) -> None:
    assert validate_order({"item": item, "quantity": 2}) == (item, 2)
