-- Indexes for housekeeping, which prunes by expiry and age in small batches.
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);
CREATE INDEX sessions_last_used ON sessions (last_used_at);
CREATE INDEX sessions_created ON sessions (created_at);
CREATE INDEX sessions_revoked ON sessions (revoked_at);
CREATE INDEX revoked_access_tokens_expires ON revoked_access_tokens (expires_at);
CREATE INDEX rate_counters_window ON rate_counters (window_start);
CREATE INDEX browser_sessions_expires ON browser_sessions (expires_at);
CREATE INDEX sign_in_failures_last ON sign_in_failures (last_failure_at);
