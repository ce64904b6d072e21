"""examples/fastapi_app.py against the real database: a FastAPI service enqueues
with AsyncQueue inside its own transaction, a worker runs the jobs, the service
waits for their results."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import counts, running, scalar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from examples import fastapi_app

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _client(app):
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://app.test")


async def test_the_service_enqueues_in_its_transaction_and_waits_for_results(dsn, db):
    # One attempt only, as an operator configures it: the refused invoice dies at once.
    db.execute("SELECT pyqueue.configure_queue('invoices.render', max_attempts => 1)")
    app = fastapi_app.create_app(dsn)
    async with app.router.lifespan_context(app), await _client(app) as client:
        with running(fastapi_app.worker, dsn):
            replies = await asyncio.gather(
                *[
                    client.post("/invoices?wait=20", json={"customer": f"c{n}", "amount": 10 + n})
                    for n in range(5)
                ]
            )
            refused = await client.post("/invoices?wait=20", json={"customer": "x", "amount": -1})
        for n, reply in enumerate(replies):
            assert reply.status_code == 201, reply.text
            body = reply.json()
            assert body["status"] == "completed"
            assert body["result"] == {"pdf": f"invoice-{body['id']}-c{n}.pdf", "pages": 1}
        assert refused.json()["status"] == "dead"
        assert "negative amount" in refused.json()["error"]
        shown = await client.get(f"/invoices/{replies[0].json()['id']}")
        assert shown.json()["job"] == "completed"
        assert (await client.get("/invoices/999")).status_code == 404
    assert scalar(db, "SELECT count(*) FROM invoices WHERE job_id IS NOT NULL") == 6


async def test_an_invoice_that_cannot_be_stored_leaves_no_job(dsn, db):
    app = fastapi_app.create_app(dsn)
    async with app.router.lifespan_context(app), await _client(app) as client:
        db.execute("ALTER TABLE invoices ADD CONSTRAINT small CHECK (amount < 1000)")
        with pytest.raises(Exception, match="small"):
            await client.post("/invoices", json={"customer": "big", "amount": 5000})
        ok = await client.post("/invoices", json={"customer": "fine", "amount": 5})
    assert ok.json()["status"] == "pending"
    # The refused invoice's job was rolled back with it: only the second one exists.
    assert counts(db) == (1, 0)
