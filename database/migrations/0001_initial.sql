-- 0001: accounts, API keys, the resources the public API serves, and refresh-token families for the gateway.

CREATE TABLE users (
    id            bigserial   PRIMARY KEY,
    email         text        NOT NULL,
    password_hash text        NOT NULL,
    role          text        NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    tier          text        NOT NULL DEFAULT 'free' CHECK (tier IN ('free', 'pro', 'enterprise')),
    disabled      boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Emails are unique regardless of case: "Admin@Example.com" is the admin.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

CREATE TABLE api_keys (
    id           bigserial   PRIMARY KEY,
    user_id      bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text        NOT NULL,
    -- The public, non-secret start of the key: shown in listings and used to find the row.
    prefix       text        NOT NULL UNIQUE,
    key_hash     bytea       NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NULL,
    expires_at   timestamptz NULL,
    revoked_at   timestamptz NULL
);
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id);

CREATE TABLE resources (
    id         bigserial   PRIMARY KEY,
    name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    type       text        NOT NULL CHECK (length(type) BETWEEN 1 AND 50),
    data       jsonb       NOT NULL DEFAULT '{}',
    owner_id   bigint      NULL REFERENCES users (id) ON DELETE SET NULL,
    -- Optimistic concurrency: bumped on every update, compared by conditional writes (ETag / If-Match).
    version    integer     NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- Keyset pagination ("WHERE id > $cursor ORDER BY id LIMIT n") with the list filters.
CREATE INDEX resources_type_id_idx ON resources (type, id);
CREATE INDEX resources_owner_id_id_idx ON resources (owner_id, id);

CREATE TABLE refresh_tokens (
    id         bigserial   PRIMARY KEY,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- All tokens descending from one login; reuse of a spent token revokes the whole family.
    family_id  uuid        NOT NULL,
    token_hash bytea       NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz NULL,
    revoked_at timestamptz NULL
);
CREATE INDEX refresh_tokens_family_id_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_id_idx ON refresh_tokens (user_id);
