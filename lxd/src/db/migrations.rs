//! The schema, as an append-only list of numbered updates (`PRAGMA user_version` counts the ones
//! applied). Never edit an entry once released: append a new one.

pub const UPDATES: &[&str] = &[
    // 1: the first schema.
    r#"
CREATE TABLE config (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE profiles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    config TEXT NOT NULL DEFAULT '{}',
    devices TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE storage_pools (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    driver TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    config TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'Created'
);
CREATE TABLE instances (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    architecture TEXT NOT NULL DEFAULT 'x86_64',
    type TEXT NOT NULL DEFAULT 'container',
    ephemeral INTEGER NOT NULL DEFAULT 0,
    stateful INTEGER NOT NULL DEFAULT 0,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    last_used_at TEXT NOT NULL,
    config TEXT NOT NULL DEFAULT '{}',
    devices TEXT NOT NULL DEFAULT '{}',
    profiles TEXT NOT NULL DEFAULT '[]',
    pool TEXT NOT NULL DEFAULT ''
);
CREATE TABLE snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    architecture TEXT NOT NULL DEFAULT 'x86_64',
    stateful INTEGER NOT NULL DEFAULT 0,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
    config TEXT NOT NULL DEFAULT '{}',
    devices TEXT NOT NULL DEFAULT '{}',
    profiles TEXT NOT NULL DEFAULT '[]',
    ephemeral INTEGER NOT NULL DEFAULT 0,
    UNIQUE (instance_id, name)
);
CREATE TABLE images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL UNIQUE,
    filename TEXT NOT NULL DEFAULT '',
    size INTEGER NOT NULL DEFAULT 0,
    public INTEGER NOT NULL DEFAULT 0,
    architecture TEXT NOT NULL DEFAULT 'x86_64',
    type TEXT NOT NULL DEFAULT 'container',
    created_at TEXT NOT NULL,
    uploaded_at TEXT NOT NULL,
    last_used_at TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
    expires_at TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
    cached INTEGER NOT NULL DEFAULT 0,
    auto_update INTEGER NOT NULL DEFAULT 0,
    properties TEXT NOT NULL DEFAULT '{}',
    profiles TEXT NOT NULL DEFAULT '["default"]',
    source TEXT NOT NULL DEFAULT 'null',
    split INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE image_aliases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    type TEXT NOT NULL DEFAULT 'container'
);
CREATE TABLE networks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL DEFAULT 'bridge',
    description TEXT NOT NULL DEFAULT '',
    config TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE certificates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL DEFAULT 'client',
    name TEXT NOT NULL DEFAULT '',
    certificate TEXT NOT NULL,
    restricted INTEGER NOT NULL DEFAULT 0
);
"#,
    // 2: network forwards (listen address + ports as JSON), owned by their network.
    r#"
CREATE TABLE network_forwards (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    network_id INTEGER NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    listen_address TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    config TEXT NOT NULL DEFAULT '{}',
    ports TEXT NOT NULL DEFAULT '[]',
    UNIQUE (network_id, listen_address)
);
"#,
    // 3: custom storage volumes and their snapshots (instance volumes live with their instance).
    r#"
CREATE TABLE storage_volumes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pool TEXT NOT NULL,
    type TEXT NOT NULL DEFAULT 'custom',
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    config TEXT NOT NULL DEFAULT '{}',
    content_type TEXT NOT NULL DEFAULT 'filesystem',
    created_at TEXT NOT NULL,
    UNIQUE (pool, type, name)
);
CREATE TABLE storage_volume_snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    volume_id INTEGER NOT NULL REFERENCES storage_volumes(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    config TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
    UNIQUE (volume_id, name)
);
"#,
];
