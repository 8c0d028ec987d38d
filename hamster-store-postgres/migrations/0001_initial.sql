-- Hamster's store, version 1.
--
-- Every name is unqualified: the tables land in the schema the connection's `search_path`
-- points at (`PostgresConfig::schema`), so several stores can share a database.
-- Timestamps are TIMESTAMPTZ, which keeps microseconds.

CREATE TABLE handlers (
    id          UUID PRIMARY KEY,
    -- The UNIQUE constraint's index also serves lookups by name and the listing order.
    name        TEXT NOT NULL CONSTRAINT handlers_name_unique UNIQUE,
    version     BIGINT NOT NULL CHECK (version >= 1),
    enabled     BOOLEAN NOT NULL,
    source_text TEXT NOT NULL,
    spec        JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- One row, bumped in the same statement as every change to `handlers`, so that a reader
-- never sees a new revision with old handlers.
CREATE TABLE handlers_revision (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    revision  BIGINT NOT NULL
);
INSERT INTO handlers_revision (revision) VALUES (0);

CREATE TABLE deliveries (
    id          TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    headers     JSONB NOT NULL,
    body        BYTEA NOT NULL,
    run_ids     UUID[] NOT NULL
);
CREATE INDEX deliveries_received ON deliveries (received_at, id);

-- No foreign key to handlers: deleting a handler keeps its runs, and no foreign key to
-- deliveries: replays create runs that name a delivery which may have been pruned.
CREATE TABLE runs (
    id              UUID PRIMARY KEY,
    handler_id      UUID NOT NULL,
    handler_name    TEXT NOT NULL,
    handler_version BIGINT NOT NULL,
    handler_spec    JSONB NOT NULL,
    event           JSONB NOT NULL,
    repository      TEXT NOT NULL,
    delivery_id     TEXT,
    status          TEXT NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    created_at      TIMESTAMPTZ NOT NULL,
    started_at      TIMESTAMPTZ,
    finished_at     TIMESTAMPTZ,
    error           TEXT
);
-- Listings are newest first with `id` breaking ties, optionally narrowed by one column.
CREATE INDEX runs_created ON runs (created_at, id);
CREATE INDEX runs_repository_created ON runs (repository, created_at, id);
CREATE INDEX runs_handler_created ON runs (handler_name, created_at, id);
CREATE INDEX runs_status_created ON runs (status, created_at, id);

CREATE TABLE steps (
    run_id      UUID NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    -- Assigned on first insert only (an upsert never touches it): the order steps were
    -- first recorded in.
    seq         BIGINT GENERATED ALWAYS AS IDENTITY,
    name        TEXT NOT NULL,
    action      TEXT NOT NULL,
    status      TEXT NOT NULL
        CHECK (status IN ('running', 'success', 'failure', 'timed_out', 'cancelled')),
    attempt     BIGINT NOT NULL CHECK (attempt >= 0),
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    data        JSONB NOT NULL,
    error       TEXT,
    -- Also the index for "steps of a run".
    PRIMARY KEY (run_id, key)
);

-- Logs are append-only chunks. Each chunk knows the byte offset where it ends, so that
-- reading from an offset is an index range scan, and an append is one insert rather than a
-- rewrite of the whole log. `step_logs` holds each log's length; its row lock orders
-- concurrent appends to the same log. Chunks are BYTEA because output may contain NUL,
-- which TEXT rejects.
CREATE TABLE step_logs (
    run_id   UUID NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_key TEXT NOT NULL,
    length   BIGINT NOT NULL,
    PRIMARY KEY (run_id, step_key)
);

CREATE TABLE step_log_chunks (
    run_id     UUID NOT NULL,
    step_key   TEXT NOT NULL,
    end_offset BIGINT NOT NULL,
    content    BYTEA NOT NULL,
    PRIMARY KEY (run_id, step_key, end_offset),
    FOREIGN KEY (run_id, step_key) REFERENCES step_logs (run_id, step_key) ON DELETE CASCADE
);
