-- What the user enters for a calendar activity: who does it and where (notes already has a
-- column); an agent's calendar is read by assignee and due date. A letter may be e-mailed
-- and filed both.

ALTER TABLE calendar_activities ADD COLUMN assignee text, ADD COLUMN location text;
CREATE INDEX calendar_activities_assignee ON calendar_activities (assignee, starts_at);

ALTER TABLE letters DROP CONSTRAINT letters_method_check;
ALTER TABLE letters ADD CONSTRAINT letters_method_check
    CHECK (method IN ('email', 'document', 'both'));
