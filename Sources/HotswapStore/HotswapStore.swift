// SQLite timing store.
