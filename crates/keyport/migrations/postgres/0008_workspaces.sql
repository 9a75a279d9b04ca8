-- API keys, invitations and the workspace-scoped audit trail. Only adds, so
-- instances on the previous release go on working during a rolling upgrade.

-- Long-lived keys for scripts (`kp_pat_…`), bound to one user and one
-- workspace; only the SHA-256 of the key is kept. `scope` is what the
-- creator's role allowed at creation; each use filters it again by the
-- current role.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users(id),
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX api_keys_user ON api_keys (user_id, created_at);

-- Invitations by link, bound to one email address; the link's token is kept
-- as SHA-256 and works once.
CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    invited_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    accepted_at BIGINT,
    accepted_by TEXT
);
CREATE INDEX invitations_workspace ON invitations (workspace_id, created_at);

-- Which workspace an event concerns and what it acted on (a member, a
-- session, a key), so a workspace's admins see their own trail. Audit ids
-- start with the time, so (workspace_id, id) pages in time order.
ALTER TABLE audit_events ADD COLUMN workspace_id TEXT;
ALTER TABLE audit_events ADD COLUMN target TEXT;
CREATE INDEX audit_events_workspace ON audit_events (workspace_id, id);

CREATE INDEX sessions_workspace ON sessions (workspace_id, created_at);
CREATE INDEX memberships_user ON memberships (user_id);
