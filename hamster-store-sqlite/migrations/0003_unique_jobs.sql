-- A job may have a unique key (Hamster keys a run's job by the run id): while a job with the
-- key is in the queue, in any state, enqueueing the key again adds nothing. Acking deletes
-- the row, which frees the key.
ALTER TABLE jobs ADD COLUMN unique_key TEXT;
CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key) WHERE unique_key IS NOT NULL;
