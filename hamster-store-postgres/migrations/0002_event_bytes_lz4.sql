-- Intake cost, measured (docs/benchmarks/intake.md): PostgreSQL spent more CPU than the
-- appserver, most of it in pglz compressing each delivery's body and each run's event, and
-- in parsing the event into JSONB.
--
-- A run's event is read back whole and never queried inside, so it is stored as the JSON
-- bytes the store wrote (`convert_from(event, 'UTF8')::jsonb` reads it in SQL). BYTEA also
-- holds U+0000, which JSONB refuses.
ALTER TABLE runs ALTER COLUMN event TYPE BYTEA USING convert_to(event::text, 'UTF8');

-- lz4 compresses these several times faster than the default pglz. It needs PostgreSQL 14+
-- built with lz4 (the packaged builds are); elsewhere the columns keep the default.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE deliveries ALTER COLUMN body SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE runs ALTER COLUMN event SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE steps ALTER COLUMN data SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE step_log_chunks ALTER COLUMN content SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported OR syntax_error OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 compression is not available; large columns keep the default compression';
END
$$;
