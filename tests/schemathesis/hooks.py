"""Schemathesis hooks for the order service's API check (tests/api/schemathesis.rs).

- `positive_data_acceptance` (a request the document allows must not be refused)
  holds for every rule JSON Schema can state, and the document states them. A few
  rules of the contract depend on the order's state, on another field or on an
  earlier request, which no schema can say; a `422` citing only those (see
  `NOT_IN_A_SCHEMA`) is not counted against the document.
- Generated requests name the orders the test seeded as well as random ids, so that
  they reach real orders and returns, not only `404`s.
- The check `rejected_request_changes_nothing`: every `4xx` answer leaves the read
  model as it found it. A fingerprint of the read model is taken right before each
  call and right after its answer; after an answer that may have started work in the
  background (anything but a `4xx` to a mutating call, or a change seen between two
  calls), the next call first waits for the read model to come to rest. The one
  thing a refusal may add is what the idempotency contract asks for (docs/guide.md,
  "Conventions"): a refusal the order's saga decided is kept under the request's
  `Idempotency-Key`, so that the same key and body get it again. So a `4xx` may add
  one `idempotency_keys` row, only under the request's own key, holding exactly the
  answer given; anything else is a change.

Environment: `ORDER_CHECK_DATABASE_URL` (the service's database),
`ORDER_CHECK_SEEDS` (JSON: `{"orders": [id...], "order_numbers": [...],
"returns": [[order id, return id]...]}`) and `ORDER_CHECK_SUBJECT` (the `sub` of the
token the calls carry: keys are kept in its scope).
"""

import hashlib
import json
import os
import re
import time
import uuid

import psycopg
import schemathesis
from hypothesis import strategies as st

SEEDS = json.loads(os.environ.get("ORDER_CHECK_SEEDS", "{}"))
ORDERS = SEEDS.get("orders", [])
ORDER_NUMBERS = SEEDS.get("order_numbers", [])
RETURNS = [tuple(pair) for pair in SEEDS.get("returns", [])]

# Counts and versions of every table a request can write; columns that the outbox
# relay changes in the background (sent_at, attempts) are left out on purpose.
FINGERPRINT = """
SELECT json_build_object(
  'orders', (SELECT json_build_array(count(*), coalesce(sum(version), 0),
                                     max(updated_at)::text, max(order_number))
             FROM orders),
  'order_items', (SELECT json_build_array(count(*),
                    coalesce(sum(cancelled_quantity + returned_quantity + refunded_quantity), 0))
                  FROM order_items),
  'order_status_history', (SELECT count(*) FROM order_status_history),
  'order_edit_history', (SELECT count(*) FROM order_edit_history),
  'payments', (SELECT count(*) FROM payments),
  'refunds', (SELECT count(*) FROM refunds),
  'returns', (SELECT json_build_array(count(*), coalesce(sum(version), 0)) FROM returns),
  'saga_steps', (SELECT count(*) FROM saga_steps),
  'idempotency_keys', (SELECT json_build_array(count(*), count(response_status))
                       FROM idempotency_keys),
  'order_number_counters', (SELECT coalesce(sum(last_value), 0) FROM order_number_counters),
  'outbox', (SELECT json_build_array(count(*), max(id)) FROM outbox)
)::text
"""

# The contract's refusals that a JSON Schema cannot state, each named precisely:
# problem codes, and (field, message) patterns of `validation_failed` errors.
NOT_IN_A_SCHEMA_CODES = {
    "quantity_exceeded",  # more units than the order has left
    "idempotency_key_reused",  # the key went with another body before
}
NOT_IN_A_SCHEMA = [
    # another field: the payment of a create must equal its total
    (r"payment\.amount", r"must equal the order total when given"),
    # the order's state: a draft's payment must equal what it owes
    (r"amount", r"must equal the amount due \d+\.\d{2}"),
    (r"amount", r"the order owes nothing \(0\.00\): there is nothing to charge"),
    # the order's items
    (r"(?:return_)?items\[\d+\]\.item_id", r"the order has no item \d+"),
    (r"(?:return_)?items\[\d+\]\.item_id", r"item \d+ is named more than once"),
    # the other fields of the line and of the order: bounds of their totals
    # (an exchange's new items are lines of their own)
    (r"(?:new_)?items\[\d+\]\.discount_amount", r"must not exceed quantity \* unit_price"),
    (r"(?:new_)?items\[\d+\]\.unit_price", r"times quantity must be at most 99999999999\.99"),
    (r"(?:new_)?items\[\d+\]\.tax_amount", r"makes the line total exceed 99999999999\.99"),
    (r"items", r"the order total must be at most 99999999999\.99"),
    (r"items", r"the order total must be more than 0\.00"),
    # the analytics window: `from` and `to` together
    (r"to", r"must be after from"),
    (r"from", r"must be before to \(now when not given\)"),
    (r"to", r"must be at most 366 days after from"),
    (r"from", r"must be at most 366 days before to \(now when not given\)"),
]

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}

# How long the read model must stay unchanged to count as at rest, and the most a
# call waits for that.
QUIET_SECONDS = 0.3
SETTLE_LIMIT_SECONDS = 20.0


class ReadModel:
    def __init__(self):
        self.conn = psycopg.connect(os.environ["ORDER_CHECK_DATABASE_URL"], autocommit=True)
        self.unsettled = True
        self.last = None
        # case id -> (fingerprint before the call, fingerprint after its answer)
        self.calls = {}

    def stored_answers(self, key):
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT response_status, response_body FROM idempotency_keys WHERE key = %s",
                (key,),
            )
            return cur.fetchall()

    def fingerprint(self):
        with self.conn.cursor() as cur:
            cur.execute(FINGERPRINT)
            return json.loads(cur.fetchone()[0])

    def settle(self):
        """Waits until the read model stops changing; returns its fingerprint."""
        current = self.fingerprint()
        if not self.unsettled and current == self.last:
            return current
        deadline = time.monotonic() + SETTLE_LIMIT_SECONDS
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.fingerprint()
            if now != current:
                current, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since >= QUIET_SECONDS:
                break
        else:
            raise AssertionError(
                f"the read model did not come to rest within {SETTLE_LIMIT_SECONDS} s"
            )
        self.unsettled = False
        return current


_READ_MODEL = None


def read_model():
    global _READ_MODEL
    if _READ_MODEL is None:
        _READ_MODEL = ReadModel()
    return _READ_MODEL


def _is_uuid(value):
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


def _is_order_number(value):
    parts = str(value).split("-")
    return (
        len(parts) == 3
        and parts[0] == "ORD"
        and len(parts[1]) == 8
        and parts[1].isascii()
        and parts[1].isdigit()
        and len(parts[2]) >= 6
        and parts[2].isascii()
        and parts[2].isdigit()
    )


@schemathesis.hook
def flatmap_path_parameters(context, path_parameters):
    """Besides the generated value, the seeded orders (and their returns). A value is
    replaced only by another one that is just as valid, so a negative case stays
    negative."""
    if not path_parameters:
        return st.just(path_parameters)
    choices = [path_parameters]
    if "return_id" in path_parameters:
        if _is_uuid(path_parameters.get("id")) and _is_uuid(path_parameters["return_id"]):
            choices += [{**path_parameters, "id": o, "return_id": r} for o, r in RETURNS]
            choices += [{**path_parameters, "id": o} for o in ORDERS]
    elif "id" in path_parameters:
        if _is_uuid(path_parameters["id"]):
            choices += [{**path_parameters, "id": o} for o in ORDERS]
    elif "order_number" in path_parameters:
        if _is_order_number(path_parameters["order_number"]):
            choices += [{**path_parameters, "order_number": n} for n in ORDER_NUMBERS]
    return st.sampled_from(choices)


def _only_rules_no_schema_states(response):
    try:
        problem = response.json()
    except ValueError:
        return False
    if response.status_code != 422 or not isinstance(problem, dict):
        return False
    if problem.get("code") in NOT_IN_A_SCHEMA_CODES:
        return True
    errors = problem.get("errors") if problem.get("code") == "validation_failed" else None
    return bool(errors) and all(
        any(
            re.fullmatch(field, str(e.get("field"))) and re.fullmatch(message, str(e.get("message")))
            for field, message in NOT_IN_A_SCHEMA
        )
        for e in errors
    )


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keeps every failure but a schema-valid request refused by rules of the
    contract that no schema can state."""
    if getattr(failure, "code", None) == "ST202" and _only_rules_no_schema_states(response):
        return False
    return True


@schemathesis.hook
def before_call(context, case, kwargs):
    model = read_model()
    model.calls[case.id] = (model.settle(), None)


@schemathesis.hook
def after_call(context, case, response):
    model = read_model()
    after = model.fingerprint()
    before, _ = model.calls.get(case.id, (None, None))
    model.calls[case.id] = (before, after)
    model.last = after
    rejected = 400 <= response.status_code < 500
    if (case.method.upper() in MUTATING and not rejected) or after != before:
        model.unsettled = True


def _scoped(key):
    """The key as the service keeps it: in the scope of the calls' subject (the
    SHA-256 of the subject's length as 8 big-endian bytes, the subject and the key)."""
    subject = os.environ.get("ORDER_CHECK_SUBJECT")
    if subject is None:
        return key
    sub = subject.encode()
    digest = hashlib.sha256(len(sub).to_bytes(8, "big") + sub + key.encode()).hexdigest()
    return f"sub-{digest}"


def _keeps_its_answer(model, case, response, before, after):
    """Whether the change of `idempotency_keys` ([rows, rows answered]) is the one row
    that keeps this answer under the request's key."""
    key = next((v for k, v in (case.headers or {}).items() if k.lower() == "idempotency-key"), None)
    if key is None or after != [before[0] + 1, before[1] + 1]:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    answers = model.stored_answers(_scoped(key))
    return any(s == response.status_code and b == body for s, b in answers)


@schemathesis.check
def rejected_request_changes_nothing(ctx, response, case):
    """A request answered 4xx leaves the read model as it was."""
    if not 400 <= response.status_code < 500:
        return None
    model = read_model()
    before, after = model.calls.get(case.id, (None, None))
    if before is None or after is None:
        return None
    changed = {k: (before[k], after[k]) for k in before if before[k] != after.get(k)}
    keys = changed.pop("idempotency_keys", None)
    if keys is not None and not _keeps_its_answer(model, case, response, *keys):
        changed["idempotency_keys"] = keys
    if changed:
        raise AssertionError(
            f"{case.method.upper()} {case.path} was answered {response.status_code} "
            f"but changed the read model: {changed}"
        )
    return True
