-- A delivery's body is the payload of the events its runs were created for (GitHub's
-- deliveries say so with `body_is_payload`); such runs are stored without their payload,
-- which is read back from the delivery. Intake then writes, compresses and logs each
-- payload once instead of twice.
ALTER TABLE deliveries ADD COLUMN body_is_payload BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE runs ADD COLUMN payload_in_delivery BOOLEAN NOT NULL DEFAULT FALSE;
