#!/usr/bin/env bash
# The whole job lifecycle from a second language: plain psql and the SQL API,
# no Python. Any client that can call a SQL function can do the same.
#
#   DATABASE_URL=postgresql://... bash examples/lifecycle.sh
#
# The database must already have the schema (`pyqueue migrate`).
set -euo pipefail
: "${DATABASE_URL:?set DATABASE_URL to a database migrated with pyqueue migrate}"

sql() { psql "$DATABASE_URL" -X -q -t -A -v ON_ERROR_STOP=1 -c "$1"; }

# A producer enqueues an invoice job; the same idempotency key returns the same job.
job=$(sql "SELECT pyqueue.enqueue('invoices', '{\"order\": 1001}', idempotency_key => 'order-1001')")
again=$(sql "SELECT pyqueue.enqueue('invoices', '{\"order\": 1001}', idempotency_key => 'order-1001')")
echo "enqueued job $job (again: $again)"

# A worker claims it, reports progress and completes it with a result, all fenced
# by the lease token that the claim returned.
IFS='|' read -r id token < <(sql "SELECT id, lease_token FROM pyqueue.claim_batch('{invoices}', 'psql-worker', 1)")
sql "SELECT pyqueue.report_progress($id, '$token', 50, 'rendering PDF')" >/dev/null
sql "SELECT pyqueue.complete($id, '$token', '{\"pdf\": \"invoice-1001.pdf\"}')" >/dev/null
echo "job $id: $(sql "SELECT status || ' ' || result::text FROM pyqueue.get_job($id)")"

# A job that fails on its only attempt goes to the dead-letter table...
bad=$(sql "SELECT pyqueue.enqueue('invoices', '{\"order\": -1}', max_attempts => 1)")
IFS='|' read -r id token < <(sql "SELECT id, lease_token FROM pyqueue.claim_batch('{invoices}', 'psql-worker', 1)")
echo "job $bad failed: $(sql "SELECT pyqueue.fail($id, '$token', 'order -1 does not exist')")"

# ...from where an operator replays it as a new job, then cancels that one.
replay=$(sql "SELECT pyqueue.retry_dead($bad)")
echo "dead job $bad replayed as job $replay"
sql "SELECT pyqueue.cancel($replay)" >/dev/null
echo "job $replay: $(sql "SELECT status FROM pyqueue.get_job($replay)")"

psql "$DATABASE_URL" -X -q -c "SELECT queue, pending, running, completed, cancelled, dead FROM pyqueue.queue_stats"
