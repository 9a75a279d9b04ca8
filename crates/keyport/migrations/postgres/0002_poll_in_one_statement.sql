-- When the last poll was answered `slow_down` (unix ms), so one UPDATE can
-- record a poll, apply RFC 8628 §3.5 and report which it did.
ALTER TABLE device_authorizations ADD COLUMN slowed_ms BIGINT;
