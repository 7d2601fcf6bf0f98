-- What the guards of every input need in the read model: every remark (the workflow keeps the
-- newest few), the parts of a projection the database refused (dead letters), the run that
-- wrote an opportunity's row (an opportunity id is used once), how many of its actions failed,
-- and calendar times within the business range.

CREATE TABLE remarks (
    opportunity_id  text NOT NULL,
    seq             integer NOT NULL,
    at              timestamptz NOT NULL,
    by              text,
    text            text NOT NULL,
    PRIMARY KEY (opportunity_id, seq)
);

CREATE TABLE dead_letters (
    opportunity_id  text NOT NULL,
    revision        integer NOT NULL,
    what            text NOT NULL,
    why             text NOT NULL,
    payload         jsonb NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (opportunity_id, revision, what)
);

ALTER TABLE opportunities ADD COLUMN run_id text;
ALTER TABLE opportunities ADD COLUMN failed_actions integer NOT NULL DEFAULT 0;
CREATE INDEX opportunities_failed ON opportunities (opportunity_id) WHERE failed_actions > 0;

-- Rows written before the range was checked stay readable; new ones must lie inside it.
ALTER TABLE calendar_activities ADD CONSTRAINT calendar_activities_in_business_range
    CHECK (starts_at >= '1900-01-01T00:00:00Z' AND ends_at < '2200-01-01T00:00:00Z') NOT VALID;
