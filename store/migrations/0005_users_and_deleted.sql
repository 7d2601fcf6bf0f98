-- Users and their roles (who an opportunity's team and calendar activities name), and the
-- third closed status of an opportunity, `deleted`.

CREATE TABLE users (
    user_id     text PRIMARY KEY,
    name        text NOT NULL,
    email       text,
    roles       text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz
);

ALTER TABLE opportunities DROP CONSTRAINT opportunities_status_check;
ALTER TABLE opportunities ADD CONSTRAINT opportunities_status_check
    CHECK (status IN ('open', 'won', 'lost', 'deleted'));
