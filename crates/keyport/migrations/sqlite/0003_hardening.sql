-- Failed sign-ins are counted per normalised username, known or not, so a
-- lockout says nothing about which accounts exist; a lockout only blocks new
-- sign-ins and is no longer a property of the user. (users.failed_logins and
-- users.locked_until are no longer read; they stay until a later release so
-- instances on the previous binary keep working during a rolling upgrade.)
CREATE TABLE sign_in_failures (
    username TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL,
    locked_until INTEGER
);

-- User codes are stored only as keyed hashes. This release writes the hash
-- into both columns (the old `user_code` is NOT NULL UNIQUE, and instances on
-- the previous binary still read it); rows it did not write expire within
-- minutes. A later release drops `user_code`.
ALTER TABLE device_authorizations ADD COLUMN user_code_hash TEXT;
CREATE UNIQUE INDEX device_authorizations_user_code_hash ON device_authorizations (user_code_hash);
-- A redeemed code's token response, sealed under a key only the device code
-- derives, for a poll retried within the leeway after its reply was lost.
ALTER TABLE device_authorizations ADD COLUMN redeemed_ms INTEGER;
ALTER TABLE device_authorizations ADD COLUMN sealed_tokens TEXT;

-- Rotations timed in milliseconds, so a leeway of 0 allows no retry at all.
ALTER TABLE refresh_tokens ADD COLUMN rotated_ms INTEGER;
UPDATE refresh_tokens SET rotated_ms = rotated_at * 1000 WHERE rotated_at IS NOT NULL;
