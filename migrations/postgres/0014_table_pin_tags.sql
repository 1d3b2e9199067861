-- A table may turn pin tags on or off for itself (`pin_tags`); NULL, as
-- every existing table has it, follows its catalog's setting.
ALTER TABLE sluice_tables ADD COLUMN pin_tags BOOLEAN;
