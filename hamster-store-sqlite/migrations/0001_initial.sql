-- Hamster's store and queue on one SQLite file.
-- Timestamps are INTEGER microseconds since the Unix epoch (UTC); ids are UUID text;
-- JSON documents are TEXT.

CREATE TABLE handlers (
    id          TEXT    PRIMARY KEY NOT NULL,
    name        TEXT    NOT NULL UNIQUE,
    version     INTEGER NOT NULL,
    enabled     INTEGER NOT NULL,
    source_text TEXT    NOT NULL,
    spec        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Named counters; `handlers_revision` is bumped by triggers, so that every change to the
-- handlers table (through this crate or by hand) invalidates matchers' caches.
CREATE TABLE counters (
    name  TEXT    PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO counters (name, value) VALUES ('handlers_revision', 0);

CREATE TRIGGER handlers_revision_on_insert AFTER INSERT ON handlers BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'handlers_revision';
END;
CREATE TRIGGER handlers_revision_on_update AFTER UPDATE ON handlers BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'handlers_revision';
END;
CREATE TRIGGER handlers_revision_on_delete AFTER DELETE ON handlers BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'handlers_revision';
END;

-- Runs outlive their handler and may name a delivery that was never stored (replays), so
-- neither column is a foreign key.
CREATE TABLE runs (
    id              TEXT    PRIMARY KEY NOT NULL,
    handler_id      TEXT    NOT NULL,
    handler_name    TEXT    NOT NULL,
    handler_version INTEGER NOT NULL,
    handler         TEXT    NOT NULL,
    event           TEXT    NOT NULL,
    repository      TEXT    NOT NULL,
    delivery_id     TEXT,
    status          TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    error           TEXT
);

CREATE INDEX runs_by_creation   ON runs (created_at, id);
CREATE INDEX runs_by_status     ON runs (status, created_at, id);
CREATE INDEX runs_by_repository ON runs (repository, created_at, id);
CREATE INDEX runs_by_handler    ON runs (handler_name, created_at, id);

-- `seq` breaks ties between deliveries received at the same instant.
CREATE TABLE deliveries (
    seq         INTEGER PRIMARY KEY,
    id          TEXT    NOT NULL UNIQUE,
    event       TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    headers     TEXT    NOT NULL,
    body        BLOB    NOT NULL,
    run_ids     TEXT    NOT NULL
);

CREATE INDEX deliveries_by_arrival ON deliveries (received_at, seq);

-- `seq` is assigned on the first insert and kept by upserts: steps list in the order they
-- were first recorded.
CREATE TABLE steps (
    seq         INTEGER PRIMARY KEY,
    run_id      TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key         TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    data        TEXT    NOT NULL,
    error       TEXT,
    UNIQUE (run_id, key)
);

-- A log is the concatenation of its chunks, one per append; `end_offset` is the log's
-- length in bytes after the chunk, so reading from an offset is an index range scan and
-- appending never rewrites what is stored.
CREATE TABLE log_chunks (
    run_id     TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_key   TEXT    NOT NULL,
    end_offset INTEGER NOT NULL,
    text       TEXT    NOT NULL,
    UNIQUE (run_id, step_key, end_offset)
);

-- Queue. `seq` is the enqueue order, the order ready jobs are delivered in.
--   ready:   deliverable now;
--   delayed: deliverable from `available_at`;
--   leased:  held by `token` until `lease_expires_at`;
--   dead:    out of attempts, since `failed_at`, because of `reason`.
CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY,
    id               TEXT    NOT NULL UNIQUE,
    payload          TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('ready', 'delayed', 'leased', 'dead')),
    attempt          INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    enqueued_at      INTEGER NOT NULL,
    available_at     INTEGER,
    token            TEXT,
    lease_expires_at INTEGER,
    reason           TEXT,
    failed_at        INTEGER
);

CREATE INDEX jobs_ready   ON jobs (seq)              WHERE state = 'ready';
CREATE INDEX jobs_delayed ON jobs (available_at)     WHERE state = 'delayed';
CREATE INDEX jobs_leased  ON jobs (lease_expires_at) WHERE state = 'leased';
CREATE INDEX jobs_dead    ON jobs (failed_at, seq)   WHERE state = 'dead';
