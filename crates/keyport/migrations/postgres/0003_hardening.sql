-- Failed sign-ins are counted per normalised username, known or not, so a
-- lockout says nothing about which accounts exist; a lockout only blocks new
-- sign-ins and is no longer a property of the user.
CREATE TABLE sign_in_failures (
    username TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL,
    locked_until BIGINT
);
ALTER TABLE users DROP COLUMN failed_logins;
ALTER TABLE users DROP COLUMN locked_until;

-- User codes are stored only as keyed hashes. Codes pending at upgrade
-- cannot be hashed here; they stop resolving (they expire within minutes).
ALTER TABLE device_authorizations RENAME COLUMN user_code TO user_code_hash;
UPDATE device_authorizations SET user_code_hash = 'retired:' || id;
-- A redeemed code's token response, sealed under a key only the device code
-- derives, for a poll retried within the leeway after its reply was lost.
ALTER TABLE device_authorizations ADD COLUMN redeemed_ms BIGINT;
ALTER TABLE device_authorizations ADD COLUMN sealed_tokens TEXT;

-- Rotations timed in milliseconds, so a leeway of 0 allows no retry at all.
ALTER TABLE refresh_tokens ADD COLUMN rotated_ms BIGINT;
UPDATE refresh_tokens SET rotated_ms = rotated_at * 1000 WHERE rotated_at IS NOT NULL;
