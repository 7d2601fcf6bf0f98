-- Who may do what: signing keys, users' roles over time, permission sets and the
-- authorization mode, each with the time it takes effect (registration or recording plus the
-- workers' reload interval), so that a command is judged the same live and on replay. Keys
-- are never deleted: a revoked key stays, with the time its revocation took effect.

CREATE TABLE signing_keys (
    kid            text PRIMARY KEY,
    user_id        text NOT NULL,
    acts_for       text[],            -- a service key: the users it may sign for ('*': any)
    public_jwk     jsonb NOT NULL,
    registered_at  timestamptz NOT NULL DEFAULT now(),
    registered_by  text,
    usable_from    timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_from   timestamptz,
    revoked_by     text
);

CREATE TABLE role_grants (
    user_id         text NOT NULL,
    roles           text[] NOT NULL,
    effective_from  timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, effective_from)
);
-- Today's roles have always been in effect.
INSERT INTO role_grants (user_id, roles, effective_from)
    SELECT user_id, roles, '-infinity' FROM users;

CREATE TABLE permission_sets (
    version         serial PRIMARY KEY,
    rules           jsonb NOT NULL,
    applied_at      timestamptz NOT NULL DEFAULT now(),
    applied_by      text,
    effective_from  timestamptz NOT NULL
);

CREATE TABLE authorization_modes (
    mode            text NOT NULL CHECK (mode IN ('off', 'record', 'enforce')),
    effective_from  timestamptz PRIMARY KEY,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);

-- The audit trail: who sent the command that made each history entry, as its token proves
-- (verified) or as it claims (unverified, while authorization records unsigned commands).
ALTER TABLE opportunity_history
    ADD COLUMN actor text,
    ADD COLUMN actor_service text,
    ADD COLUMN verified boolean;

-- Every event of every opportunity, kept for good (the outbox's rows go after their
-- retention): who changed what, when, and whether a signature proves who (data's `actor`,
-- `actor_service`, `verified`). Written with the outbox, in the same statement.
CREATE TABLE opportunity_audit (
    opportunity_id  text NOT NULL,
    seq             integer NOT NULL,
    type            text NOT NULL,
    at              timestamptz NOT NULL,
    data            jsonb NOT NULL,
    PRIMARY KEY (opportunity_id, seq)
);
INSERT INTO opportunity_audit (opportunity_id, seq, type, at, data)
    SELECT opportunity_id, seq, type, at, data FROM opportunity_events;
