-- Hydrations: copies of a table into a consumer data container. The id is
-- the id of the hydration's read lease. The whole hydration is kept as a
-- JSON document in `doc`; the columns beside it are what listings filter
-- and sort on.
CREATE TABLE hydrations (
    id TEXT PRIMARY KEY,
    table_name TEXT NOT NULL REFERENCES sluice_tables (name),
    container TEXT NOT NULL REFERENCES containers (name),
    state TEXT NOT NULL,
    doc TEXT NOT NULL
);

CREATE INDEX hydrations_by_table ON hydrations (table_name, id);
CREATE INDEX hydrations_by_container ON hydrations (container, id);
CREATE INDEX hydrations_by_state ON hydrations (state, id);
