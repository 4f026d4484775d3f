-- Items. COLLATE "C" sorts ids bytewise, as SQLite does, so pages merged
-- across shards of both dialects come out in one order.
CREATE TABLE items (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL,
    price DOUBLE PRECISION NOT NULL,
    tags TEXT NOT NULL DEFAULT '[]',
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
