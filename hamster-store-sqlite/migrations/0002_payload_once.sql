-- A delivery's body is the payload of the events its runs were created for (GitHub's
-- deliveries say so with `body_is_payload`); such runs are stored without their payload,
-- which is read back from the delivery. Intake then writes each payload once instead of
-- twice: it was half of the bytes written per delivery.
ALTER TABLE deliveries ADD COLUMN body_is_payload INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN payload_in_delivery INTEGER NOT NULL DEFAULT 0;
