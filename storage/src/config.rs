//! Pool config keys per driver, as LXD spells them, and their value checks. An unknown key is an
//! error so a typo never silently does nothing.

use crate::units::parse_size;
use crate::{ConfigMap, Error, Result};

const COMMON: &[&str] = &[
    "source",
    "rsync.bwlimit",
    "rsync.compression",
    "volatile.initial_source",
    "volatile.pool.pristine",
    "volume.size",
    "volume.snapshots.expiry",
    "volume.snapshots.pattern",
    "volume.snapshots.schedule",
];
const BTRFS: &[&str] = &["size", "btrfs.mount_options"];
const ZFS: &[&str] = &[
    "size",
    "zfs.pool_name",
    "zfs.clone_copy",
    "zfs.export",
    "zfs.remove_snapshots",
    "volume.zfs.remove_snapshots",
    "volume.zfs.use_refquota",
];

pub(crate) fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "" | "false" | "0" | "no" | "off" => Ok(false),
        "true" | "1" | "yes" | "on" => Ok(true),
        _ => Err(Error::Invalid(format!(
            "Invalid value for {key}: {value:?} is not a boolean"
        ))),
    }
}

/// Check `config` for a pool of `driver`: every key known, every value well-formed.
pub fn validate_config(driver: &str, config: &ConfigMap) -> Result<()> {
    let extra: &[&str] = match driver {
        "dir" => &[],
        "btrfs" => BTRFS,
        "zfs" => ZFS,
        other => {
            return Err(Error::NotSupported(format!(
                "Storage driver {other:?} is not supported"
            )));
        }
    };
    for (key, value) in config {
        if !COMMON.contains(&key.as_str()) && !extra.contains(&key.as_str()) {
            return Err(Error::Invalid(format!(
                "Invalid config key {key:?} for a {driver} pool"
            )));
        }
        match key.as_str() {
            "size" | "volume.size" if !value.is_empty() => {
                if key == "volume.size" && driver == "dir" {
                    return Err(Error::NotSupported(
                        "Quotas are not supported by the dir driver".into(),
                    ));
                }
                parse_size(value)
                    .map_err(|e| Error::Invalid(format!("Invalid value for {key}: {e}")))?;
            }
            "zfs.clone_copy" if !matches!(value.as_str(), "" | "true" | "false" | "rebase") => {
                return Err(Error::Invalid(format!(
                    "Invalid value for zfs.clone_copy: {value:?} (expected true, false or rebase)"
                )));
            }
            "zfs.export"
            | "zfs.remove_snapshots"
            | "volume.zfs.remove_snapshots"
            | "volume.zfs.use_refquota" => {
                parse_bool(key, value)?;
            }
            "rsync.compression" => {
                parse_bool(key, value)?;
            }
            "source" if value.contains('\0') => {
                return Err(Error::Invalid("Invalid source".into()));
            }
            "zfs.pool_name"
                if value.is_empty()
                    || value.starts_with('-')
                    || value.starts_with('/')
                    || value.ends_with('/')
                    || value.contains("//")
                    || value.contains(['@', '#', ' ', '\0']) =>
            {
                return Err(Error::Invalid(format!("Invalid zfs.pool_name {value:?}")));
            }
            "btrfs.mount_options" if value.contains([' ', '\0']) => {
                return Err(Error::Invalid(format!(
                    "Invalid btrfs.mount_options {value:?}"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Check a config change of an existing pool: the new config must be valid, and the keys that
/// name what the pool is built on (`source`, `zfs.pool_name`) cannot change (LXD refuses too).
pub fn validate_update(driver: &str, old: &ConfigMap, new: &ConfigMap) -> Result<()> {
    validate_config(driver, new)?;
    for key in ["source", "zfs.pool_name"] {
        if let Some(n) = new.get(key)
            && old.get(key) != Some(n)
        {
            return Err(Error::Invalid(format!(
                "Config key {key:?} cannot be changed on an existing pool"
            )));
        }
    }
    Ok(())
}

/// A boolean key, with a fallback key (LXD's `volume.` prefixed pool-level defaults).
pub(crate) fn get_bool(config: &ConfigMap, keys: &[&str], default: bool) -> bool {
    keys.iter()
        .find_map(|k| config.get(*k))
        .map(|v| parse_bool("", v).unwrap_or(default))
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kv: &[(&str, &str)]) -> ConfigMap {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keys_per_driver() {
        validate_config("dir", &cfg(&[("source", "/srv/x")])).unwrap();
        validate_config(
            "btrfs",
            &cfg(&[("size", "10GiB"), ("btrfs.mount_options", "noatime")]),
        )
        .unwrap();
        validate_config(
            "zfs",
            &cfg(&[
                ("size", "1GiB"),
                ("zfs.pool_name", "tank/lxd"),
                ("zfs.clone_copy", "rebase"),
            ]),
        )
        .unwrap();
        assert!(validate_config("dir", &cfg(&[("size", "1GiB")])).is_err());
        assert!(matches!(
            validate_config("dir", &cfg(&[("volume.size", "1GiB")])),
            Err(Error::NotSupported(_))
        ));
        assert!(validate_config("btrfs", &cfg(&[("size", "10G")])).is_err());
        assert!(validate_config("btrfs", &cfg(&[("zfs.pool_name", "x")])).is_err());
        assert!(validate_config("zfs", &cfg(&[("zfs.clone_copy", "maybe")])).is_err());
        assert!(validate_config("zfs", &cfg(&[("zfs.pool_name", "-o")])).is_err());
        assert!(validate_config("zfs", &cfg(&[("zfs.export", "perhaps")])).is_err());
        assert!(matches!(
            validate_config("lvm", &cfg(&[])),
            Err(Error::NotSupported(_))
        ));
        assert!(get_bool(
            &cfg(&[("volume.zfs.remove_snapshots", "true")]),
            &["zfs.remove_snapshots", "volume.zfs.remove_snapshots"],
            false
        ));
    }
}
