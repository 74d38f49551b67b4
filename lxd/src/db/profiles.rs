//! Profile rows.

use lxd_api::{ConfigMap, DevicesMap};
use rusqlite::{OptionalExtension, params};

use super::{Db, from_json, to_json};
use crate::error::{ApiError, Result};

#[derive(Debug, Clone, Default)]
pub struct ProfileRow {
    pub name: String,
    pub description: String,
    pub config: ConfigMap,
    pub devices: DevicesMap,
}

impl Db {
    pub fn profile_names(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT name FROM profiles ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn profile_opt(&self, name: &str) -> Result<Option<ProfileRow>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT name, description, config, devices FROM profiles WHERE name = ?1",
                [name],
                |r| {
                    Ok(ProfileRow {
                        name: r.get(0)?,
                        description: r.get(1)?,
                        config: from_json(&r.get::<_, String>(2)?),
                        devices: from_json(&r.get::<_, String>(3)?),
                    })
                },
            )
            .optional()?)
    }

    pub fn profile(&self, name: &str) -> Result<ProfileRow> {
        self.profile_opt(name)?
            .ok_or_else(|| ApiError::not_found("Profile not found"))
    }

    pub fn profile_create(&self, p: &ProfileRow) -> Result<()> {
        let conn = self.conn();
        match conn.execute(
            "INSERT INTO profiles (name, description, config, devices) VALUES (?1, ?2, ?3, ?4)",
            params![
                p.name,
                p.description,
                to_json(&p.config),
                to_json(&p.devices)
            ],
        ) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(ApiError::conflict(format!(
                    "Profile \"{}\" already exists",
                    p.name
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn profile_update(&self, p: &ProfileRow) -> Result<()> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE profiles SET description = ?2, config = ?3, devices = ?4 WHERE name = ?1",
            params![
                p.name,
                p.description,
                to_json(&p.config),
                to_json(&p.devices)
            ],
        )?;
        if n == 0 {
            return Err(ApiError::not_found("Profile not found"));
        }
        Ok(())
    }

    /// Rename a profile and every instance's reference to it, in one transaction.
    pub fn profile_rename(&self, old: &str, new: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        match tx.execute(
            "UPDATE profiles SET name = ?2 WHERE name = ?1",
            params![old, new],
        ) {
            Ok(0) => return Err(ApiError::not_found("Profile not found")),
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(ApiError::conflict(format!(
                    "Profile \"{new}\" already exists"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        let rows: Vec<(i64, String)> = {
            let mut stmt = tx.prepare("SELECT id, profiles FROM instances")?;
            let it = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            it.collect::<std::result::Result<_, _>>()?
        };
        for (id, profiles) in rows {
            let mut list: Vec<String> = from_json(&profiles);
            if list.iter().any(|p| p == old) {
                for p in &mut list {
                    if p == old {
                        *p = new.to_string();
                    }
                }
                tx.execute(
                    "UPDATE instances SET profiles = ?2 WHERE id = ?1",
                    params![id, to_json(&list)],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn profile_delete(&self, name: &str) -> Result<()> {
        let conn = self.conn();
        let n = conn.execute("DELETE FROM profiles WHERE name = ?1", [name])?;
        if n == 0 {
            return Err(ApiError::not_found("Profile not found"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::instances::InstanceRow;

    #[test]
    fn rename_updates_instances() {
        let db = Db::open_in_memory().unwrap();
        db.profile_create(&ProfileRow {
            name: "p1".into(),
            ..Default::default()
        })
        .unwrap();
        db.instance_create(&InstanceRow {
            name: "c1".into(),
            profiles: vec!["p1".into()],
            created_at: "x".into(),
            last_used_at: "x".into(),
            ..Default::default()
        })
        .unwrap();
        db.profile_rename("p1", "p2").unwrap();
        assert_eq!(db.instance("c1").unwrap().profiles, vec!["p2"]);
        assert!(db.profile("p1").unwrap_err().is_not_found());
    }
}
