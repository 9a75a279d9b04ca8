-- Automatic signing-key rotation: a key is `next` (published ahead of use),
-- `active` (signs), `previous` (published until its tokens expire) or
-- `retired`. At most one next and one active key per use, so instances
-- racing to rotate cannot both succeed.
ALTER TABLE signing_keys ADD COLUMN activated_at BIGINT;
ALTER TABLE signing_keys ADD COLUMN deactivated_at BIGINT;
UPDATE signing_keys SET activated_at = created_at WHERE state IN ('active', 'previous');
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (key_use) WHERE state = 'active';
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (key_use) WHERE state = 'next';
