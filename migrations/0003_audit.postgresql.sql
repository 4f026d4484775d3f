-- The admin dashboard's audit log (app/admin/audit.py): one row per login,
-- logout and operator action, on any shard (the log is read from all of them
-- and merged). Ids sort by time, so newest first is ORDER BY id DESC; the
-- oldest rows beyond [admin] audit_entries are deleted periodically.
CREATE TABLE admin_audit (
    id TEXT COLLATE "C" PRIMARY KEY,
    at TEXT NOT NULL,
    role TEXT,
    session TEXT,
    client TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    result TEXT NOT NULL,
    instance TEXT NOT NULL
);
