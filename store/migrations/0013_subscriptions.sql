-- Subscriptions to the outbox: a URL (signed webhooks) or a Temporal workflow (the signal
-- `opportunity_event`). The secret is sealed with OPPORTUNITIES_SECRETS_KEY (AES-GCM, the
-- key id beside it): the database never holds it in clear.

CREATE TABLE subscriptions (
    subscription_id   text PRIMARY KEY,
    url               text,
    workflow_id       text,
    events            text[] NOT NULL,
    process_id        text,
    secret            bytea,
    secret_key_id     text,
    status            text NOT NULL DEFAULT 'active'
                      CHECK (status IN ('active', 'paused', 'deleted')),
    -- Where the subscription stands in the outbox: the (xid, position) of the last row it took.
    cursor_xid        xid8 NOT NULL DEFAULT '0',
    cursor_position   bigint NOT NULL DEFAULT 0,
    delivered         bigint NOT NULL DEFAULT 0,
    last_delivered_at timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    created_by        text,
    CHECK ((url IS NULL) <> (workflow_id IS NULL)),
    CHECK (url IS NULL OR secret IS NOT NULL)
);

-- The events a subscription has taken from the outbox and not yet delivered: tried again
-- from `next_try_at`, or parked (held, with its opportunity's later events, until an
-- operator redelivers or skips it).
CREATE TABLE subscription_deliveries (
    subscription_id  text NOT NULL REFERENCES subscriptions ON DELETE CASCADE,
    opportunity_id   text NOT NULL,
    seq              integer NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    first_failed_at  timestamptz,
    next_try_at      timestamptz NOT NULL DEFAULT '-infinity',
    last_error       text,
    parked_at        timestamptz,
    PRIMARY KEY (subscription_id, opportunity_id, seq)
);
CREATE INDEX subscription_deliveries_event ON subscription_deliveries (opportunity_id, seq);
