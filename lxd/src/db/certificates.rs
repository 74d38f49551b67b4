//! The trust store: client certificates allowed over HTTPS, keyed by the sha256 of their DER.

use rusqlite::{OptionalExtension, Row, params};

use super::Db;
use crate::error::{ApiError, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateRow {
    pub fingerprint: String,
    /// `client` or `metrics`.
    pub kind: String,
    pub name: String,
    /// PEM.
    pub certificate: String,
    pub restricted: bool,
}

const COLS: &str = "fingerprint, type, name, certificate, restricted";

fn from_row(r: &Row<'_>) -> rusqlite::Result<CertificateRow> {
    Ok(CertificateRow {
        fingerprint: r.get(0)?,
        kind: r.get(1)?,
        name: r.get(2)?,
        certificate: r.get(3)?,
        restricted: r.get(4)?,
    })
}

impl Db {
    pub fn certificates(&self) -> Result<Vec<CertificateRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLS} FROM certificates ORDER BY name, fingerprint"
        ))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Whether a client presenting this certificate fingerprint is trusted.
    pub fn certificate_trusted(&self, fingerprint: &str) -> Result<bool> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT 1 FROM certificates WHERE fingerprint = ?1 AND type = 'client'",
                [fingerprint],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// A certificate by fingerprint prefix, as LXD matches them; ambiguity is an error.
    pub fn certificate_by_prefix(&self, prefix: &str) -> Result<CertificateRow> {
        let not_found = || ApiError::not_found("Certificate not found");
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLS} FROM certificates WHERE fingerprint LIKE ?1 || '%' LIMIT 2"
        ))?;
        let mut rows: Vec<CertificateRow> = stmt
            .query_map([prefix.to_ascii_lowercase()], from_row)?
            .collect::<std::result::Result<_, _>>()?;
        match rows.len() {
            0 => Err(not_found()),
            1 => Ok(rows.remove(0)),
            _ => Err(ApiError::bad_request(format!(
                "More than one certificate matches \"{prefix}\""
            ))),
        }
    }

    pub fn certificate_create(&self, c: &CertificateRow) -> Result<()> {
        let conn = self.conn();
        match conn.execute(
            &format!("INSERT INTO certificates ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
            params![c.fingerprint, c.kind, c.name, c.certificate, c.restricted],
        ) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(ApiError::bad_request("Certificate already in trust store"))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn certificate_update(&self, c: &CertificateRow) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "UPDATE certificates SET type = ?2, name = ?3, restricted = ?4 WHERE fingerprint = ?1",
            params![c.fingerprint, c.kind, c.name, c.restricted],
        )?;
        Ok(())
    }

    pub fn certificate_delete(&self, fingerprint: &str) -> Result<()> {
        let conn = self.conn();
        let n = conn.execute(
            "DELETE FROM certificates WHERE fingerprint = ?1",
            [fingerprint],
        )?;
        if n == 0 {
            return Err(ApiError::not_found("Certificate not found"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_store_round_trip() {
        let db = Db::open_in_memory().unwrap();
        let c = CertificateRow {
            fingerprint: "abcd01".into(),
            kind: "client".into(),
            name: "laptop".into(),
            certificate: "PEM".into(),
            restricted: false,
        };
        db.certificate_create(&c).unwrap();
        assert!(db.certificate_create(&c).is_err());
        assert!(db.certificate_trusted("abcd01").unwrap());
        assert!(!db.certificate_trusted("abcd").unwrap());
        assert_eq!(db.certificate_by_prefix("abcd").unwrap(), c);
        let mut m = c.clone();
        m.kind = "metrics".into();
        db.certificate_update(&m).unwrap();
        assert!(!db.certificate_trusted("abcd01").unwrap());
        db.certificate_delete("abcd01").unwrap();
        assert!(db.certificate_by_prefix("abcd").unwrap_err().is_not_found());
    }
}
