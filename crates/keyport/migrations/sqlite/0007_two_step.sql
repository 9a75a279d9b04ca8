-- Two-step verification and the devices the password grant registers.
-- Only adds, so instances on the previous release go on working during a
-- rolling upgrade.

-- The authenticator's secret, sealed under the master key (the user id is
-- the associated data), and the last time step accepted: a code works once.
ALTER TABLE users ADD COLUMN totp_secret TEXT;
ALTER TABLE users ADD COLUMN totp_last_step INTEGER;
-- Codes by email (to the account's address) and by text message.
ALTER TABLE users ADD COLUMN email_codes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN phone TEXT;

-- A browser that gave the right password but not yet its second step.
ALTER TABLE browser_sessions ADD COLUMN pending_two_step INTEGER NOT NULL DEFAULT 0;

-- Ten per user, each used once; stored as HMACs under a key derived from
-- the master key (they are short).
CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    used_at INTEGER,
    PRIMARY KEY (user_id, code_hash)
);

-- The one live email or text-message code of a user: an HMAC of the six
-- digits, its expiry and the attempts made on it.
CREATE TABLE sign_in_codes (
    user_id TEXT PRIMARY KEY,
    code_hash TEXT NOT NULL,
    channel TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);

-- Devices registered through the password grant (`guid`, seed 003).
CREATE TABLE devices (
    guid TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    dns_name TEXT,
    os_type TEXT,
    os_version TEXT,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);
CREATE INDEX devices_user ON devices (user_id);
