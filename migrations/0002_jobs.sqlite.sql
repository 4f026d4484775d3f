-- Job records of the queue plugin (app/queue/records.py): one row per job on
-- the shard that owns its id. `published` and `relay_until` make the row its
-- own outbox entry: 0 until the queue confirmed the job's first message, and
-- no relay publishes it before relay_until (epoch seconds).
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    args TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    result TEXT,
    error TEXT,
    idempotency_key TEXT,
    run_at REAL NOT NULL,
    published INTEGER NOT NULL,
    relay_until REAL NOT NULL,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX jobs_outbox ON jobs (relay_until) WHERE published = 0;
CREATE INDEX jobs_finished ON jobs (updated_at) WHERE status IN ('succeeded', 'dead');
-- Idempotency-Key -> job, on the shard that owns the key; `created` in epoch seconds.
CREATE TABLE job_keys (
    key TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created REAL NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX job_keys_created ON job_keys (created);
