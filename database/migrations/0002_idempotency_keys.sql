-- 0002: stored responses of writes sent with an Idempotency-Key (see apiserver/idempotency.py).

CREATE TABLE IF NOT EXISTS idempotency_keys (
    -- Keys are scoped per caller: two users may send the same key. No foreign key: the row is a cache of a
    -- response, swept after IDEMPOTENCY_TTL, and must not take a lock on users on every keyed write.
    owner_id    bigint      NOT NULL,
    key         text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    -- sha256 of method, path and body: the same key with another request is refused (422).
    fingerprint bytea       NOT NULL CHECK (length(fingerprint) = 32),
    status      smallint    NOT NULL CHECK (status BETWEEN 100 AND 599),
    -- [[name, value], ...] of the headers that matter (Content-Type, ETag, Location).
    headers     jsonb       NOT NULL DEFAULT '[]',
    body        bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner_id, key)
);
-- The sweeper deletes the oldest rows in batches.
CREATE INDEX IF NOT EXISTS idempotency_keys_created_at_idx ON idempotency_keys (created_at);
