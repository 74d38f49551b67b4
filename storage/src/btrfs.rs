//! The `btrfs` driver (stub until implemented).
use crate::layout::Layout;
use crate::{ConfigMap, Error, Result};

pub(crate) struct Btrfs;
impl Btrfs {
    pub(crate) fn new(_l: Layout, _c: ConfigMap) -> Result<crate::dir::Dir> {
        Err(Error::NotSupported("btrfs: not yet".into()))
    }
}
pub(crate) fn version() -> Option<String> {
    None
}
