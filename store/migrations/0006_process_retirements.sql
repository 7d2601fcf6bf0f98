-- A retired process takes no new opportunities; the running ones go on.

CREATE TABLE process_retirements (
    process_id  text PRIMARY KEY,
    retired_at  timestamptz NOT NULL DEFAULT now()
);
