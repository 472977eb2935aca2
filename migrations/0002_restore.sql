-- Restores: a sync of kind 'restore' makes the active entries what they were
-- after an earlier sync, without fetching content.
ALTER TABLE project_syncs
    ADD COLUMN restore_of_sync_id uuid REFERENCES project_syncs (id);

ALTER TABLE project_syncs
    ADD CONSTRAINT project_syncs_restore_has_target
    CHECK ((kind = 'restore') = (restore_of_sync_id IS NOT NULL));

