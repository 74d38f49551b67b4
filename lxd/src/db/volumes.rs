//! Custom storage volume rows and their snapshot rows. Instance volumes are not stored here: they
//! belong to their instance row.

use lxd_api::ConfigMap;
use rusqlite::{OptionalExtension, params};

use super::{Db, from_json, to_json};
use crate::error::{ApiError, Result};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeRow {
    pub id: i64,
    pub pool: String,
    /// `custom`.
    pub kind: String,
    pub name: String,
    pub description: String,
    pub config: ConfigMap,
    pub content_type: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeSnapshotRow {
    pub id: i64,
    pub volume_id: i64,
    pub name: String,
    pub description: String,
    pub config: ConfigMap,
    pub created_at: String,
    pub expires_at: String,
}

const VOLUME_COLS: &str = "id, pool, type, name, description, config, content_type, created_at";
const SNAPSHOT_COLS: &str = "id, volume_id, name, description, config, created_at, expires_at";

fn volume_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VolumeRow> {
    Ok(VolumeRow {
        id: r.get(0)?,
        pool: r.get(1)?,
        kind: r.get(2)?,
        name: r.get(3)?,
        description: r.get(4)?,
        config: from_json(&r.get::<_, String>(5)?),
        content_type: r.get(6)?,
        created_at: r.get(7)?,
    })
}

fn snapshot_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VolumeSnapshotRow> {
    Ok(VolumeSnapshotRow {
        id: r.get(0)?,
        volume_id: r.get(1)?,
        name: r.get(2)?,
        description: r.get(3)?,
        config: from_json(&r.get::<_, String>(4)?),
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
    })
}

fn conflict_on_constraint(e: rusqlite::Error, msg: String) -> ApiError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            ApiError::conflict(msg)
        }
        e => e.into(),
    }
}

impl Db {
    /// Volumes of a pool (every pool when `pool` is None), by name.
    pub fn volumes(&self, pool: Option<&str>) -> Result<Vec<VolumeRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {VOLUME_COLS} FROM storage_volumes WHERE ?1 IS NULL OR pool = ?1 ORDER BY name"
        ))?;
        let rows = stmt.query_map([pool], volume_from_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn volume_opt(&self, pool: &str, kind: &str, name: &str) -> Result<Option<VolumeRow>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!(
                    "SELECT {VOLUME_COLS} FROM storage_volumes \
                     WHERE pool = ?1 AND type = ?2 AND name = ?3"
                ),
                params![pool, kind, name],
                volume_from_row,
            )
            .optional()?)
    }

    pub fn volume(&self, pool: &str, kind: &str, name: &str) -> Result<VolumeRow> {
        self.volume_opt(pool, kind, name)?
            .ok_or_else(|| ApiError::not_found("Storage volume not found"))
    }

    pub fn volume_create(&self, v: &VolumeRow) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO storage_volumes \
             (pool, type, name, description, config, content_type, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                v.pool,
                v.kind,
                v.name,
                v.description,
                to_json(&v.config),
                v.content_type,
                v.created_at
            ],
        )
        .map_err(|e| {
            conflict_on_constraint(e, format!("Storage volume \"{}\" already exists", v.name))
        })?;
        Ok(conn.last_insert_rowid())
    }

    pub fn volume_update(&self, v: &VolumeRow) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "UPDATE storage_volumes SET description = ?2, config = ?3 WHERE id = ?1",
            params![v.id, v.description, to_json(&v.config)],
        )?;
        Ok(())
    }

    pub fn volume_rename(&self, id: i64, name: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "UPDATE storage_volumes SET name = ?2 WHERE id = ?1",
            params![id, name],
        )
        .map_err(|e| {
            conflict_on_constraint(e, format!("Storage volume \"{name}\" already exists"))
        })?;
        Ok(())
    }

    /// Deletes the volume and (cascade) its snapshot rows.
    pub fn volume_delete(&self, id: i64) -> Result<()> {
        let conn = self.conn();
        conn.execute("DELETE FROM storage_volumes WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Snapshots of a volume, oldest first.
    pub fn volume_snapshots(&self, volume_id: i64) -> Result<Vec<VolumeSnapshotRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SNAPSHOT_COLS} FROM storage_volume_snapshots WHERE volume_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([volume_id], snapshot_from_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn volume_snapshot(&self, volume_id: i64, name: &str) -> Result<VolumeSnapshotRow> {
        let conn = self.conn();
        conn.query_row(
            &format!(
                "SELECT {SNAPSHOT_COLS} FROM storage_volume_snapshots \
                 WHERE volume_id = ?1 AND name = ?2"
            ),
            params![volume_id, name],
            snapshot_from_row,
        )
        .optional()?
        .ok_or_else(|| ApiError::not_found("Storage volume snapshot not found"))
    }

    pub fn volume_snapshot_create(&self, s: &VolumeSnapshotRow) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO storage_volume_snapshots \
             (volume_id, name, description, config, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                s.volume_id,
                s.name,
                s.description,
                to_json(&s.config),
                s.created_at,
                s.expires_at
            ],
        )
        .map_err(|e| {
            conflict_on_constraint(e, format!("Snapshot \"{}\" already exists", s.name))
        })?;
        Ok(conn.last_insert_rowid())
    }

    pub fn volume_snapshot_update(&self, s: &VolumeSnapshotRow) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "UPDATE storage_volume_snapshots SET description = ?2, expires_at = ?3, name = ?4 \
             WHERE id = ?1",
            params![s.id, s.description, s.expires_at, s.name],
        )
        .map_err(|e| {
            conflict_on_constraint(e, format!("Snapshot \"{}\" already exists", s.name))
        })?;
        Ok(())
    }

    pub fn volume_snapshot_delete(&self, volume_id: i64, name: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "DELETE FROM storage_volume_snapshots WHERE volume_id = ?1 AND name = ?2",
            params![volume_id, name],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_and_snapshots() {
        let db = Db::open_in_memory().unwrap();
        let mut v = VolumeRow {
            pool: "p".into(),
            kind: "custom".into(),
            name: "v1".into(),
            content_type: "filesystem".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            ..Default::default()
        };
        v.id = db.volume_create(&v).unwrap();
        assert!(db.volume_create(&v).unwrap_err().status == axum::http::StatusCode::CONFLICT);
        assert_eq!(db.volume("p", "custom", "v1").unwrap(), v);
        assert!(db.volume("q", "custom", "v1").unwrap_err().is_not_found());
        let s = VolumeSnapshotRow {
            volume_id: v.id,
            name: "s1".into(),
            created_at: v.created_at.clone(),
            expires_at: lxd_api::ZERO_TIME.into(),
            ..Default::default()
        };
        db.volume_snapshot_create(&s).unwrap();
        assert_eq!(db.volume_snapshots(v.id).unwrap().len(), 1);
        db.volume_rename(v.id, "v2").unwrap();
        assert_eq!(db.volumes(Some("p")).unwrap()[0].name, "v2");
        db.volume_delete(v.id).unwrap();
        assert!(db.volume_snapshots(v.id).unwrap().is_empty());
        assert!(db.volumes(None).unwrap().is_empty());
    }
}
