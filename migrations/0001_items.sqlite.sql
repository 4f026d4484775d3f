-- Items. Timestamps are ISO-8601 UTC text, tags a JSON array, so every
-- dialect stores and sorts them the same way.
CREATE TABLE items (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    price REAL NOT NULL,
    tags TEXT NOT NULL DEFAULT '[]',
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
