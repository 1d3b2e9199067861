-- The schemas a container allows its targets and views in: a JSON array
-- of names; NULL allows any but the system schemas.
ALTER TABLE containers ADD COLUMN schemas TEXT;

-- The hydration an outbox intent carries out, so that a hydration (and
-- its views) can show how its remap is going.
ALTER TABLE outbox ADD COLUMN hydration_id TEXT;
UPDATE outbox SET hydration_id = payload::json->>'hydration_id';
CREATE INDEX outbox_by_hydration ON outbox (hydration_id, id);
