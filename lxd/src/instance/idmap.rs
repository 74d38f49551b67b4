//! Id maps as LXD records them in `volatile.idmap.*` keys (a JSON list of
//! `{"Isuid","Isgid","Hostid","Nsid","Maprange"}` entries) and `raw.idmap` parsing.
//! Conversion to and from the runtime's `IdMap` lives here so the wire format stays LXD's.

use lxd_runtime::spec::{IdMap, IdRange};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdmapEntry {
    #[serde(rename = "Isuid")]
    pub is_uid: bool,
    #[serde(rename = "Isgid")]
    pub is_gid: bool,
    #[serde(rename = "Hostid")]
    pub host_id: i64,
    #[serde(rename = "Nsid")]
    pub ns_id: i64,
    #[serde(rename = "Maprange")]
    pub range: i64,
}

/// Encode a map the way LXD writes `volatile.idmap.next` / `volatile.last_state.idmap`.
pub fn to_volatile(map: &IdMap) -> String {
    let mut v = Vec::new();
    for r in &map.uid {
        v.push(IdmapEntry {
            is_uid: true,
            is_gid: false,
            host_id: i64::from(r.host_id),
            ns_id: i64::from(r.ns_id),
            range: i64::from(r.count),
        });
    }
    for r in &map.gid {
        v.push(IdmapEntry {
            is_uid: false,
            is_gid: true,
            host_id: i64::from(r.host_id),
            ns_id: i64::from(r.ns_id),
            range: i64::from(r.count),
        });
    }
    serde_json::to_string(&v).unwrap_or_else(|_| "[]".into())
}

/// The file at the top of an image volume (beside `rootfs/`, never inside the container) that
/// records the id map its files were shifted to, as a `volatile.last_state.idmap` value. Only
/// pools without idmapped mounts have it; a new instance takes it over and the file goes.
pub const VOLUME_IDMAP_FILE: &str = ".volatile.last_state.idmap";

/// Shift a freshly unpacked image volume to the host's default map, once, and record it.
pub fn shift_image_volume(
    volume: &std::path::Path,
) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let map = lxd_runtime::idmap::host_idmap();
    lxd_runtime::idmap::shift_tree(&volume.join("rootfs"), &map, false)?;
    std::fs::write(volume.join(VOLUME_IDMAP_FILE), to_volatile(&map))?;
    Ok(())
}

/// Take the recorded on-disk map out of a new instance volume cloned from an image volume:
/// its value for `volatile.last_state.idmap`, or None when the files are unshifted.
pub fn take_volume_idmap(volume: &std::path::Path) -> std::io::Result<Option<String>> {
    let file = volume.join(VOLUME_IDMAP_FILE);
    let v = match std::fs::read_to_string(&file) {
        Ok(v) => v,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    std::fs::remove_file(&file)?;
    match from_volatile(&v) {
        Some(_) => Ok(Some(v)),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{VOLUME_IDMAP_FILE} holds no id map: {v:?}"),
        )),
    }
}

/// Decode a volatile idmap value; `[]` (or empty) means "no map" (privileged or unshifted).
pub fn from_volatile(s: &str) -> Option<IdMap> {
    let entries: Vec<IdmapEntry> = serde_json::from_str(s).ok()?;
    if entries.is_empty() {
        return None;
    }
    let mut map = IdMap::default();
    for e in entries {
        let r = IdRange {
            ns_id: u32::try_from(e.ns_id).ok()?,
            host_id: u32::try_from(e.host_id).ok()?,
            count: u32::try_from(e.range).ok()?,
        };
        if e.is_uid {
            map.uid.push(r);
        }
        if e.is_gid {
            map.gid.push(r);
        }
    }
    Some(map)
}

/// One `raw.idmap` line: `uid|gid|both HOST[-HOST_END] NS[-NS_END]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawIdmapEntry {
    pub uid: bool,
    pub gid: bool,
    pub host: u32,
    pub ns: u32,
    pub count: u32,
}

fn parse_range(s: &str) -> Option<(u32, u32)> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
            (b >= a).then_some((a, b - a + 1))
        }
        None => Some((s.parse().ok()?, 1)),
    }
}

pub fn parse_raw_idmap(v: &str) -> Result<Vec<RawIdmapEntry>> {
    let mut out = Vec::new();
    for line in v.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let bad = || ApiError::bad_request(format!("Invalid raw.idmap line \"{line}\""));
        if f.len() != 3 {
            return Err(bad());
        }
        let (uid, gid) = match f[0] {
            "uid" => (true, false),
            "gid" => (false, true),
            "both" => (true, true),
            _ => return Err(bad()),
        };
        let (host, hc) = parse_range(f[1]).ok_or_else(bad)?;
        let (ns, nc) = parse_range(f[2]).ok_or_else(bad)?;
        if hc != nc {
            return Err(ApiError::bad_request(format!(
                "Invalid raw.idmap line \"{line}\": host and container ranges differ in size"
            )));
        }
        if host == 0 {
            return Err(ApiError::bad_request(
                "raw.idmap may not map host root (uid/gid 0) into an unprivileged container",
            ));
        }
        out.push(RawIdmapEntry {
            uid,
            gid,
            host,
            ns,
            count: hc,
        });
    }
    Ok(out)
}

/// Remove `[ns, ns+count)` from a list of ranges, splitting where needed.
fn punch(ranges: &[IdRange], ns: u32, count: u32) -> Vec<IdRange> {
    let end = u64::from(ns) + u64::from(count);
    let mut out = Vec::new();
    for r in ranges {
        let (rs, re) = (u64::from(r.ns_id), u64::from(r.ns_id) + u64::from(r.count));
        if re <= u64::from(ns) || rs >= end {
            out.push(*r);
            continue;
        }
        if rs < u64::from(ns) {
            out.push(IdRange {
                ns_id: r.ns_id,
                host_id: r.host_id,
                count: (u64::from(ns) - rs) as u32,
            });
        }
        if re > end {
            let skip = end - rs;
            out.push(IdRange {
                ns_id: end as u32,
                host_id: (u64::from(r.host_id) + skip) as u32,
                count: (re - end) as u32,
            });
        }
    }
    out
}

fn overlaps_host(ranges: &[IdRange], host: u32, count: u32) -> bool {
    let (a, b) = (u64::from(host), u64::from(host) + u64::from(count));
    ranges.iter().any(|r| {
        let (rs, re) = (
            u64::from(r.host_id),
            u64::from(r.host_id) + u64::from(r.count),
        );
        a < re && rs < b
    })
}

/// Apply `raw.idmap` entries on top of the base map: the container ids they name are taken out
/// of the base ranges and mapped to the given host ids instead.
pub fn apply_raw_idmap(base: &IdMap, raw: &[RawIdmapEntry]) -> Result<IdMap> {
    let mut map = base.clone();
    for e in raw {
        if (e.uid && overlaps_host(&base.uid, e.host, e.count))
            || (e.gid && overlaps_host(&base.gid, e.host, e.count))
        {
            return Err(ApiError::bad_request(format!(
                "raw.idmap host range {}-{} overlaps the container's own id range",
                e.host,
                u64::from(e.host) + u64::from(e.count) - 1
            )));
        }
        let entry = IdRange {
            ns_id: e.ns,
            host_id: e.host,
            count: e.count,
        };
        if e.uid {
            map.uid = punch(&map.uid, e.ns, e.count);
            map.uid.push(entry);
        }
        if e.gid {
            map.gid = punch(&map.gid, e.ns, e.count);
            map.gid.push(entry);
        }
    }
    map.uid.sort_by_key(|r| r.ns_id);
    map.gid.sort_by_key(|r| r.ns_id);
    // The kernel accepts at most 340 lines per map (since 4.15).
    if map.uid.len() > 340 || map.gid.len() > 340 {
        return Err(ApiError::bad_request(
            "raw.idmap produces too many map ranges",
        ));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> IdMap {
        IdMap {
            uid: vec![IdRange {
                ns_id: 0,
                host_id: 100000,
                count: 65536,
            }],
            gid: vec![IdRange {
                ns_id: 0,
                host_id: 100000,
                count: 65536,
            }],
        }
    }

    #[test]
    fn volatile_round_trip_matches_lxd_format() {
        let s = to_volatile(&base());
        assert_eq!(
            s,
            r#"[{"Isuid":true,"Isgid":false,"Hostid":100000,"Nsid":0,"Maprange":65536},{"Isuid":false,"Isgid":true,"Hostid":100000,"Nsid":0,"Maprange":65536}]"#
        );
        assert_eq!(from_volatile(&s), Some(base()));
        assert_eq!(from_volatile("[]"), None);
        assert_eq!(from_volatile("garbage"), None);
    }

    #[test]
    fn raw_idmap_punches_a_hole() {
        let raw = parse_raw_idmap("both 1000 1000\nuid 2000-2001 50-51").unwrap();
        assert_eq!(raw.len(), 2);
        let m = apply_raw_idmap(&base(), &raw).unwrap();
        assert_eq!(
            m.uid,
            vec![
                IdRange {
                    ns_id: 0,
                    host_id: 100000,
                    count: 50
                },
                IdRange {
                    ns_id: 50,
                    host_id: 2000,
                    count: 2
                },
                IdRange {
                    ns_id: 52,
                    host_id: 100052,
                    count: 948
                },
                IdRange {
                    ns_id: 1000,
                    host_id: 1000,
                    count: 1
                },
                IdRange {
                    ns_id: 1001,
                    host_id: 101001,
                    count: 64535
                },
            ]
        );
        assert_eq!(m.gid.len(), 3);
    }

    #[test]
    fn raw_idmap_rejects_unsafe_lines() {
        assert!(parse_raw_idmap("both 0 0").is_err());
        assert!(parse_raw_idmap("uid 1000").is_err());
        assert!(parse_raw_idmap("uid 1-3 1-2").is_err());
        assert!(parse_raw_idmap("user 1 1").is_err());
        let raw = parse_raw_idmap("both 100005 5").unwrap();
        assert!(apply_raw_idmap(&base(), &raw).is_err());
    }
}
