-- The read model of the contract: reporting tools may read these tables.
-- Columns may be added later, never renamed.

CREATE TABLE contacts (
    contact_id   text PRIMARY KEY,
    first_name   text NOT NULL,
    last_name    text NOT NULL,
    email        text,
    street       text,
    city         text,
    postal_code  text,
    country      text,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Opportunity Setup: every applied change of a definition is a new version.
CREATE TABLE sales_processes (
    process_id   text NOT NULL,
    version      integer NOT NULL CHECK (version >= 1),
    name         text NOT NULL,
    is_default   boolean NOT NULL DEFAULT false,
    definition   jsonb NOT NULL,
    fingerprint  text NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (process_id, version)
);
CREATE INDEX sales_processes_default ON sales_processes (applied_at DESC) WHERE is_default;

CREATE TABLE opportunities (
    opportunity_id    text PRIMARY KEY,
    contact_id        text NOT NULL REFERENCES contacts (contact_id),
    process_id        text NOT NULL,
    process_version   integer NOT NULL,
    name              text,
    owner             text,
    status            text NOT NULL CHECK (status IN ('open', 'won', 'lost')),
    current_stage     text NOT NULL,
    stage_entered_at  timestamptz NOT NULL,
    closed_at         timestamptz,
    open_actions      integer NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    revision          bigint NOT NULL,
    FOREIGN KEY (process_id, process_version) REFERENCES sales_processes (process_id, version)
);
CREATE INDEX opportunities_stage ON opportunities (process_id, current_stage, opportunity_id);
CREATE INDEX opportunities_status ON opportunities (status, opportunity_id);
CREATE INDEX opportunities_owner ON opportunities (owner, opportunity_id);
CREATE INDEX opportunities_contact ON opportunities (contact_id);

-- One row per stage change; (opportunity_id, seq) makes a retried write a no-op.
CREATE TABLE opportunity_history (
    opportunity_id  text NOT NULL REFERENCES opportunities (opportunity_id),
    seq             integer NOT NULL,
    at              timestamptz NOT NULL,
    from_stage      text,
    to_stage        text NOT NULL,
    source          text NOT NULL
        CHECK (source IN ('start', 'manual', 'automatic', 'outcome', 'mass', 'reopened')),
    by              text,
    reason          text,
    canceled_activities  text[] NOT NULL DEFAULT '{}',
    created_activities   text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (opportunity_id, seq)
);

-- Side-effect tables reference the opportunity by id without a foreign key: the workflow may
-- create an activity on entry to its first stage before its projection row is written.
CREATE TABLE calendar_activities (
    activity_id     text PRIMARY KEY,
    opportunity_id  text NOT NULL,
    action_id       text NOT NULL,
    generation      integer NOT NULL,
    contact_id      text NOT NULL REFERENCES contacts (contact_id),
    kind            text NOT NULL,
    subject         text NOT NULL,
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    status          text NOT NULL CHECK (status IN ('active', 'done', 'canceled')),
    outcome         text,
    notes           text,
    track_outcome   boolean NOT NULL DEFAULT false,
    updated_at      timestamptz,
    created_on      timestamptz NOT NULL,
    UNIQUE (opportunity_id, action_id, generation)
);
CREATE INDEX calendar_activities_opportunity ON calendar_activities (opportunity_id);

CREATE TABLE letters (
    letter_id       text PRIMARY KEY,
    opportunity_id  text NOT NULL,
    action_id       text NOT NULL,
    generation      integer NOT NULL,
    contact_id      text NOT NULL REFERENCES contacts (contact_id),
    template        text NOT NULL,
    method          text NOT NULL CHECK (method IN ('email', 'document')),
    subject         text,
    body            text NOT NULL,
    message_id      text,
    recipient       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- NULL while an e-mail is being sent: a retry then sends again with the same Message-ID.
    sent_at         timestamptz,
    UNIQUE (opportunity_id, action_id, generation)
);

CREATE TABLE letter_templates (
    name        text PRIMARY KEY,
    body        text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE events (
    event_id   text PRIMARY KEY,
    name       text NOT NULL,
    starts_at  timestamptz NOT NULL
);

-- A contact is on an event's invitee list at most once.
CREATE TABLE event_invitees (
    event_id        text NOT NULL REFERENCES events (event_id),
    contact_id      text NOT NULL REFERENCES contacts (contact_id),
    opportunity_id  text,
    action_id       text,
    invited_at      timestamptz NOT NULL,
    PRIMARY KEY (event_id, contact_id)
);
