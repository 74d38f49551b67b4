//! The daemon's SQLite database under `$LXD_DIR/database/local.db`: one connection owned behind a
//! mutex, WAL mode, append-only migrations. Queries are short and local, so callers run them inline.
//! Config maps and device maps are stored as JSON text columns.

mod migrations;

pub mod certificates;
pub mod images;
pub mod instances;
pub mod networks;
pub mod pools;
pub mod profiles;
pub mod volumes;

use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use crate::error::{ApiError, Result};

#[derive(Debug)]
pub struct Db {
    conn: Mutex<Connection>,
}

impl Db {
    /// Open (creating if needed) and migrate the database at `path`.
    pub fn open(path: &Path) -> Result<Db> {
        let conn = Connection::open(path).map_err(|e| {
            ApiError::internal(format!("Failed to open database {}: {e}", path.display()))
        })?;
        Self::init(conn)
    }

    /// An in-memory database (unit tests).
    pub fn open_in_memory() -> Result<Db> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Db> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let db = Db {
            conn: Mutex::new(conn),
        };
        db.migrate()?;
        Ok(db)
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.conn();
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let version = usize::try_from(version).unwrap_or(0);
        if version > migrations::UPDATES.len() {
            return Err(ApiError::internal(format!(
                "Database schema version {version} is newer than this daemon ({})",
                migrations::UPDATES.len()
            )));
        }
        for (i, sql) in migrations::UPDATES.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    pub fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock poisons it; the connection itself is still consistent
        // (SQLite transactions roll back), so keep serving.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn server_config(&self) -> Result<BTreeMap<String, String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT key, value FROM config")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn server_config_get(&self, key: &str) -> Result<Option<String>> {
        let conn = self.conn();
        Ok(conn
            .query_row("SELECT value FROM config WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Replace the whole server config in one transaction.
    pub fn server_config_replace(&self, config: &BTreeMap<String, String>) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM config", [])?;
        for (k, v) in config {
            tx.execute(
                "INSERT INTO config (key, value) VALUES (?1, ?2)",
                params![k, v],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned + Default>(s: &str) -> T {
    serde_json::from_str(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_and_stores_config() {
        let db = Db::open_in_memory().unwrap();
        let mut c = BTreeMap::new();
        c.insert("images.auto_update_interval".to_string(), "0".to_string());
        db.server_config_replace(&c).unwrap();
        assert_eq!(db.server_config().unwrap(), c);
        assert_eq!(
            db.server_config_get("images.auto_update_interval")
                .unwrap()
                .as_deref(),
            Some("0")
        );
        // Re-running migrations is a no-op.
        db.migrate().unwrap();
    }
}
