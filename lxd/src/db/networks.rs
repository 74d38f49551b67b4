//! Managed network rows and their forwards.

use lxd_api::ConfigMap;
use lxd_api::network::NetworkForwardPort;
use rusqlite::{OptionalExtension, params};

use super::{Db, from_json, to_json};
use crate::error::{ApiError, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkRow {
    pub name: String,
    pub kind: String,
    pub description: String,
    pub config: ConfigMap,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardRow {
    pub network: String,
    pub listen_address: String,
    pub description: String,
    pub config: ConfigMap,
    pub ports: Vec<NetworkForwardPort>,
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

impl Db {
    pub fn networks(&self) -> Result<Vec<NetworkRow>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT name, type, description, config FROM networks ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(NetworkRow {
                name: r.get(0)?,
                kind: r.get(1)?,
                description: r.get(2)?,
                config: from_json(&r.get::<_, String>(3)?),
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn network_opt(&self, name: &str) -> Result<Option<NetworkRow>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT name, type, description, config FROM networks WHERE name = ?1",
                [name],
                |r| {
                    Ok(NetworkRow {
                        name: r.get(0)?,
                        kind: r.get(1)?,
                        description: r.get(2)?,
                        config: from_json(&r.get::<_, String>(3)?),
                    })
                },
            )
            .optional()?)
    }

    pub fn network(&self, name: &str) -> Result<NetworkRow> {
        self.network_opt(name)?
            .ok_or_else(|| ApiError::not_found(format!("Network \"{name}\" not found")))
    }

    pub fn network_create(&self, n: &NetworkRow) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO networks (name, type, description, config) VALUES (?1, ?2, ?3, ?4)",
            params![n.name, n.kind, n.description, to_json(&n.config)],
        )
        .map_err(|e| {
            if is_constraint(&e) {
                ApiError::conflict(format!("Network \"{}\" already exists", n.name))
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    pub fn network_update(&self, n: &NetworkRow) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "UPDATE networks SET description = ?2, config = ?3 WHERE name = ?1",
            params![n.name, n.description, to_json(&n.config)],
        )?;
        Ok(())
    }

    pub fn network_rename(&self, old: &str, new: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "UPDATE networks SET name = ?2 WHERE name = ?1",
            params![old, new],
        )
        .map_err(|e| {
            if is_constraint(&e) {
                ApiError::conflict(format!("Network \"{new}\" already exists"))
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    pub fn network_delete(&self, name: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute("DELETE FROM networks WHERE name = ?1", [name])?;
        Ok(())
    }

    pub fn forwards(&self, network: &str) -> Result<Vec<ForwardRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT n.name, f.listen_address, f.description, f.config, f.ports \
             FROM network_forwards f JOIN networks n ON n.id = f.network_id \
             WHERE n.name = ?1 ORDER BY f.listen_address",
        )?;
        let rows = stmt.query_map([network], |r| {
            Ok(ForwardRow {
                network: r.get(0)?,
                listen_address: r.get(1)?,
                description: r.get(2)?,
                config: from_json(&r.get::<_, String>(3)?),
                ports: from_json(&r.get::<_, String>(4)?),
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn forward(&self, network: &str, listen: &str) -> Result<ForwardRow> {
        self.forwards(network)?
            .into_iter()
            .find(|f| f.listen_address == listen)
            .ok_or_else(|| ApiError::not_found(format!("Network forward \"{listen}\" not found")))
    }

    pub fn forward_create(&self, f: &ForwardRow) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO network_forwards (network_id, listen_address, description, config, ports) \
             SELECT id, ?2, ?3, ?4, ?5 FROM networks WHERE name = ?1",
            params![
                f.network,
                f.listen_address,
                f.description,
                to_json(&f.config),
                to_json(&f.ports)
            ],
        )
        .map_err(|e| {
            if is_constraint(&e) {
                ApiError::conflict(format!("A forward for {} already exists", f.listen_address))
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    pub fn forward_update(&self, f: &ForwardRow) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "UPDATE network_forwards SET description = ?3, config = ?4, ports = ?5 \
             WHERE listen_address = ?2 AND network_id = (SELECT id FROM networks WHERE name = ?1)",
            params![
                f.network,
                f.listen_address,
                f.description,
                to_json(&f.config),
                to_json(&f.ports)
            ],
        )?;
        Ok(())
    }

    pub fn forward_delete(&self, network: &str, listen: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "DELETE FROM network_forwards WHERE listen_address = ?2 \
             AND network_id = (SELECT id FROM networks WHERE name = ?1)",
            params![network, listen],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_forwards_round_trip() {
        let db = Db::open_in_memory().unwrap();
        let mut n = NetworkRow {
            name: "br0".into(),
            kind: "bridge".into(),
            description: "d".into(),
            config: [("ipv4.address".to_string(), "10.1.1.1/24".to_string())].into(),
        };
        db.network_create(&n).unwrap();
        assert!(db.network_create(&n).unwrap_err().status == axum::http::StatusCode::CONFLICT);
        n.description = "e".into();
        db.network_update(&n).unwrap();
        assert_eq!(db.network("br0").unwrap(), n);
        let f = ForwardRow {
            network: "br0".into(),
            listen_address: "192.0.2.5".into(),
            ports: vec![NetworkForwardPort {
                protocol: "tcp".into(),
                listen_port: "80".into(),
                target_address: "10.1.1.5".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        db.forward_create(&f).unwrap();
        assert!(db.forward_create(&f).is_err());
        assert_eq!(db.forward("br0", "192.0.2.5").unwrap(), f);
        db.network_rename("br0", "br1").unwrap();
        assert_eq!(db.forwards("br1").unwrap().len(), 1);
        db.network_delete("br1").unwrap();
        assert!(db.network("br1").unwrap_err().is_not_found());
        assert!(db.forwards("br1").unwrap().is_empty());
    }
}
