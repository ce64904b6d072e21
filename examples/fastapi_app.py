"""A FastAPI service that hands slow work to pyqueue and waits for it.

    pip install 'pyqueue' fastapi uvicorn
    DATABASE_URL=postgresql://... pyqueue migrate
    DATABASE_URL=postgresql://... uvicorn examples.fastapi_app:app
    DATABASE_URL=postgresql://... pyqueue worker examples.fastapi_app:worker

POST /invoices stores the invoice and enqueues its rendering in the same
transaction (so neither exists without the other), with `AsyncQueue` on the
request's own connection: nothing blocks the event loop. With ?wait=5 it then
waits up to 5 s for the job's result; every waiting request shares the queue's
one LISTEN connection. GET /invoices/{id} reads the invoice and its job.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from pyqueue import AsyncQueue, JobContext, Worker

SCHEMA = """
CREATE TABLE IF NOT EXISTS invoices (
    id       serial PRIMARY KEY,
    customer text    NOT NULL,
    amount   numeric NOT NULL,
    job_id   bigint
)
"""


class InvoiceIn(BaseModel):
    customer: str
    amount: float


@dataclass
class RenderInvoice:
    """The job's payload: a dataclass, stored as JSON, handed back as itself."""

    invoice_id: int
    customer: str
    amount: float


@dataclass
class Rendered:
    pdf: str
    pages: int


worker = Worker(concurrency=4)


@worker.handler("invoices.render")
async def render_invoice(invoice: RenderInvoice, job: JobContext) -> Rendered:
    if invoice.amount < 0:
        raise ValueError(f"invoice {invoice.invoice_id}: negative amount")
    return Rendered(pdf=f"invoice-{invoice.invoice_id}-{invoice.customer}.pdf", pages=1)


def create_app(database_url: str) -> FastAPI:
    pool = AsyncConnectionPool(database_url, open=False)
    queue = AsyncQueue(database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await pool.open()
        async with pool.connection() as conn:
            await conn.execute(SCHEMA)
        async with queue:
            yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/invoices", status_code=201)
    async def create_invoice(invoice: InvoiceIn, wait: float = 0) -> dict[str, Any]:
        # One transaction: the invoice row and its job commit together, or neither.
        async with pool.connection() as conn, conn.transaction():
            row = await (
                await conn.execute(
                    "INSERT INTO invoices (customer, amount) VALUES (%s, %s) RETURNING id",
                    [invoice.customer, invoice.amount],
                )
            ).fetchone()
            assert row is not None
            invoice_id = int(row[0])
            job_id = await queue.enqueue(
                "invoices.render",
                RenderInvoice(invoice_id, invoice.customer, invoice.amount),
                conn=conn,
            )
            await conn.execute(
                "UPDATE invoices SET job_id = %s WHERE id = %s", [job_id, invoice_id]
            )
        reply: dict[str, Any] = {"id": invoice_id, "job_id": job_id, "status": "pending"}
        if wait > 0:
            job = await queue.wait(job_id, timeout=wait)
            reply.update(status=job.status, result=job.result, error=job.error)
        return reply

    @app.get("/invoices/{invoice_id}")
    async def get_invoice(invoice_id: int) -> dict[str, Any]:
        async with pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT customer, amount, job_id FROM invoices WHERE id = %s", [invoice_id]
                )
            ).fetchone()
        if row is None:
            raise HTTPException(404, f"no invoice {invoice_id}")
        job = await queue.get_job(row[2])
        return {"id": invoice_id, "customer": row[0], "job": job.status, "result": job.result}

    return app


def __getattr__(name: str) -> Any:
    # `uvicorn examples.fastapi_app:app` builds the app from $DATABASE_URL on first use.
    if name == "app":
        return create_app(os.environ["DATABASE_URL"])
    raise AttributeError(name)
