//! Image and image alias rows.

use lxd_api::ConfigMap;
use lxd_api::image::ImageSource;
use rusqlite::{OptionalExtension, Row, params};

use super::{Db, from_json, to_json};
use crate::error::{ApiError, Result};

#[derive(Debug, Clone, Default)]
pub struct ImageRow {
    pub fingerprint: String,
    pub filename: String,
    pub size: i64,
    pub public: bool,
    pub architecture: String,
    pub kind: String,
    pub created_at: String,
    pub uploaded_at: String,
    pub last_used_at: String,
    pub expires_at: String,
    pub cached: bool,
    pub auto_update: bool,
    pub properties: ConfigMap,
    pub profiles: Vec<String>,
    pub source: Option<ImageSource>,
    /// Stored as metadata tarball + `<fp>.rootfs` rather than one unified tarball.
    pub split: bool,
}

#[derive(Debug, Clone, Default)]
pub struct AliasRow {
    pub name: String,
    pub fingerprint: String,
    pub description: String,
    pub kind: String,
}

const IMAGE_COLS: &str = "fingerprint, filename, size, public, architecture, type, created_at, \
     uploaded_at, last_used_at, expires_at, cached, auto_update, properties, profiles, source, split";

fn image_from_row(r: &Row<'_>) -> rusqlite::Result<ImageRow> {
    Ok(ImageRow {
        fingerprint: r.get(0)?,
        filename: r.get(1)?,
        size: r.get(2)?,
        public: r.get(3)?,
        architecture: r.get(4)?,
        kind: r.get(5)?,
        created_at: r.get(6)?,
        uploaded_at: r.get(7)?,
        last_used_at: r.get(8)?,
        expires_at: r.get(9)?,
        cached: r.get(10)?,
        auto_update: r.get(11)?,
        properties: from_json(&r.get::<_, String>(12)?),
        profiles: from_json(&r.get::<_, String>(13)?),
        source: from_json(&r.get::<_, String>(14)?),
        split: r.get(15)?,
    })
}

impl Db {
    pub fn images(&self) -> Result<Vec<ImageRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {IMAGE_COLS} FROM images ORDER BY fingerprint"
        ))?;
        let rows = stmt.query_map([], image_from_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn image_opt(&self, fingerprint: &str) -> Result<Option<ImageRow>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {IMAGE_COLS} FROM images WHERE fingerprint = ?1"),
                [fingerprint],
                image_from_row,
            )
            .optional()?)
    }

    /// Find an image by fingerprint prefix, as LXD does; an ambiguous prefix is an error.
    pub fn image_by_prefix(&self, prefix: &str) -> Result<ImageRow> {
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ApiError::not_found("Image not found"));
        }
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {IMAGE_COLS} FROM images WHERE fingerprint LIKE ?1 || '%' LIMIT 2"
        ))?;
        let mut rows: Vec<ImageRow> = stmt
            .query_map([prefix.to_ascii_lowercase()], image_from_row)?
            .collect::<std::result::Result<_, _>>()?;
        match rows.len() {
            0 => Err(ApiError::not_found("Image not found")),
            1 => Ok(rows.remove(0)),
            _ => Err(ApiError::bad_request(format!(
                "More than one image matches the fingerprint prefix \"{prefix}\""
            ))),
        }
    }

    pub fn image_create(&self, img: &ImageRow) -> Result<()> {
        let conn = self.conn();
        match conn.execute(
            &format!(
                "INSERT INTO images ({IMAGE_COLS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
            ),
            params![
                img.fingerprint,
                img.filename,
                img.size,
                img.public,
                img.architecture,
                img.kind,
                img.created_at,
                img.uploaded_at,
                img.last_used_at,
                img.expires_at,
                img.cached,
                img.auto_update,
                to_json(&img.properties),
                to_json(&img.profiles),
                to_json(&img.source),
                img.split
            ],
        ) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(ApiError::conflict(format!(
                    "Image with same fingerprint already exists: {}",
                    img.fingerprint
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn image_update(&self, img: &ImageRow) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "UPDATE images SET public = ?2, auto_update = ?3, properties = ?4, profiles = ?5, \
             expires_at = ?6, last_used_at = ?7, cached = ?8 WHERE fingerprint = ?1",
            params![
                img.fingerprint,
                img.public,
                img.auto_update,
                to_json(&img.properties),
                to_json(&img.profiles),
                img.expires_at,
                img.last_used_at,
                img.cached
            ],
        )?;
        Ok(())
    }

    pub fn image_touch(&self, fingerprint: &str, at: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "UPDATE images SET last_used_at = ?2 WHERE fingerprint = ?1",
            params![fingerprint, at],
        )?;
        Ok(())
    }

    /// Record where an image came from (`update_source`).
    pub fn image_set_source(&self, fingerprint: &str, source: Option<&ImageSource>) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "UPDATE images SET source = ?2 WHERE fingerprint = ?1",
            params![fingerprint, to_json(&source)],
        )?;
        Ok(())
    }

    /// Point every alias of `old` at `new` (an image refresh moves them).
    pub fn aliases_retarget(&self, old: &str, new: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "UPDATE image_aliases SET fingerprint = ?2 WHERE fingerprint = ?1",
            params![old, new],
        )?;
        Ok(())
    }

    /// Delete an image and the aliases pointing at it.
    pub fn image_delete(&self, fingerprint: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM image_aliases WHERE fingerprint = ?1",
            [fingerprint],
        )?;
        tx.execute("DELETE FROM images WHERE fingerprint = ?1", [fingerprint])?;
        tx.commit()?;
        Ok(())
    }

    pub fn aliases(&self) -> Result<Vec<AliasRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT name, fingerprint, description, type FROM image_aliases ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(AliasRow {
                name: r.get(0)?,
                fingerprint: r.get(1)?,
                description: r.get(2)?,
                kind: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn alias_opt(&self, name: &str) -> Result<Option<AliasRow>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT name, fingerprint, description, type FROM image_aliases WHERE name = ?1",
                [name],
                |r| {
                    Ok(AliasRow {
                        name: r.get(0)?,
                        fingerprint: r.get(1)?,
                        description: r.get(2)?,
                        kind: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn alias(&self, name: &str) -> Result<AliasRow> {
        self.alias_opt(name)?
            .ok_or_else(|| ApiError::not_found("Image alias not found"))
    }

    pub fn alias_create(&self, a: &AliasRow) -> Result<()> {
        let conn = self.conn();
        match conn.execute(
            "INSERT INTO image_aliases (name, fingerprint, description, type) VALUES (?1, ?2, ?3, ?4)",
            params![a.name, a.fingerprint, a.description, a.kind],
        ) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(ApiError::conflict("Alias already exists"))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn alias_update(&self, a: &AliasRow) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "UPDATE image_aliases SET fingerprint = ?2, description = ?3 WHERE name = ?1",
            params![a.name, a.fingerprint, a.description],
        )?;
        Ok(())
    }

    pub fn alias_rename(&self, old: &str, new: &str) -> Result<()> {
        let conn = self.conn();
        match conn.execute(
            "UPDATE image_aliases SET name = ?2 WHERE name = ?1",
            params![old, new],
        ) {
            Ok(0) => Err(ApiError::not_found("Image alias not found")),
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(ApiError::conflict("Alias already exists"))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn alias_delete(&self, name: &str) -> Result<()> {
        let conn = self.conn();
        let n = conn.execute("DELETE FROM image_aliases WHERE name = ?1", [name])?;
        if n == 0 {
            return Err(ApiError::not_found("Image alias not found"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(fp: &str) -> ImageRow {
        ImageRow {
            fingerprint: fp.into(),
            architecture: "x86_64".into(),
            kind: "container".into(),
            created_at: "x".into(),
            uploaded_at: "x".into(),
            last_used_at: "x".into(),
            expires_at: "x".into(),
            ..Default::default()
        }
    }

    #[test]
    fn prefix_lookup_and_alias_cascade() {
        let db = Db::open_in_memory().unwrap();
        db.image_create(&img("abcdef01")).unwrap();
        db.image_create(&img("abcdef02")).unwrap();
        assert_eq!(
            db.image_by_prefix("abcdef01").unwrap().fingerprint,
            "abcdef01"
        );
        assert_eq!(
            db.image_by_prefix("abc").unwrap_err().status,
            axum::http::StatusCode::BAD_REQUEST
        );
        assert!(db.image_by_prefix("ff").unwrap_err().is_not_found());
        assert!(db.image_by_prefix("a%").unwrap_err().is_not_found());
        db.alias_create(&AliasRow {
            name: "a/b".into(),
            fingerprint: "abcdef01".into(),
            kind: "container".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(db.alias("a/b").unwrap().fingerprint, "abcdef01");
        db.image_delete("abcdef01").unwrap();
        assert!(db.alias("a/b").unwrap_err().is_not_found());
    }
}
