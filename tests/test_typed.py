"""Typed payloads and results: dataclasses, TypedDicts and pydantic models.

Decoding and encoding on their own (pyqueue.typed), then a worker running
typed handlers against the real database, then the SQL that fails a job for
good (fail_batch's `retryable`), called as psql users call it.
"""

from __future__ import annotations

import enum
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, TypedDict

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyqueue import InvalidArgument, InvalidPayload, JobContext, PayloadMismatch, Worker
from pyqueue.typed import decoder_for, payload_decoder
from pyqueue.values import to_json
from tests.helpers import claim, dead, enqueue, job, running, sqlstate_of, writes_nothing

# ---------------------------------------------------------------- the types


class Currency(enum.Enum):
    EUR = "EUR"
    USD = "USD"


@dataclass
class Line:
    sku: str
    quantity: int
    price: float


@dataclass
class Invoice:
    number: int
    customer: str
    lines: list[Line]
    currency: Currency
    issued: date
    note: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Receipt:
    number: int
    total: float
    at: datetime


class Mail(TypedDict):
    to: str
    subject: str
    kind: Literal["welcome", "reset"]


class Order(pydantic.BaseModel):
    id: int
    items: list[str]
    rush: bool = False


INVOICE = Invoice(
    7, "ada", [Line("a-1", 2, 9.5), Line("b-2", 1, 3.0)], Currency.EUR, date(2026, 12, 1)
)
INVOICE_JSON = {
    "number": 7,
    "customer": "ada",
    "lines": [
        {"sku": "a-1", "quantity": 2, "price": 9.5},
        {"sku": "b-2", "quantity": 1, "price": 3.0},
    ],
    "currency": "EUR",
    "issued": "2026-12-01",
    "note": None,
    "tags": {},
}


def decode(tp: Any, value: Any) -> Any:
    decoder = decoder_for(tp)
    assert decoder is not None
    return decoder(value, "payload")


# ---------------------------------------------------------------- encoding and decoding


def test_a_dataclass_is_stored_as_a_json_object_and_decoded_back():
    import json

    assert json.loads(to_json(INVOICE)) == INVOICE_JSON
    assert decode(Invoice, INVOICE_JSON) == INVOICE


def test_typeddicts_and_pydantic_models_decode_and_encode():
    mail = {"to": "a@example.com", "subject": "hi", "kind": "welcome"}
    assert decode(Mail, mail) == mail
    assert decode(Order, {"id": 1, "items": ["x"]}) == Order(id=1, items=["x"])
    assert to_json(Order(id=1, items=["x"], rush=True)) == '{"id": 1, "items": ["x"], "rush": true}'


@pytest.mark.parametrize(
    ("tp", "value", "words"),
    [
        (Invoice, [1], "payload: expected an object for Invoice, got list [1]"),
        (Invoice, {**INVOICE_JSON, "number": "7"}, "payload.number: expected int, got str '7'"),
        (Invoice, {**INVOICE_JSON, "number": True}, "payload.number: expected int, got bool True"),
        (Invoice, {**INVOICE_JSON, "lines": [{"sku": "a"}]}, "payload.lines[0]: Line needs field"),
        (Invoice, {**INVOICE_JSON, "extra": 1}, "payload: Invoice has no field extra"),
        (Invoice, {**INVOICE_JSON, "currency": "GBP"}, "payload.currency: expected a value of"),
        (Invoice, {**INVOICE_JSON, "issued": "soon"}, "payload.issued: expected date as text"),
        (Mail, {"to": "a", "subject": "b"}, "payload: Mail needs field kind"),
        (Mail, {"to": "a", "subject": "b", "kind": "spam"}, "payload.kind: expected one of"),
        (Order, {"id": "x", "items": []}, "payload: does not fit Order"),
        (list[int], [1, "2"], "payload[1]: expected int, got str '2'"),
        (int | None, "1", "payload: expected int | None, got str '1'"),
    ],
)
def test_a_payload_that_does_not_fit_names_the_field_at_fault(tp, value, words):
    with pytest.raises(PayloadMismatch) as raised:
        decode(tp, value)
    assert words in str(raised.value)
    assert isinstance(raised.value, InvalidPayload)


@pytest.mark.parametrize(
    "tp", [set[int], bytes, complex, tuple[int, str], dict[int, str], object()]
)
def test_a_type_that_cannot_be_decoded_is_refused_naming_it(tp):
    with pytest.raises(InvalidArgument, match="cannot decode payloads into"):
        decoder_for(tp)


def test_untyped_and_json_annotations_take_the_payload_as_it_is():
    for tp in (Any, dict, list, dict[str, Any], list[Any], object):
        assert decoder_for(tp) is None


def test_plain_dicts_stay_strict_while_dataclass_fields_may_hold_dates():
    with pytest.raises(InvalidPayload, match="payload is not JSON-serialisable"):
        to_json({"at": datetime(2026, 1, 1)})
    assert '"at": "2026-01-01T00:00:00+00:00"' in to_json(
        Receipt(1, 2.0, datetime(2026, 1, 1, tzinfo=UTC))
    )


# Text jsonb can store: no NUL (enqueue refuses it, tests/test_client.py).
names = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20
)
lines = st.builds(
    Line, names, st.integers(-(2**31), 2**31), st.floats(allow_nan=False, allow_infinity=False)
)
invoices = st.builds(
    Invoice,
    st.integers(0, 2**53),
    names,
    st.lists(lines, max_size=4),
    st.sampled_from(Currency),
    st.dates(),
    st.none() | names,
    st.dictionaries(names, names, max_size=3),
)


@settings(max_examples=100, deadline=None)
@given(invoices)
def test_any_invoice_survives_encoding_and_decoding(invoice):
    import json

    assert decode(Invoice, json.loads(to_json(invoice))) == invoice


@settings(max_examples=50, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | names,
        lambda c: st.lists(c, max_size=4) | st.dictionaries(names, c, max_size=4),
    )
)
def test_decoding_any_json_into_invoice_either_fits_or_raises_payload_mismatch(value):
    try:
        decoded = decode(Invoice, value)
    except PayloadMismatch as error:
        assert str(error).startswith("payload")
    else:
        assert isinstance(decoded, Invoice)


# ---------------------------------------------------------------- registration


def test_registration_refuses_an_annotation_it_cannot_decode():
    worker = Worker()
    with pytest.raises(
        InvalidArgument, match=r"the handler of 'q': cannot decode payloads into .*set"
    ):

        @worker.handler("q")
        def handle(payload: set[int], job: JobContext) -> None: ...

    def unresolvable(payload: NoSuchType, job: JobContext) -> None: ...  # noqa: F821

    with pytest.raises(InvalidArgument, match="cannot read its type annotations"):
        worker.handler("r")(unresolvable)
    assert worker.handlers == {}


def test_partials_and_callable_objects_are_decoded_by_their_payload_annotation():
    import functools

    class Biller:
        def __call__(self, invoice: Invoice, job: JobContext) -> int:
            return invoice.number

    def bill(invoice: Invoice, job: JobContext, factor: int = 1) -> int:
        return invoice.number * factor

    for handler in (Biller(), functools.partial(bill, factor=2)):
        decoder = payload_decoder(handler, "q")
        assert decoder is not None and decoder(INVOICE_JSON, "payload") == INVOICE
    assert payload_decoder(print, "q") is None  # a builtin: no signature to read


def test_untyped_handlers_are_registered_as_they_are():
    worker = Worker()

    def untyped(payload, job):
        return payload

    def json_typed(payload: dict[str, Any], job: JobContext) -> None: ...

    worker.handler("a")(untyped)
    worker.handler("b")(json_typed)
    assert worker.handlers == {"a": untyped, "b": json_typed}
    assert payload_decoder(untyped, "a") is None


# ---------------------------------------------------------------- a worker running typed handlers


def _wait_finished(db, job_ids, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = db.execute(
            "SELECT count(*) FROM pyqueue.all_jobs WHERE id = ANY(%s) AND finished", [job_ids]
        ).fetchone()[0]
        if found == len(job_ids):
            return
        time.sleep(0.05)
    raise AssertionError(f"jobs {job_ids} did not finish")


def test_typed_handlers_receive_their_types_and_a_misfit_payload_dies_at_once(dsn, db, queue):
    worker = Worker(poll_interval=0.05, maintenance_interval=None)
    seen: list[Any] = []

    @worker.handler("invoices")
    def bill(invoice: Invoice, job: JobContext) -> Receipt:
        seen.append(invoice)
        total = sum(line.quantity * line.price for line in invoice.lines)
        return Receipt(invoice.number, total, datetime(2026, 12, 7, tzinfo=UTC))

    @worker.handler("orders")
    async def ship(order: Order, job: JobContext) -> Order:
        return order.model_copy(update={"rush": True})

    good = queue.enqueue("invoices", INVOICE)
    order = queue.enqueue("orders", Order(id=3, items=["x"]))
    misfit = queue.enqueue("invoices", {"number": "seven"}, max_attempts=5)
    bad_order = queue.enqueue("orders", {"id": []}, max_attempts=5)
    with running(worker, dsn):
        _wait_finished(db, [good, order, misfit, bad_order])
    assert seen == [INVOICE]
    assert queue.get_job(good).result == {
        "number": 7,
        "total": 22.0,
        "at": "2026-12-07T00:00:00+00:00",
    }
    assert queue.get_job(order).result == {"id": 3, "items": ["x"], "rush": True}
    for job_id, words in [
        (misfit, "payload: Invoice needs field"),
        (bad_order, "does not fit Order"),
    ]:
        d = dead(db, job_id)
        # Dead on its first attempt of five: a run again cannot change its payload.
        assert (d["attempt"], d["max_attempts"]) == (1, 5)
        assert "the payload does not fit the handler's type" in d["error"] and words in d["error"]


# ---------------------------------------------------------------- the SQL: fail_batch(retryable)


def _fail_batch(db, held, errors, retryable):
    return db.execute(
        "SELECT job_id, outcome::text FROM pyqueue.fail_batch(%s, %s, %s, NULL, %s)",
        [[c.id for c in held], [c.lease_token for c in held], errors, retryable],
    ).fetchall()


def test_fail_batch_dead_letters_a_job_that_is_not_retryable_whatever_attempts_it_has(db):
    kept = enqueue(db, max_attempts=5)
    doomed = enqueue(db, max_attempts=5)
    unsaid = enqueue(db, max_attempts=5)
    held = sorted(claim(db, batch_size=3), key=lambda c: c.id)
    outcomes = _fail_batch(db, held, ["flaky", "misfit", "flaky"], [True, False, None])
    assert outcomes == [(kept, "pending"), (doomed, "dead"), (unsaid, "pending")]
    assert dead(db, doomed)["error"] == "misfit"
    assert job(db, kept)["status"] == job(db, unsaid)["status"] == "pending"
    # Left out (as older callers do), every job may be retried.
    again = enqueue(db, max_attempts=5)
    [c] = claim(db)
    assert c.id == again
    assert db.execute(
        "SELECT outcome::text FROM pyqueue.fail_batch(%s, %s, ARRAY['x'])",
        [[c.id], [c.lease_token]],
    ).fetchone() == ("pending",)


def test_fail_batch_refuses_a_retryable_array_that_does_not_pair_up(db):
    enqueue(db)
    enqueue(db)
    held = claim(db, batch_size=2)
    with writes_nothing(db):
        error = sqlstate_of(
            db,
            "SELECT * FROM pyqueue.fail_batch(%s, %s, %s, NULL, %s)",
            [[c.id for c in held], [c.lease_token for c in held], ["a", "b"], [False]],
        )
    assert error.sqlstate == "22023"
    assert "retryable has 1 elements, job_ids has 2" in error.diag.message_primary


def test_a_lost_job_stays_lost_even_when_not_retryable(db):
    enqueue(db)
    [c] = claim(db)
    db.execute("SELECT pyqueue.cancel(%s)", [c.id])
    assert _fail_batch(db, [c], ["misfit"], [False]) == [(c.id, "lost")]
    assert job(db, c.id)["status"] == "cancelled"
    assert uuid.UUID(str(c.lease_token))


# ---------------------------------------------------------------- mypy --strict users

TYPING_SAMPLE = """
from dataclasses import dataclass

from pyqueue import AsyncQueue, JobContext, Queue, Worker


@dataclass
class Invoice:
    number: int


worker = Worker()


@worker.handler("invoices")
def bill(invoice: Invoice, job: JobContext) -> dict[str, int]:
    return {"number": invoice.number}


reveal_type(bill)
with Queue("postgresql://") as queue:
    queue.enqueue("invoices", Invoice(1))
    queue.enqueue("invoices", {"number": 1})
    numbers: list[int] = [1]
    queue.enqueue_many("invoices", [numbers, Invoice(2), None, "text", 2.5])
    queue.enqueue("invoices", {1, 2})


async def produce(aqueue: AsyncQueue) -> int:
    return await aqueue.enqueue("invoices", b"raw")


@worker.handler("wrong")
def takes_three(payload: int, job: JobContext, extra: int) -> None: ...
"""


def test_mypy_strict_users_get_precise_types(tmp_path):
    """The decorated handler keeps its own type; enqueue refuses what JSON cannot hold."""
    import subprocess
    import sys
    from pathlib import Path

    sample = tmp_path / "sample.py"
    sample.write_text(TYPING_SAMPLE)
    # From the repository's root, so that mypy reuses the cache that lint.sh left.
    root = Path(__file__).resolve().parent.parent
    found = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(sample)],
        capture_output=True, text=True, cwd=root, timeout=300,
    ).stdout  # fmt: skip
    lines = [line.split(": ", 1)[1] for line in found.splitlines()]
    assert lines[0] == (
        'note: Revealed type is "def (invoice: sample.Invoice, job: '
        'pyqueue.worker.context.JobContext) -> dict[str, int]"'
    )
    assert [line.split('"')[1] for line in lines[1:]] == [
        "enqueue",  # a set
        "enqueue",  # bytes, on the AsyncQueue
        "H",  # a handler that does not take (payload, job)
    ], found
