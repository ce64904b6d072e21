"""pyqueue: a durable background-job queue that lives inside PostgreSQL."""

from pyqueue.asyncclient import AsyncQueue
from pyqueue.client import Queue
from pyqueue.errors import (
    CannotConnect,
    ConnectionLost,
    HungHandlers,
    InvalidArgument,
    InvalidPayload,
    JobNotFound,
    JobStateError,
    LeaseLost,
    OutcomeUnknown,
    PyqueueError,
    ReadOnlyDatabase,
    SchemaError,
)
from pyqueue.jobs import ClaimedJob, FailOutcome, Job, Schedule
from pyqueue.schema import SCHEMA_VERSION, migrate, rollback_all
from pyqueue.typed import Payload, PayloadMismatch
from pyqueue.worker import JobContext, Worker

__all__ = [
    "SCHEMA_VERSION",
    "AsyncQueue",
    "CannotConnect",
    "ClaimedJob",
    "ConnectionLost",
    "FailOutcome",
    "HungHandlers",
    "InvalidArgument",
    "InvalidPayload",
    "Job",
    "JobContext",
    "JobNotFound",
    "JobStateError",
    "LeaseLost",
    "OutcomeUnknown",
    "Payload",
    "PayloadMismatch",
    "PyqueueError",
    "Queue",
    "ReadOnlyDatabase",
    "Schedule",
    "SchemaError",
    "Worker",
    "migrate",
    "rollback_all",
]
