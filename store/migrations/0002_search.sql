-- Searching opportunities (`opportunities search`, the mass modification's selection):
-- every filter has an index, so a stage or owner filter never scans the whole table.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX opportunities_name_trgm ON opportunities USING gin (lower(name) gin_trgm_ops);
CREATE INDEX opportunities_current_stage ON opportunities (current_stage, opportunity_id);
CREATE INDEX opportunities_stage_entered ON opportunities (stage_entered_at, opportunity_id);
CREATE INDEX opportunities_with_open_actions ON opportunities (opportunity_id)
    WHERE open_actions > 0;
