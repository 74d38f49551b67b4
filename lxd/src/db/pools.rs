//! Storage pool rows.

use lxd_api::ConfigMap;
use rusqlite::{OptionalExtension, params};

use super::{Db, from_json, to_json};
use crate::error::{ApiError, Result};

#[derive(Debug, Clone, Default)]
pub struct PoolRow {
    pub name: String,
    pub driver: String,
    pub description: String,
    pub config: ConfigMap,
    pub status: String,
}

impl Db {
    pub fn pools(&self) -> Result<Vec<PoolRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT name, driver, description, config, status FROM storage_pools ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(PoolRow {
                name: r.get(0)?,
                driver: r.get(1)?,
                description: r.get(2)?,
                config: from_json(&r.get::<_, String>(3)?),
                status: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn pool(&self, name: &str) -> Result<PoolRow> {
        let conn = self.conn();
        conn.query_row(
            "SELECT name, driver, description, config, status FROM storage_pools WHERE name = ?1",
            [name],
            |r| {
                Ok(PoolRow {
                    name: r.get(0)?,
                    driver: r.get(1)?,
                    description: r.get(2)?,
                    config: from_json(&r.get::<_, String>(3)?),
                    status: r.get(4)?,
                })
            },
        )
        .optional()?
        .ok_or_else(|| ApiError::not_found("Storage pool not found"))
    }

    pub fn pool_create(&self, p: &PoolRow) -> Result<()> {
        let conn = self.conn();
        match conn.execute(
            "INSERT INTO storage_pools (name, driver, description, config, status) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                p.name,
                p.driver,
                p.description,
                to_json(&p.config),
                p.status
            ],
        ) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(ApiError::conflict(format!(
                    "Storage pool \"{}\" already exists",
                    p.name
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn pool_update(&self, p: &PoolRow) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "UPDATE storage_pools SET description = ?2, config = ?3, status = ?4 WHERE name = ?1",
            params![p.name, p.description, to_json(&p.config), p.status],
        )?;
        Ok(())
    }

    pub fn pool_delete(&self, name: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute("DELETE FROM storage_pools WHERE name = ?1", [name])?;
        Ok(())
    }
}
