-- The outbox: every event of every opportunity, written by the projection in the same
-- transaction as what it describes. `xid` is the writing transaction's id: a reader that
-- takes only rows of transactions older than the oldest still running (the fence) and moves
-- its cursor by (xid, position) never skips a row committed late.

CREATE TABLE opportunity_events (
    opportunity_id  text NOT NULL,
    seq             integer NOT NULL,
    event_id        text NOT NULL UNIQUE,
    type            text NOT NULL,
    at              timestamptz NOT NULL,
    data            jsonb NOT NULL,
    position        bigserial NOT NULL,
    xid             xid8 NOT NULL DEFAULT pg_current_xact_id(),
    written_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (opportunity_id, seq)
);
CREATE INDEX opportunity_events_order ON opportunity_events (xid, position);
CREATE INDEX opportunity_events_type ON opportunity_events (type, at);

-- A status from another system (a case or policy and its status) moves an opportunity as its
-- process maps it: history source `external`.
ALTER TABLE opportunity_history DROP CONSTRAINT opportunity_history_source_check;
ALTER TABLE opportunity_history ADD CONSTRAINT opportunity_history_source_check
    CHECK (source IN ('start', 'manual', 'automatic', 'outcome', 'mass', 'reopened', 'external'));
