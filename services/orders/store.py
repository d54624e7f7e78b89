"""Orders in the data store: record, owner index and idempotency key written by one script."""

from __future__ import annotations

import hashlib
import json
import re
import time
import unicodedata
import uuid
from datetime import UTC, datetime

from redis.asyncio import Redis

from services.common.keyspace import ORDER_PREFIX, order_key, owner_index
from services.common.keyspace import idempotency_key as keyspace_idempotency_key
from services.common.observability import Metrics
from services.common.problems import ProblemError
from services.common.store import DATA_STORE, timed

ORDER_ID_RE = re.compile(r"[0-9a-f]{32}")
IDEMPOTENCY_KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")

# KEYS: order record, owner index[, idempotency key].
# ARGV: record, score, id, order key prefix[, fingerprint, ttl].
# A replayed key returns the stored order; the same key with another body is a conflict.
_CREATE = """
if #KEYS == 3 then
  local prev = redis.call('GET', KEYS[3])
  if prev then
    local p = cjson.decode(prev)
    if p.fp ~= ARGV[5] then return {-1} end
    return {0, redis.call('GET', ARGV[4] .. p.id)}
  end
  redis.call('SET', KEYS[3], cjson.encode({fp = ARGV[5], id = ARGV[3]}), 'EX', ARGV[6])
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return {1, ARGV[1]}
"""

# KEYS: owner index. ARGV: limit, order key prefix.
_LIST = """
local ids = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #ids == 0 then return {} end
local keys = {}
for i, id in ipairs(ids) do keys[i] = ARGV[2] .. id end
return redis.call('MGET', unpack(keys))
"""


def _blank(text: str) -> bool:
    """Nothing a reader would see: whitespace and invisible format characters only."""
    return all(c.isspace() or unicodedata.category(c) == "Cf" for c in text)


def validate_order(body: dict[str, object]) -> tuple[str, int]:
    unknown = set(body) - {"item", "quantity"}
    if unknown:
        raise ProblemError(422, f"Unknown field(s): {', '.join(sorted(unknown))[:200]}.")
    item, quantity = body.get("item"), body.get("quantity")
    if not isinstance(item, str) or not 1 <= len(item) <= 200 or _blank(item):
        raise ProblemError(422, "'item' must be a non-blank string of 1-200 characters.")
    if any(unicodedata.category(c) == "Cc" for c in item):
        raise ProblemError(422, "'item' must not contain control characters.")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= 1000:
        raise ProblemError(422, "'quantity' must be an integer from 1 to 1000.")
    return item, quantity


def validate_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not IDEMPOTENCY_KEY_RE.fullmatch(value):
        raise ProblemError(422, "Idempotency-Key must be 1-255 visible ASCII characters.")
    return value


class OrderStore:
    def __init__(self, data: Redis, metrics: Metrics, *, idempotency_seconds: int) -> None:
        self.data = data
        self.metrics = metrics
        self.idempotency_seconds = idempotency_seconds
        self._create = data.register_script(_CREATE)
        self._list = data.register_script(_LIST)

    async def create(
        self, owner: str, item: str, quantity: int, idempotency_key: str | None
    ) -> tuple[dict[str, object], bool]:
        """Store an order; returns (order, created). A replay returns the first order."""
        order_id = uuid.uuid4().hex
        now = time.time()
        order = {
            "id": order_id,
            "item": item,
            "quantity": quantity,
            "owner": owner,
            "created_at": datetime.fromtimestamp(now, UTC)
            .isoformat(timespec="microseconds")
            .replace("+00:00", "Z"),
        }
        record = json.dumps(order)
        keys = [order_key(order_id), owner_index(owner)]
        args: list[str | int | float] = [record, int(now * 1000), order_id, ORDER_PREFIX]
        if idempotency_key is not None:
            keys.append(keyspace_idempotency_key(owner, idempotency_key))
            fingerprint = hashlib.sha256(json.dumps([item, quantity]).encode()).hexdigest()
            args += [fingerprint, self.idempotency_seconds]
        result = await timed(
            self.metrics, DATA_STORE, "create_order", self._create(keys=keys, args=args)
        )
        if result[0] == -1:
            raise ProblemError(409, "This Idempotency-Key was used with a different body.")
        stored = json.loads(result[1])
        return stored, result[0] == 1

    async def get(self, owner: str, order_id: str) -> dict[str, object] | None:
        if not ORDER_ID_RE.fullmatch(order_id):
            return None
        raw = await timed(self.metrics, DATA_STORE, "get_order", self.data.get(order_key(order_id)))
        if raw is None:
            return None
        order: dict[str, object] = json.loads(raw)
        # Someone else's order is indistinguishable from a missing one.
        return order if order.get("owner") == owner else None

    async def list(self, owner: str, limit: int) -> list[dict[str, object]]:
        raws = await timed(
            self.metrics,
            DATA_STORE,
            "list_orders",
            self._list(keys=[owner_index(owner)], args=[limit, ORDER_PREFIX]),
        )
        return [json.loads(raw) for raw in raws if raw is not None]
