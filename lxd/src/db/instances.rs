//! Instance and snapshot rows.

use lxd_api::{ConfigMap, DevicesMap};
use rusqlite::{OptionalExtension, Row, params};

use super::{Db, from_json, to_json};
use crate::error::{ApiError, Result};

#[derive(Debug, Clone, Default)]
pub struct InstanceRow {
    pub id: i64,
    pub name: String,
    pub architecture: String,
    pub kind: String,
    pub ephemeral: bool,
    pub stateful: bool,
    pub description: String,
    pub created_at: String,
    pub last_used_at: String,
    pub config: ConfigMap,
    pub devices: DevicesMap,
    pub profiles: Vec<String>,
    pub pool: String,
}

#[derive(Debug, Clone, Default)]
pub struct SnapshotRow {
    pub id: i64,
    pub instance_id: i64,
    pub name: String,
    pub architecture: String,
    pub stateful: bool,
    pub description: String,
    pub created_at: String,
    pub expires_at: String,
    pub config: ConfigMap,
    pub devices: DevicesMap,
    pub profiles: Vec<String>,
    pub ephemeral: bool,
}

const INSTANCE_COLS: &str = "id, name, architecture, type, ephemeral, stateful, description, \
     created_at, last_used_at, config, devices, profiles, pool";

fn instance_from_row(r: &Row<'_>) -> rusqlite::Result<InstanceRow> {
    Ok(InstanceRow {
        id: r.get(0)?,
        name: r.get(1)?,
        architecture: r.get(2)?,
        kind: r.get(3)?,
        ephemeral: r.get(4)?,
        stateful: r.get(5)?,
        description: r.get(6)?,
        created_at: r.get(7)?,
        last_used_at: r.get(8)?,
        config: from_json(&r.get::<_, String>(9)?),
        devices: from_json(&r.get::<_, String>(10)?),
        profiles: from_json(&r.get::<_, String>(11)?),
        pool: r.get(12)?,
    })
}

const SNAPSHOT_COLS: &str = "id, instance_id, name, architecture, stateful, description, \
     created_at, expires_at, config, devices, profiles, ephemeral";

fn snapshot_from_row(r: &Row<'_>) -> rusqlite::Result<SnapshotRow> {
    Ok(SnapshotRow {
        id: r.get(0)?,
        instance_id: r.get(1)?,
        name: r.get(2)?,
        architecture: r.get(3)?,
        stateful: r.get(4)?,
        description: r.get(5)?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
        config: from_json(&r.get::<_, String>(8)?),
        devices: from_json(&r.get::<_, String>(9)?),
        profiles: from_json(&r.get::<_, String>(10)?),
        ephemeral: r.get(11)?,
    })
}

fn not_found() -> ApiError {
    ApiError::not_found("Instance not found")
}

impl Db {
    pub fn instance_names(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT name FROM instances ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn instances(&self) -> Result<Vec<InstanceRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {INSTANCE_COLS} FROM instances ORDER BY name"
        ))?;
        let rows = stmt.query_map([], instance_from_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn instance(&self, name: &str) -> Result<InstanceRow> {
        self.instance_opt(name)?.ok_or_else(not_found)
    }

    pub fn instance_opt(&self, name: &str) -> Result<Option<InstanceRow>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {INSTANCE_COLS} FROM instances WHERE name = ?1"),
                [name],
                instance_from_row,
            )
            .optional()?)
    }

    pub fn instance_exists(&self, name: &str) -> Result<bool> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT 1 FROM instances WHERE name = ?1",
                [name],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    pub fn instance_create(&self, row: &InstanceRow) -> Result<i64> {
        let conn = self.conn();
        let res = conn.execute(
            "INSERT INTO instances (name, architecture, type, ephemeral, stateful, description, \
             created_at, last_used_at, config, devices, profiles, pool) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                row.name,
                row.architecture,
                row.kind,
                row.ephemeral,
                row.stateful,
                row.description,
                row.created_at,
                row.last_used_at,
                to_json(&row.config),
                to_json(&row.devices),
                to_json(&row.profiles),
                row.pool
            ],
        );
        match res {
            Ok(_) => Ok(conn.last_insert_rowid()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(ApiError::conflict(format!(
                    "Instance \"{}\" already exists",
                    row.name
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Write back the writable fields of an instance.
    pub fn instance_update(&self, row: &InstanceRow) -> Result<()> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE instances SET architecture = ?2, ephemeral = ?3, stateful = ?4, \
             description = ?5, config = ?6, devices = ?7, profiles = ?8, last_used_at = ?9 \
             WHERE name = ?1",
            params![
                row.name,
                row.architecture,
                row.ephemeral,
                row.stateful,
                row.description,
                to_json(&row.config),
                to_json(&row.devices),
                to_json(&row.profiles),
                row.last_used_at
            ],
        )?;
        if n == 0 {
            return Err(not_found());
        }
        Ok(())
    }

    /// Set (or with `None` remove) one config key, leaving the rest untouched.
    pub fn instance_set_config_key(
        &self,
        name: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<()> {
        let mut row = self.instance(name)?;
        match value {
            Some(v) => row.config.insert(key.to_string(), v.to_string()),
            None => row.config.remove(key),
        };
        self.instance_update(&row)
    }

    pub fn instance_touch(&self, name: &str, at: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "UPDATE instances SET last_used_at = ?2 WHERE name = ?1",
            params![name, at],
        )?;
        Ok(())
    }

    pub fn instance_rename(&self, old: &str, new: &str) -> Result<()> {
        let conn = self.conn();
        match conn.execute(
            "UPDATE instances SET name = ?2 WHERE name = ?1",
            params![old, new],
        ) {
            Ok(0) => Err(not_found()),
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(ApiError::conflict(format!("Name \"{new}\" already in use")))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn instance_delete(&self, name: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute("DELETE FROM instances WHERE name = ?1", [name])?;
        Ok(())
    }

    /// Names of instances using a profile.
    pub fn instances_using_profile(&self, profile: &str) -> Result<Vec<String>> {
        Ok(self
            .instances()?
            .into_iter()
            .filter(|i| i.profiles.iter().any(|p| p == profile))
            .map(|i| i.name)
            .collect())
    }

    pub fn snapshots(&self, instance: &str) -> Result<Vec<SnapshotRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SNAPSHOT_COLS} FROM snapshots WHERE instance_id = \
             (SELECT id FROM instances WHERE name = ?1) ORDER BY id"
        ))?;
        let rows = stmt.query_map([instance], snapshot_from_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn snapshot(&self, instance: &str, snap: &str) -> Result<SnapshotRow> {
        let conn = self.conn();
        conn.query_row(
            &format!(
                "SELECT {SNAPSHOT_COLS} FROM snapshots WHERE instance_id = \
                 (SELECT id FROM instances WHERE name = ?1) AND name = ?2"
            ),
            params![instance, snap],
            snapshot_from_row,
        )
        .optional()?
        .ok_or_else(|| ApiError::not_found("Snapshot not found"))
    }

    pub fn snapshot_create(&self, row: &SnapshotRow) -> Result<i64> {
        let conn = self.conn();
        match conn.execute(
            "INSERT INTO snapshots (instance_id, name, architecture, stateful, description, \
             created_at, expires_at, config, devices, profiles, ephemeral) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                row.instance_id,
                row.name,
                row.architecture,
                row.stateful,
                row.description,
                row.created_at,
                row.expires_at,
                to_json(&row.config),
                to_json(&row.devices),
                to_json(&row.profiles),
                row.ephemeral
            ],
        ) {
            Ok(_) => Ok(conn.last_insert_rowid()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(ApiError::conflict(format!(
                    "Snapshot \"{}\" already exists",
                    row.name
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn snapshot_update(&self, row: &SnapshotRow) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "UPDATE snapshots SET expires_at = ?2, description = ?3 WHERE id = ?1",
            params![row.id, row.expires_at, row.description],
        )?;
        Ok(())
    }

    pub fn snapshot_rename(&self, instance: &str, old: &str, new: &str) -> Result<()> {
        let conn = self.conn();
        match conn.execute(
            "UPDATE snapshots SET name = ?3 WHERE instance_id = \
             (SELECT id FROM instances WHERE name = ?1) AND name = ?2",
            params![instance, old, new],
        ) {
            Ok(0) => Err(ApiError::not_found("Snapshot not found")),
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(ApiError::conflict(format!(
                    "Snapshot \"{new}\" already exists"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn snapshot_delete(&self, instance: &str, snap: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "DELETE FROM snapshots WHERE instance_id = \
             (SELECT id FROM instances WHERE name = ?1) AND name = ?2",
            params![instance, snap],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str) -> InstanceRow {
        InstanceRow {
            name: name.into(),
            architecture: "x86_64".into(),
            kind: "container".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            last_used_at: "0001-01-01T00:00:00Z".into(),
            profiles: vec!["default".into()],
            pool: "default".into(),
            ..Default::default()
        }
    }

    #[test]
    fn create_get_rename_delete() {
        let db = Db::open_in_memory().unwrap();
        let id = db.instance_create(&row("c1")).unwrap();
        assert!(id > 0);
        assert_eq!(
            db.instance_create(&row("c1")).unwrap_err().status,
            axum::http::StatusCode::CONFLICT
        );
        db.instance_set_config_key("c1", "boot.autostart", Some("true"))
            .unwrap();
        assert_eq!(db.instance("c1").unwrap().config["boot.autostart"], "true");
        db.instance_create(&row("c2")).unwrap();
        assert_eq!(
            db.instance_rename("c1", "c2").unwrap_err().status,
            axum::http::StatusCode::CONFLICT
        );
        db.instance_rename("c1", "c3").unwrap();
        assert!(db.instance("c1").unwrap_err().is_not_found());
        assert_eq!(db.instance_names().unwrap(), vec!["c2", "c3"]);
        assert_eq!(db.instances_using_profile("default").unwrap().len(), 2);
        db.instance_delete("c3").unwrap();
        assert_eq!(db.instance_names().unwrap(), vec!["c2"]);
    }

    #[test]
    fn snapshots_follow_their_instance() {
        let db = Db::open_in_memory().unwrap();
        let id = db.instance_create(&row("c1")).unwrap();
        let s = SnapshotRow {
            instance_id: id,
            name: "snap0".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            expires_at: "0001-01-01T00:00:00Z".into(),
            ..Default::default()
        };
        db.snapshot_create(&s).unwrap();
        assert!(db.snapshot_create(&s).is_err());
        db.snapshot_rename("c1", "snap0", "s1").unwrap();
        assert_eq!(db.snapshots("c1").unwrap()[0].name, "s1");
        db.instance_rename("c1", "c9").unwrap();
        assert_eq!(db.snapshot("c9", "s1").unwrap().name, "s1");
        db.instance_delete("c9").unwrap();
        assert!(db.snapshots("c9").unwrap().is_empty());
    }
}
