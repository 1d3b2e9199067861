-- Glue folds the case of table names, so `salesX.t` and `salesx.t` are one
-- table there: two sluice tables of those names would be two locks on it.
CREATE UNIQUE INDEX sluice_tables_name_folded ON sluice_tables (lower(name));
