//! TEMPORARY STUB
pub fn forkstart(_r: &std::path::Path) -> Result<(), crate::error::Error> {
    Err(crate::error::Error("stub".into()))
}
