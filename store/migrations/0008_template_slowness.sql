-- A letter template whose renders keep running out of time is marked slow
-- (`activities.letters`): its timeouts in a row, the last one, and since when it is slow.
ALTER TABLE letter_templates
    ADD COLUMN timeouts integer NOT NULL DEFAULT 0,
    ADD COLUMN last_timeout_at timestamptz,
    ADD COLUMN slow_since timestamptz;
