//! TEMPORARY STUB
use crate::error::Error;
use std::path::Path;
#[derive(Debug, Default)]
pub struct Stats {
    pub processes: u64,
    pub memory_usage: u64,
    pub memory_peak: u64,
    pub cpu_usage_ns: u64,
}
pub fn shutdown(_r: &Path) -> Result<(), Error> {
    Ok(())
}
pub fn kill(_r: &Path) -> Result<(), Error> {
    Ok(())
}
pub fn freeze(_r: &Path) -> Result<(), Error> {
    Ok(())
}
pub fn thaw(_r: &Path) -> Result<(), Error> {
    Ok(())
}
pub fn apply_limits(_r: &Path, _l: &crate::spec::Limits) -> Result<(), Error> {
    Ok(())
}
pub fn stats(_r: &Path) -> Result<Stats, Error> {
    Ok(Stats::default())
}
