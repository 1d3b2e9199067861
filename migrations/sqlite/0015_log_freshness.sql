-- Why each table's log was last brought up to date (listing, event,
-- on_demand, batch); NULL for refreshes recorded before it was kept.
ALTER TABLE table_catalog_state ADD COLUMN refreshed_by TEXT;

-- Each catalog's last completed reconcile pass: when its listing began and
-- the namespaces whose listing failed (a JSON array). A table of a listed
-- namespace that is not failing was confirmed unchanged as of `listed_at`,
-- without a write per table.
CREATE TABLE catalog_listings (
    catalog TEXT PRIMARY KEY,
    listed_at BIGINT NOT NULL,
    unlisted TEXT NOT NULL
);
