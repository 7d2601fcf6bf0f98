-- Entries beside the stages: a command that moves no stage (an owner change, an action's
-- edit or completion, a calendar activity's change) is noted in the current stage, source
-- `note`, with who sent it. A stay is every entry but a note.
ALTER TABLE opportunity_history DROP CONSTRAINT opportunity_history_source_check;
ALTER TABLE opportunity_history ADD CONSTRAINT opportunity_history_source_check
    CHECK (source IN ('start', 'manual', 'automatic', 'outcome', 'mass', 'reopened', 'external',
                      'note'));

-- The stage a stay was left for, written with `left_at`: the conversion report reads what
-- became of a stay from its own row.
ALTER TABLE opportunity_history ADD COLUMN left_for text;
DROP INDEX opportunity_history_entered;
CREATE INDEX opportunity_history_entered ON opportunity_history (to_stage, at)
    INCLUDE (opportunity_id, seq, left_at, duration_seconds, left_for)
    WHERE source <> 'note';
