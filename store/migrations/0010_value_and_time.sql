-- What an opportunity is worth and how long it sits: its value and forecast fields, why it
-- was won or lost, when it went idle; when each stage was left and how long it lasted; every
-- change of its details. Rows written before these columns have them empty ("not set").

ALTER TABLE opportunities
    ADD COLUMN amount               numeric CHECK (amount >= 0),
    ADD COLUMN currency             text CHECK (currency ~ '^[A-Z]{3}$'),
    ADD COLUMN won_amount           numeric CHECK (won_amount >= 0),
    ADD COLUMN expected_close_date  date,
    ADD COLUMN probability          integer CHECK (probability BETWEEN 0 AND 100),
    ADD COLUMN forecast_category    text
        CHECK (forecast_category IN ('pipeline', 'best_case', 'commit', 'closed', 'omitted')),
    ADD COLUMN include_in_forecast  boolean NOT NULL DEFAULT true,
    ADD COLUMN close_reason         text,
    ADD COLUMN idle_since           timestamptz;

CREATE INDEX opportunities_close_date ON opportunities (expected_close_date, opportunity_id)
    WHERE expected_close_date IS NOT NULL;
CREATE INDEX opportunities_amount ON opportunities (amount, opportunity_id)
    WHERE amount IS NOT NULL;
CREATE INDEX opportunities_idle ON opportunities (opportunity_id) WHERE idle_since IS NOT NULL;
-- The pipeline report groups the open opportunities of a process by stage and currency.
CREATE INDEX opportunities_pipeline ON opportunities (process_id, current_stage, currency)
    INCLUDE (amount, probability, stage_entered_at, idle_since) WHERE status = 'open';

-- When a stage was left and how long the opportunity stayed (a stay still running has none).
ALTER TABLE opportunity_history
    ADD COLUMN left_at           timestamptz,
    ADD COLUMN duration_seconds  bigint CHECK (duration_seconds >= 0);
-- The conversion report reads the stays of a process's stages in a period, with their seq
-- (which finds each one's next entry).
CREATE INDEX opportunity_history_entered ON opportunity_history (to_stage, at)
    INCLUDE (opportunity_id, seq, left_at, duration_seconds);

-- Every change of an opportunity's details (amount, currency, close date, probability,
-- forecast category, include in forecast, name): `details OPP --history`.
CREATE TABLE opportunity_detail_changes (
    opportunity_id  text NOT NULL,
    seq             integer NOT NULL,
    what            text NOT NULL,
    from_value      text,
    to_value        text,
    by              text,
    at              timestamptz NOT NULL,
    why             text,
    PRIMARY KEY (opportunity_id, seq)
);

-- Overdue work: the active activities whose due time has passed.
CREATE INDEX calendar_activities_overdue ON calendar_activities (starts_at, opportunity_id)
    WHERE status = 'active';

-- The count of overdue activities per opportunity, as of the moment it is read.
CREATE VIEW opportunity_overdue AS
    SELECT opportunity_id, count(*) AS overdue
    FROM calendar_activities
    WHERE status = 'active' AND starts_at < now()
    GROUP BY opportunity_id;
