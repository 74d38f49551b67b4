//! LXD's byte-size strings (`shared/units.ParseByteSizeString`): an integer followed by nothing,
//! `B`, a decimal suffix (`kB`, `MB`, ... `EB`) or a binary one (`KiB`, `MiB`, ... `EiB`).

use crate::{Error, Result};

/// Parse `10GiB`, `500MB`, `4096` into bytes. Overflow and unknown suffixes are errors.
pub fn parse_size(input: &str) -> Result<u64> {
    let input = input.trim();
    let split = input
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(input.len());
    let (digits, suffix) = input.split_at(split);
    let invalid = || Error::Invalid(format!("Invalid size {input:?}"));
    if digits.is_empty() {
        return Err(invalid());
    }
    let value: u64 = digits.parse().map_err(|_| invalid())?;
    let mult: u64 = match suffix {
        "" | "B" | " bytes" => 1,
        "kB" => 1000,
        "MB" => 1000u64.pow(2),
        "GB" => 1000u64.pow(3),
        "TB" => 1000u64.pow(4),
        "PB" => 1000u64.pow(5),
        "EB" => 1000u64.pow(6),
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "PiB" => 1 << 50,
        "EiB" => 1 << 60,
        _ => return Err(invalid()),
    };
    value.checked_mul(mult).ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lxd_units() {
        assert_eq!(parse_size("10GiB").unwrap(), 10 << 30);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("12B").unwrap(), 12);
        assert_eq!(parse_size("1kB").unwrap(), 1000);
        assert_eq!(parse_size("3KiB").unwrap(), 3072);
        for bad in [
            "",
            "GiB",
            "10G",
            "10 GiB",
            "-1",
            "1.5GiB",
            "99999999999EiB",
            "10gib",
        ] {
            assert!(parse_size(bad).is_err(), "{bad} should be rejected");
        }
    }
}
