-- Keys that cannot collide: a calendar activity, a letter and an invitation are keyed by
-- (opportunity, action, generation). Display ids join those parts with '/', which ids
-- cannot contain, so one opportunity's ids never equal another's.

ALTER TABLE calendar_activities DROP CONSTRAINT calendar_activities_pkey;
ALTER TABLE calendar_activities
    DROP CONSTRAINT calendar_activities_opportunity_id_action_id_generation_key;
ALTER TABLE calendar_activities ADD PRIMARY KEY (opportunity_id, action_id, generation);
UPDATE calendar_activities
    SET activity_id = opportunity_id || '/' || action_id || '/' || generation;
ALTER TABLE calendar_activities ADD CONSTRAINT calendar_activities_activity_id_key
    UNIQUE (activity_id);
DROP INDEX calendar_activities_opportunity;

ALTER TABLE letters DROP CONSTRAINT letters_pkey;
ALTER TABLE letters DROP CONSTRAINT letters_opportunity_id_action_id_generation_key;
ALTER TABLE letters ADD PRIMARY KEY (opportunity_id, action_id, generation);
UPDATE letters SET letter_id = opportunity_id || '/' || action_id || '/' || generation;
ALTER TABLE letters ADD CONSTRAINT letters_letter_id_key UNIQUE (letter_id);

-- The generation of the event action that invited the contact (NULL: invited before it
-- was recorded), so that a retried invitation recognises its own earlier success.
ALTER TABLE event_invitees ADD COLUMN generation integer;
