//! The protobuf messages of LXD's migration protocol (`lxd/migration/migrate.proto`, proto2),
//! encoded and decoded by hand: a handful of messages do not justify a code generator. Unknown
//! fields are skipped on decode; required fields are always written, since LXD's Go decoder
//! refuses a message that lacks one.

use std::collections::BTreeMap;

/// `MigrationFSType`.
pub const FS_RSYNC: i32 = 0;
pub const FS_BTRFS: i32 = 1;
pub const FS_ZFS: i32 = 2;

/// `CRIUType`: `NONE` tells the target the source is running and a final sync follows.
pub const CRIU_RSYNC: i32 = 0;
pub const CRIU_NONE: i32 = 2;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdmapType {
    pub isuid: bool,
    pub isgid: bool,
    pub hostid: i32,
    pub nsid: i32,
    pub maprange: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub name: String,
    pub local_config: BTreeMap<String, String>,
    pub profiles: Vec<String>,
    pub ephemeral: bool,
    pub local_devices: BTreeMap<String, BTreeMap<String, String>>,
    pub architecture: i32,
    pub stateful: bool,
    pub creation_date: Option<i64>,
    pub last_used_date: Option<i64>,
    pub expiry_date: Option<i64>,
}

/// Optional feature flags; `None` means the field was absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RsyncFeatures {
    pub xattrs: Option<bool>,
    pub delete: Option<bool>,
    pub compress: Option<bool>,
    pub bidirectional: Option<bool>,
}

impl RsyncFeatures {
    /// The names of the features that are set, as LXD's `GetRsyncFeaturesSlice`.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (set, n) in [
            (self.xattrs, "xattrs"),
            (self.delete, "delete"),
            (self.compress, "compress"),
            (self.bidirectional, "bidirectional"),
        ] {
            if set == Some(true) {
                v.push(n);
            }
        }
        v
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZfsFeatures {
    pub compress: Option<bool>,
    pub migration_header: Option<bool>,
    pub header_zvols: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BtrfsFeatures {
    pub migration_header: Option<bool>,
    pub header_subvolumes: Option<bool>,
    pub header_subvolume_uuids: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationHeader {
    pub fs: i32,
    pub criu: Option<i32>,
    pub idmap: Vec<IdmapType>,
    pub snapshot_names: Vec<String>,
    pub snapshots: Vec<Snapshot>,
    pub predump: Option<bool>,
    pub rsync_features: Option<RsyncFeatures>,
    pub refresh: Option<bool>,
    pub zfs_features: Option<ZfsFeatures>,
    pub volume_size: Option<i64>,
    pub btrfs_features: Option<BtrfsFeatures>,
    pub index_header_version: Option<u32>,
    pub fs_refresh: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationControl {
    pub success: bool,
    pub message: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("Invalid migration message: {0}")]
pub struct DecodeError(&'static str);

// ---- wire primitives ----

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_u64(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, 0);
    put_varint(out, v);
}

/// int32/enum: negative values are sign-extended to 64 bits, as protobuf requires.
fn put_i32(out: &mut Vec<u8>, field: u32, v: i32) {
    put_u64(out, field, i64::from(v) as u64);
}

fn put_i64(out: &mut Vec<u8>, field: u32, v: i64) {
    put_u64(out, field, v as u64);
}

fn put_bool(out: &mut Vec<u8>, field: u32, v: bool) {
    put_u64(out, field, u64::from(v));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

struct Reader<'a> {
    b: &'a [u8],
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&byte, rest) = self
                .b
                .split_first()
                .ok_or(DecodeError("truncated varint"))?;
            self.b = rest;
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(DecodeError("truncated field"));
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }

    /// The next (field, value), or None at the end.
    fn next(&mut self) -> Result<Option<(u32, Value<'a>)>, DecodeError> {
        if self.b.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = (key >> 3) as u32;
        let v = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Other
            }
            2 => {
                let n = self.varint()? as usize;
                Value::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Value::Other
            }
            _ => return Err(DecodeError("unsupported wire type")),
        };
        Ok(Some((field, v)))
    }
}

fn each(
    b: &[u8],
    mut f: impl FnMut(u32, Value<'_>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let mut r = Reader { b };
    while let Some((field, v)) = r.next()? {
        f(field, v)?;
    }
    Ok(())
}

fn as_u64(v: &Value<'_>) -> Result<u64, DecodeError> {
    match v {
        Value::Varint(x) => Ok(*x),
        _ => Err(DecodeError("expected a varint")),
    }
}

fn as_bytes<'a>(v: &Value<'a>) -> Result<&'a [u8], DecodeError> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err(DecodeError("expected a length-delimited field")),
    }
}

fn as_string(v: &Value<'_>) -> Result<String, DecodeError> {
    String::from_utf8(as_bytes(v)?.to_vec()).map_err(|_| DecodeError("invalid UTF-8"))
}

fn as_bool(v: &Value<'_>) -> Result<bool, DecodeError> {
    Ok(as_u64(v)? != 0)
}

// ---- messages ----

fn encode_config(k: &str, v: &str) -> Vec<u8> {
    let mut m = Vec::new();
    put_bytes(&mut m, 1, k.as_bytes());
    put_bytes(&mut m, 2, v.as_bytes());
    m
}

fn decode_config(b: &[u8]) -> Result<(String, String), DecodeError> {
    let (mut k, mut v) = (String::new(), String::new());
    each(b, |f, x| {
        match f {
            1 => k = as_string(&x)?,
            2 => v = as_string(&x)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok((k, v))
}

impl IdmapType {
    fn encode(&self) -> Vec<u8> {
        let mut m = Vec::new();
        put_bool(&mut m, 1, self.isuid);
        put_bool(&mut m, 2, self.isgid);
        put_i32(&mut m, 3, self.hostid);
        put_i32(&mut m, 4, self.nsid);
        put_i32(&mut m, 5, self.maprange);
        m
    }

    fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut e = IdmapType::default();
        each(b, |f, x| {
            match f {
                1 => e.isuid = as_bool(&x)?,
                2 => e.isgid = as_bool(&x)?,
                3 => e.hostid = as_u64(&x)? as i32,
                4 => e.nsid = as_u64(&x)? as i32,
                5 => e.maprange = as_u64(&x)? as i32,
                _ => {}
            }
            Ok(())
        })?;
        Ok(e)
    }
}

impl Snapshot {
    fn encode(&self) -> Vec<u8> {
        let mut m = Vec::new();
        put_bytes(&mut m, 1, self.name.as_bytes());
        for (k, v) in &self.local_config {
            put_bytes(&mut m, 2, &encode_config(k, v));
        }
        for p in &self.profiles {
            put_bytes(&mut m, 3, p.as_bytes());
        }
        put_bool(&mut m, 4, self.ephemeral);
        for (name, conf) in &self.local_devices {
            let mut d = Vec::new();
            put_bytes(&mut d, 1, name.as_bytes());
            for (k, v) in conf {
                put_bytes(&mut d, 2, &encode_config(k, v));
            }
            put_bytes(&mut m, 5, &d);
        }
        put_i32(&mut m, 6, self.architecture);
        put_bool(&mut m, 7, self.stateful);
        if let Some(v) = self.creation_date {
            put_i64(&mut m, 8, v);
        }
        if let Some(v) = self.last_used_date {
            put_i64(&mut m, 9, v);
        }
        if let Some(v) = self.expiry_date {
            put_i64(&mut m, 10, v);
        }
        m
    }

    fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut s = Snapshot::default();
        each(b, |f, x| {
            match f {
                1 => s.name = as_string(&x)?,
                2 => {
                    let (k, v) = decode_config(as_bytes(&x)?)?;
                    s.local_config.insert(k, v);
                }
                3 => s.profiles.push(as_string(&x)?),
                4 => s.ephemeral = as_bool(&x)?,
                5 => {
                    let mut name = String::new();
                    let mut conf = BTreeMap::new();
                    each(as_bytes(&x)?, |f, y| {
                        match f {
                            1 => name = as_string(&y)?,
                            2 => {
                                let (k, v) = decode_config(as_bytes(&y)?)?;
                                conf.insert(k, v);
                            }
                            _ => {}
                        }
                        Ok(())
                    })?;
                    s.local_devices.insert(name, conf);
                }
                6 => s.architecture = as_u64(&x)? as i32,
                7 => s.stateful = as_bool(&x)?,
                8 => s.creation_date = Some(as_u64(&x)? as i64),
                9 => s.last_used_date = Some(as_u64(&x)? as i64),
                10 => s.expiry_date = Some(as_u64(&x)? as i64),
                _ => {}
            }
            Ok(())
        })?;
        Ok(s)
    }
}

fn encode_flags(flags: &[Option<bool>]) -> Vec<u8> {
    let mut m = Vec::new();
    for (i, f) in flags.iter().enumerate() {
        if let Some(v) = f {
            put_bool(&mut m, i as u32 + 1, *v);
        }
    }
    m
}

fn decode_flags<const N: usize>(b: &[u8]) -> Result<[Option<bool>; N], DecodeError> {
    let mut out = [None; N];
    each(b, |f, x| {
        if f >= 1 && (f as usize) <= N {
            out[f as usize - 1] = Some(as_bool(&x)?);
        }
        Ok(())
    })?;
    Ok(out)
}

impl MigrationHeader {
    pub fn encode(&self) -> Vec<u8> {
        let mut m = Vec::new();
        put_i32(&mut m, 1, self.fs);
        if let Some(c) = self.criu {
            put_i32(&mut m, 2, c);
        }
        for e in &self.idmap {
            put_bytes(&mut m, 3, &e.encode());
        }
        for n in &self.snapshot_names {
            put_bytes(&mut m, 4, n.as_bytes());
        }
        for s in &self.snapshots {
            put_bytes(&mut m, 5, &s.encode());
        }
        if let Some(v) = self.predump {
            put_bool(&mut m, 7, v);
        }
        if let Some(r) = &self.rsync_features {
            put_bytes(
                &mut m,
                8,
                &encode_flags(&[r.xattrs, r.delete, r.compress, r.bidirectional]),
            );
        }
        if let Some(v) = self.refresh {
            put_bool(&mut m, 9, v);
        }
        if let Some(z) = &self.zfs_features {
            put_bytes(
                &mut m,
                10,
                &encode_flags(&[z.compress, z.migration_header, z.header_zvols]),
            );
        }
        if let Some(v) = self.volume_size {
            put_i64(&mut m, 11, v);
        }
        if let Some(b) = &self.btrfs_features {
            put_bytes(
                &mut m,
                12,
                &encode_flags(&[
                    b.migration_header,
                    b.header_subvolumes,
                    b.header_subvolume_uuids,
                ]),
            );
        }
        if let Some(v) = self.index_header_version {
            put_u64(&mut m, 13, u64::from(v));
        }
        if let Some(v) = self.fs_refresh {
            put_i32(&mut m, 14, v);
        }
        m
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut h = MigrationHeader::default();
        each(b, |f, x| {
            match f {
                1 => h.fs = as_u64(&x)? as i32,
                2 => h.criu = Some(as_u64(&x)? as i32),
                3 => h.idmap.push(IdmapType::decode(as_bytes(&x)?)?),
                4 => h.snapshot_names.push(as_string(&x)?),
                5 => h.snapshots.push(Snapshot::decode(as_bytes(&x)?)?),
                7 => h.predump = Some(as_bool(&x)?),
                8 => {
                    let [xattrs, delete, compress, bidirectional] = decode_flags(as_bytes(&x)?)?;
                    h.rsync_features = Some(RsyncFeatures {
                        xattrs,
                        delete,
                        compress,
                        bidirectional,
                    });
                }
                9 => h.refresh = Some(as_bool(&x)?),
                10 => {
                    let [compress, migration_header, header_zvols] = decode_flags(as_bytes(&x)?)?;
                    h.zfs_features = Some(ZfsFeatures {
                        compress,
                        migration_header,
                        header_zvols,
                    });
                }
                11 => h.volume_size = Some(as_u64(&x)? as i64),
                12 => {
                    let [migration_header, header_subvolumes, header_subvolume_uuids] =
                        decode_flags(as_bytes(&x)?)?;
                    h.btrfs_features = Some(BtrfsFeatures {
                        migration_header,
                        header_subvolumes,
                        header_subvolume_uuids,
                    });
                }
                13 => h.index_header_version = Some(as_u64(&x)? as u32),
                14 => h.fs_refresh = Some(as_u64(&x)? as i32),
                _ => {}
            }
            Ok(())
        })?;
        Ok(h)
    }

    pub fn rsync_feature_names(&self) -> Vec<&'static str> {
        self.rsync_features
            .as_ref()
            .map(RsyncFeatures::names)
            .unwrap_or_default()
    }
}

impl MigrationControl {
    pub fn encode(&self) -> Vec<u8> {
        let mut m = Vec::new();
        put_bool(&mut m, 1, self.success);
        if let Some(msg) = &self.message {
            put_bytes(&mut m, 2, msg.as_bytes());
        }
        m
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut c = MigrationControl::default();
        each(b, |f, x| {
            match f {
                1 => c.success = as_bool(&x)?,
                2 => c.message = Some(as_string(&x)?),
                _ => {}
            }
            Ok(())
        })?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let mut snap = Snapshot {
            name: "snap0".into(),
            architecture: 2,
            creation_date: Some(1_700_000_000),
            profiles: vec!["default".into()],
            ..Default::default()
        };
        snap.local_config.insert("limits.cpu".into(), "1".into());
        let mut dev = BTreeMap::new();
        dev.insert("type".into(), "disk".into());
        snap.local_devices.insert("root".into(), dev);
        let h = MigrationHeader {
            fs: FS_BTRFS,
            criu: Some(CRIU_NONE),
            idmap: vec![IdmapType {
                isuid: true,
                isgid: false,
                hostid: 1_000_000,
                nsid: 0,
                maprange: 65536,
            }],
            snapshot_names: vec!["snap0".into()],
            snapshots: vec![snap],
            rsync_features: Some(RsyncFeatures {
                xattrs: Some(true),
                delete: Some(true),
                compress: Some(false),
                bidirectional: Some(true),
            }),
            refresh: Some(false),
            btrfs_features: Some(BtrfsFeatures {
                migration_header: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        };
        let back = MigrationHeader::decode(&h.encode()).unwrap();
        assert_eq!(back, h);
        assert_eq!(
            back.rsync_feature_names(),
            vec!["xattrs", "delete", "bidirectional"]
        );
    }

    #[test]
    fn control_matches_protobuf_bytes() {
        // success=true, message="x": 08 01 12 01 78 (what protoc-generated code emits).
        let c = MigrationControl {
            success: true,
            message: Some("x".into()),
        };
        assert_eq!(c.encode(), vec![0x08, 0x01, 0x12, 0x01, b'x']);
        assert_eq!(MigrationControl::decode(&c.encode()).unwrap(), c);
        // A negative enum is a 10-byte varint.
        let mut m = Vec::new();
        put_i32(&mut m, 1, -1);
        assert_eq!(m.len(), 11);
    }
}
