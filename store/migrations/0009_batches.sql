-- Every mass modification ever started, with a hash of its request: a batch id is used for
-- one request only, even after Temporal has forgotten the closed batch.

CREATE TABLE batches (
    batch_id      text PRIMARY KEY,
    request_hash  text NOT NULL CHECK (request_hash ~ '^[0-9a-f]{64}$'),
    created_at    timestamptz NOT NULL DEFAULT now()
);
