//! TEMPORARY STUB (replaced by the images module from the wt-images branch).
#![allow(dead_code, unused_variables)]
use std::path::Path;

#[derive(Debug)]
pub struct Error(pub String);
impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl Error {
    pub fn http_status(&self) -> u16 {
        400
    }
}

pub mod store {
    use std::path::Path;
    #[derive(Debug)]
    pub struct Imported {
        pub fingerprint: String,
        pub size: u64,
        pub metadata: lxd_api::ImageMetadata,
        pub split: bool,
    }
    pub fn import_unified(dir: &Path, path: &Path) -> Result<Imported, super::Error> {
        Err(super::Error("stub".into()))
    }
    pub fn import_split(dir: &Path, m: &Path, r: &Path) -> Result<Imported, super::Error> {
        Err(super::Error("stub".into()))
    }
    pub fn remove(dir: &Path, fp: &str) {}
}
pub fn unpack_image(images_dir: &Path, fp: &str, target: &Path) -> Result<(), Error> {
    Err(Error("stub".into()))
}
#[derive(Debug, Clone)]
pub struct TemplateContext {
    pub name: String,
    pub architecture: String,
    pub privileged: bool,
    pub config: lxd_api::ConfigMap,
}
pub fn apply_templates(
    volume: &Path,
    trigger: &str,
    ctx: &TemplateContext,
    owner: Option<(u32, u32)>,
) -> Result<(), Error> {
    Ok(())
}
pub fn normalize_architecture(a: &str) -> String {
    a.to_string()
}
