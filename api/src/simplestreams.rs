//! Simplestreams image servers (LXD `shared/simplestreams`): `streams/v1/index.json`, its
//! `products:1.0` files, and their conversion into LXD images and aliases exactly as LXD's client
//! does it (newest version first, `alias` for the local architecture plus `alias/<arch>`, the
//! `ubuntu/` prefix stripped on cloud-images.ubuntu.com). Pure data: fetching lives elsewhere.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::image::{Image, ImageAlias, ImageAliasesEntry};

/// `streams/v1/index.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Stream {
    #[serde(deserialize_with = "crate::null_default")]
    pub index: BTreeMap<String, StreamIndex>,
    pub format: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub updated: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamIndex {
    pub datatype: String,
    pub path: String,
    pub format: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub updated: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub products: Vec<String>,
}

/// A `products:1.0` file (`streams/v1/images.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Products {
    pub content_id: String,
    pub datatype: String,
    pub format: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub updated: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub products: BTreeMap<String, Product>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Product {
    pub aliases: String,
    pub arch: String,
    pub os: String,
    pub release: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub release_codename: String,
    pub release_title: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub support_eol: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub variant: String,
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::null_default"
    )]
    pub lxd_requirements: BTreeMap<String, String>,
    #[serde(deserialize_with = "crate::null_default")]
    pub versions: BTreeMap<String, ProductVersion>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProductVersion {
    #[serde(deserialize_with = "crate::null_default")]
    pub items: BTreeMap<String, Item>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub label: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pubname: String,
}

/// One file of a version.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Item {
    pub ftype: String,
    pub path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    pub size: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub combined_sha256: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub combined_rootxz_sha256: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub combined_squashfs_sha256: String,
    #[serde(
        rename = "combined_disk-kvm-img_sha256",
        skip_serializing_if = "String::is_empty"
    )]
    pub combined_disk_kvm_img_sha256: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub delta_base: String,
}

/// A file to fetch: its path below the server URL, sha256 and size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Download {
    pub path: String,
    pub sha256: String,
    pub size: i64,
}

/// An image of the stream with the files that make it: the metadata (or unified) tarball, and
/// the rootfs of a split image.
#[derive(Debug, Clone, Default)]
pub struct StreamImage {
    pub image: Image,
    pub meta: Download,
    pub rootfs: Option<Download>,
}

/// An alias of the stream: name, target fingerprint, image type and architecture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamAlias {
    pub name: String,
    pub target: String,
    pub kind: String,
    pub architecture: String,
}

/// Servers whose aliases lose their OS prefix (`ubuntu/18.04` is `18.04` on `ubuntu:`).
const URL_DEFAULT_OS: &[(&str, &str)] = &[("https://cloud-images.ubuntu.com", "ubuntu")];

/// Rootfs item types paired with a metadata tarball, in LXD's order of preference.
const ROOTFS_TYPES: &[&str] = &[
    "squashfs",
    "root.tar.xz",
    "disk-kvm.img",
    "uefi1.img",
    "disk1.img",
];

/// The kernel's name of a Debian/Go architecture, as LXD's `osarch`; None when unknown.
pub fn kernel_architecture(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "amd64" | "x86_64" => "x86_64",
        "i386" | "i686" => "i686",
        "arm64" | "aarch64" => "aarch64",
        "armhf" | "armel" | "armv7l" | "arm" => "armv7l",
        "ppc64el" | "ppc64le" => "ppc64le",
        "ppc" | "powerpc" => "ppc",
        "ppc64" | "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "mips" => "mips",
        "mips64" => "mips64",
        _ => return None,
    })
}

/// `20240101_13:00` -> `2024-01-01T00:00:00Z`: LXD uses the first eight digits as the date.
fn version_date(name: &str) -> Option<String> {
    let d = name.get(..8)?;
    if !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m, day) = (&d[..4], &d[4..6], &d[6..8]);
    let (mi, di): (u32, u32) = (m.parse().ok()?, day.parse().ok()?);
    if !(1..=12).contains(&mi) || !(1..=31).contains(&di) {
        return None;
    }
    Some(format!("{y}-{m}-{day}T00:00:00Z"))
}

fn eol_date(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    ok.then(|| format!("{s}T00:00:00Z"))
}

fn is_meta_type(ftype: &str) -> bool {
    // Incus servers name the same files incus.tar.xz / incus_combined.tar.gz.
    ftype == "lxd.tar.xz" || ftype == "incus.tar.xz"
}

fn is_combined_type(ftype: &str) -> bool {
    ftype == "lxd_combined.tar.gz" || ftype == "incus_combined.tar.gz"
}

impl Products {
    /// The images of this products file (LXD `Products.ToLXD`), with their files.
    pub fn to_images(&self) -> Vec<StreamImage> {
        let mut out = Vec::new();
        for product in self.products.values() {
            let Some(architecture) = kernel_architecture(&product.arch) else {
                continue;
            };
            for (name, version) in &product.versions {
                let Some(created) = version_date(name) else {
                    continue;
                };
                let add = |meta: &Item, root: Option<&Item>| -> Option<StreamImage> {
                    let fingerprint = match root.map(|r| r.ftype.as_str()) {
                        None => meta.sha256.clone(),
                        Some("root.tar.xz") if !meta.combined_rootxz_sha256.is_empty() => {
                            meta.combined_rootxz_sha256.clone()
                        }
                        Some("root.tar.xz") => meta.combined_sha256.clone(),
                        Some("squashfs") => meta.combined_squashfs_sha256.clone(),
                        Some("disk-kvm.img") => meta.combined_disk_kvm_img_sha256.clone(),
                        Some(_) => String::new(),
                    };
                    if fingerprint.is_empty() || meta.path.is_empty() {
                        return None;
                    }
                    let filename = meta.path.rsplit('/').next().unwrap_or_default();
                    let mut description =
                        format!("{} {} {}", product.os, product.release_title, product.arch);
                    if !version.label.is_empty() {
                        description = format!("{description} ({})", version.label);
                    }
                    description = format!("{description} ({name})");
                    let mut props = BTreeMap::new();
                    props.insert("os".to_string(), product.os.clone());
                    props.insert("release".to_string(), product.release.clone());
                    props.insert("version".to_string(), product.version.clone());
                    props.insert("architecture".to_string(), product.arch.clone());
                    props.insert("label".to_string(), version.label.clone());
                    props.insert("serial".to_string(), name.clone());
                    props.insert("description".to_string(), description);
                    for (k, v) in &product.lxd_requirements {
                        props.insert(format!("requirements.{k}"), v.clone());
                    }
                    if !product.variant.is_empty() {
                        props.insert("variant".to_string(), product.variant.clone());
                    }
                    let mut kind = "container";
                    match root {
                        Some(r) => {
                            props.insert("type".to_string(), r.ftype.clone());
                            if matches!(
                                r.ftype.as_str(),
                                "disk1.img" | "disk-kvm.img" | "uefi1.img"
                            ) {
                                kind = "virtual-machine";
                            }
                        }
                        None => {
                            props.insert("type".to_string(), "tar.gz".to_string());
                        }
                    }
                    props.retain(|_, v| !v.is_empty());
                    let aliases = product
                        .aliases
                        .split(',')
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(|a| ImageAlias {
                            name: a.to_string(),
                            description: String::new(),
                        })
                        .collect();
                    let size = meta.size + root.map(|r| r.size).unwrap_or(0);
                    let image = Image {
                        architecture: architecture.to_string(),
                        public: true,
                        size,
                        created_at: created.clone(),
                        uploaded_at: created.clone(),
                        last_used_at: crate::ZERO_TIME.to_string(),
                        expires_at: eol_date(&product.support_eol)
                            .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string()),
                        filename: filename.to_string(),
                        fingerprint: fingerprint.to_ascii_lowercase(),
                        properties: props,
                        aliases,
                        kind: kind.to_string(),
                        ..Default::default()
                    };
                    let dl = |i: &Item| Download {
                        path: i.path.clone(),
                        sha256: i.sha256.to_ascii_lowercase(),
                        size: i.size,
                    };
                    Some(StreamImage {
                        image,
                        meta: dl(meta),
                        rootfs: root.map(dl),
                    })
                };
                for item in version.items.values() {
                    if is_combined_type(&item.ftype) {
                        out.extend(add(item, None));
                    }
                    if is_meta_type(&item.ftype) {
                        for sub in version.items.values() {
                            if ROOTFS_TYPES.contains(&sub.ftype.as_str()) {
                                out.extend(add(item, Some(sub)));
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// All images and aliases of a server, as LXD's simplestreams client presents them.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub images: Vec<StreamImage>,
    pub aliases: Vec<StreamAlias>,
}

fn prop<'a>(i: &'a Image, k: &str) -> &'a str {
    i.properties.get(k).map(String::as_str).unwrap_or("")
}

/// LXD's `sortedImages`: by os, release, variant, newest serial first, architecture, then the
/// preferred rootfs type.
fn image_order(a: &Image, b: &Image) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    for k in ["os", "release", "variant", "serial", "architecture"] {
        let (x, y) = (prop(a, k), prop(b, k));
        if x == y {
            continue;
        }
        if x.is_empty() {
            return Ordering::Greater;
        }
        if y.is_empty() {
            return Ordering::Less;
        }
        return if k == "serial" { y.cmp(x) } else { x.cmp(y) };
    }
    let score = |i: &Image| {
        ROOTFS_TYPES
            .iter()
            .position(|t| *t == prop(i, "type"))
            .unwrap_or(0)
    };
    score(a).cmp(&score(b))
}

impl Catalog {
    /// Build the catalog of a server at `url` from its products files; `local_arch` is the
    /// kernel architecture that gets the short alias names.
    pub fn new(products: &[Products], url: &str, local_arch: &str) -> Catalog {
        let mut images: Vec<StreamImage> = products.iter().flat_map(|p| p.to_images()).collect();
        images.sort_by(|a, b| image_order(&a.image, &b.image));
        let default_os = URL_DEFAULT_OS
            .iter()
            .find(|(u, _)| url.starts_with(u))
            .map(|(_, os)| format!("{os}/"));
        let mut aliases: Vec<StreamAlias> = Vec::new();
        for si in &mut images {
            let img = &mut si.image;
            let given = std::mem::take(&mut img.aliases);
            let arch_prop = prop(img, "architecture").to_string();
            for entry in given {
                for (name, short) in [
                    (entry.name.clone(), true),
                    (format!("{}/{arch_prop}", entry.name), false),
                ] {
                    let name = match &default_os {
                        Some(p) => name.strip_prefix(p.as_str()).unwrap_or(&name).to_string(),
                        None => name,
                    };
                    let dup = aliases.iter().any(|a| {
                        a.name == name && a.kind == img.kind && a.architecture == img.architecture
                    });
                    if dup {
                        continue;
                    }
                    aliases.push(StreamAlias {
                        name: name.clone(),
                        target: img.fingerprint.clone(),
                        kind: img.kind.clone(),
                        architecture: img.architecture.clone(),
                    });
                    if !short || img.architecture == local_arch {
                        img.aliases.push(ImageAlias {
                            name,
                            description: String::new(),
                        });
                    }
                }
            }
        }
        // Native architecture first, as LXD's sortedAliases does before picking a match.
        aliases.sort_by_key(|a| a.architecture != local_arch);
        Catalog { images, aliases }
    }

    /// The alias `name` of type `kind` ("" for any); LXD's `GetAlias`.
    pub fn alias(&self, kind: &str, name: &str) -> Result<&StreamAlias, String> {
        let mut found: Option<&StreamAlias> = None;
        for a in &self.aliases {
            if a.name != name || (!kind.is_empty() && a.kind != kind) {
                continue;
            }
            match found {
                Some(m) if m.kind != a.kind => {
                    return Err(format!("More than one match for alias '{name}'"));
                }
                Some(_) => {}
                None => found = Some(a),
            }
        }
        found.ok_or_else(|| format!("Alias '{name}' doesn't exist"))
    }

    /// The image whose fingerprint starts with `prefix`; LXD's `GetImage`.
    pub fn image(&self, prefix: &str) -> Result<&StreamImage, String> {
        let prefix = prefix.to_ascii_lowercase();
        let mut matches = self
            .images
            .iter()
            .filter(|i| !prefix.is_empty() && i.image.fingerprint.starts_with(&prefix));
        match (matches.next(), matches.next()) {
            (None, _) => Err("The requested image couldn't be found".to_string()),
            (Some(_), Some(_)) => {
                Err("More than one match for the provided partial fingerprint".to_string())
            }
            (Some(i), None) => Ok(i),
        }
    }

    /// An alias, else a fingerprint prefix (how LXD's daemon resolves `source.alias`).
    pub fn resolve(&self, kind: &str, name: &str) -> Result<&StreamImage, String> {
        match self.alias(kind, name) {
            Ok(a) => self.image(&a.target),
            Err(_) => self.image(name),
        }
    }

    /// The aliases as `GET /1.0/images/aliases?recursion=1` would list them (deduplicated by
    /// name and type).
    pub fn alias_entries(&self) -> Vec<ImageAliasesEntry> {
        let mut out: Vec<ImageAliasesEntry> = Vec::new();
        for a in &self.aliases {
            if out.iter().any(|e| e.name == a.name && e.kind == a.kind) {
                continue;
            }
            out.push(ImageAliasesEntry {
                name: a.name.clone(),
                description: String::new(),
                target: a.target.clone(),
                kind: a.kind.clone(),
            });
        }
        out
    }
}

/// Whether a path taken from an index stays below the server URL: relative, no `..`, no
/// scheme, no query. A stream must not send us elsewhere.
pub fn safe_relative_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains("://")
        && !path.contains('\\')
        && !path.contains('?')
        && !path.contains('#')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != ".." && c != ".")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn products() -> Products {
        serde_json::from_str(
            r#"{
  "content_id": "images", "datatype": "image-downloads", "format": "products:1.0",
  "products": {
    "debian:bookworm:amd64:default": {
      "aliases": "debian/bookworm/default,debian/bookworm,debian/12/default,debian/12",
      "arch": "amd64", "os": "Debian", "release": "bookworm", "release_title": "bookworm",
      "variant": "default",
      "versions": {
        "20240101_05:24": {"items": {
          "lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": "images/debian/old/lxd.tar.xz", "sha256": "aa", "size": 10,
                         "combined_squashfs_sha256": "1111", "combined_rootxz_sha256": "2222"},
          "root.squashfs": {"ftype": "squashfs", "path": "images/debian/old/rootfs.squashfs", "sha256": "bb", "size": 100}
        }},
        "20240202_05:24": {"items": {
          "lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": "images/debian/new/lxd.tar.xz", "sha256": "cc", "size": 10,
                         "combined_squashfs_sha256": "3333", "combined_rootxz_sha256": "4444"},
          "root.squashfs": {"ftype": "squashfs", "path": "images/debian/new/rootfs.squashfs", "sha256": "dd", "size": 100},
          "root.tar.xz": {"ftype": "root.tar.xz", "path": "images/debian/new/rootfs.tar.xz", "sha256": "ee", "size": 90}
        }}
      }
    },
    "debian:bookworm:arm64:default": {
      "aliases": "debian/bookworm,debian/12", "arch": "arm64", "os": "Debian", "release": "bookworm",
      "release_title": "bookworm", "variant": "default",
      "versions": {"20240202_05:24": {"items": {
          "lxd_combined.tar.gz": {"ftype": "lxd_combined.tar.gz", "path": "images/arm/c.tar.gz", "sha256": "5555", "size": 7}
      }}}
    },
    "bogus:arch": {"aliases": "x", "arch": "nonsense", "versions": {"20240101": {"items": {}}}}
  }
}"#,
        )
        .unwrap()
    }

    #[test]
    fn newest_version_and_preferred_rootfs_get_the_aliases() {
        let c = Catalog::new(&[products()], "https://images.example", "x86_64");
        assert_eq!(c.images.len(), 4);
        let a = c.alias("", "debian/12").unwrap();
        // Newest serial, squashfs preferred over root.tar.xz.
        assert_eq!(a.target, "3333");
        assert_eq!(
            c.alias("container", "debian/bookworm").unwrap().target,
            "3333"
        );
        assert_eq!(c.alias("", "debian/12/amd64").unwrap().target, "3333");
        assert_eq!(c.alias("", "debian/12/arm64").unwrap().target, "5555");
        assert!(c.alias("virtual-machine", "debian/12").is_err());
        assert_eq!(
            c.alias("", "nope").unwrap_err(),
            "Alias 'nope' doesn't exist"
        );
        let img = c.resolve("", "debian/12").unwrap();
        assert_eq!(img.meta.path, "images/debian/new/lxd.tar.xz");
        assert_eq!(
            img.rootfs.as_ref().unwrap().path,
            "images/debian/new/rootfs.squashfs"
        );
        assert_eq!(img.image.size, 110);
        assert_eq!(img.image.architecture, "x86_64");
        assert_eq!(img.image.created_at, "2024-02-02T00:00:00Z");
        assert_eq!(
            img.image.properties["description"],
            "Debian bookworm amd64 (20240202_05:24)"
        );
        assert_eq!(img.image.properties["type"], "squashfs");
        // Short aliases only for the local architecture; arch-qualified ones for all.
        let names: Vec<&str> = img.image.aliases.iter().map(|a| a.name.as_str()).collect();
        assert!(names.contains(&"debian/12"), "{names:?}");
        assert!(names.contains(&"debian/12/amd64"), "{names:?}");
        let arm = c.image("5555").unwrap();
        let names: Vec<&str> = arm.image.aliases.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["debian/bookworm/arm64", "debian/12/arm64"]);
        assert!(arm.rootfs.is_none());
        assert_eq!(arm.image.properties["type"], "tar.gz");
        // Fingerprint prefixes resolve too; the old version is still listed by fingerprint.
        assert_eq!(c.resolve("", "11").unwrap().image.fingerprint, "1111");
        assert!(c.image("").is_err());
    }

    #[test]
    fn cloud_images_lose_the_ubuntu_prefix() {
        let mut p = products();
        for pr in p.products.values_mut() {
            pr.aliases = "ubuntu/18.04,bionic".into();
        }
        let c = Catalog::new(
            &[p.clone()],
            "https://cloud-images.ubuntu.com/releases",
            "x86_64",
        );
        assert!(c.alias("", "18.04").is_ok());
        assert!(c.alias("", "bionic").is_ok());
        let c = Catalog::new(&[p], "https://127.0.0.1:8443/ubuntu", "x86_64");
        assert!(c.alias("", "ubuntu/18.04").is_ok());
        assert!(c.alias("", "18.04").is_err());
    }

    #[test]
    fn paths_stay_below_the_server() {
        assert!(safe_relative_path("images/a/lxd.tar.xz"));
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "images/../../x",
            "https://evil/x",
            "a//b",
            "a/./b",
            "a?x=1",
        ] {
            assert!(!safe_relative_path(bad), "{bad}");
        }
    }
}
