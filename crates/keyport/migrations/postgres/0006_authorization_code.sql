-- The authorization code grant (RFC 6749 §4.1 with PKCE) and per-client
-- token settings. Only adds, so instances on the previous release go on
-- working during a rolling upgrade.
ALTER TABLE clients ADD COLUMN default_scopes TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN first_party BIGINT NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN access_token_format TEXT NOT NULL DEFAULT 'jwt';
ALTER TABLE clients ADD COLUMN access_token_alg TEXT NOT NULL DEFAULT 'EdDSA';
ALTER TABLE clients ADD COLUMN access_token_prefix TEXT NOT NULL DEFAULT 'kp_at_';
ALTER TABLE clients ADD COLUMN refresh_token_prefix TEXT NOT NULL DEFAULT 'kp_rt_';
-- The secret replaced by `keyport client secret rotate`, valid until then.
ALTER TABLE clients ADD COLUMN previous_secret_hash TEXT;
ALTER TABLE clients ADD COLUMN previous_secret_expires_at BIGINT;

-- One-time codes, by SHA-256 of the code. `state` is issued, redeemed or
-- burned (a wrong PKCE verifier); a redeemed code names the session it
-- created, so a reuse can revoke what it issued.
CREATE TABLE authorization_codes (
    code_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    workspace_id TEXT,
    role TEXT,
    scope TEXT NOT NULL,
    resource TEXT,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT,
    nonce TEXT,
    auth_time BIGINT,
    ip TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    session_id TEXT
);
CREATE INDEX authorization_codes_expiry ON authorization_codes (expires_at);

-- Opaque access tokens (clients set to `opaque`), by SHA-256 of the token,
-- with the claims a JWT would carry.
CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT,
    client_id TEXT NOT NULL,
    claims TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX access_tokens_expiry ON access_tokens (expires_at);
CREATE INDEX access_tokens_session ON access_tokens (session_id);
