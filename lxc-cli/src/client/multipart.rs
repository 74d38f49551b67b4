//! multipart/form-data as the images API uses it: split image uploads (`metadata` then
//! `rootfs`) and split image exports. Both directions stream; nothing is held whole in memory.

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, stream};
use sha2::Digest;

use super::Error;

/// A boundary in the shape Go's `multipart.Writer` uses (60 hex characters).
pub fn new_boundary() -> String {
    let mut h = sha2::Sha256::new();
    h.update(std::process::id().to_le_bytes());
    h.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .to_le_bytes(),
    );
    hex::encode(h.finalize())[..60].to_string()
}

/// The header block that opens a file part.
pub fn part_header(boundary: &str, first: bool, name: &str, filename: &str) -> String {
    let lead = if first { "" } else { "\r\n" };
    format!(
        "{lead}--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
}

pub fn closing(boundary: &str) -> String {
    format!("\r\n--{boundary}--\r\n")
}

type ByteStream = std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// A multipart body made of named file parts, each given as a byte stream.
pub fn body(boundary: &str, parts: Vec<(String, String, ByteStream)>) -> ByteStream {
    let mut out: ByteStream = Box::pin(stream::empty());
    for (i, (name, filename, data)) in parts.into_iter().enumerate() {
        let head = Bytes::from(part_header(boundary, i == 0, &name, &filename));
        out = Box::pin(out.chain(stream::once(async move { Ok(head) })).chain(data));
    }
    let tail = Bytes::from(closing(boundary));
    Box::pin(out.chain(stream::once(async move { Ok(tail) })))
}

/// One part of a multipart response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartHeader {
    pub name: String,
    pub filename: String,
}

/// Pull the `boundary` parameter out of a Content-Type.
pub fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k.eq_ignore_ascii_case("boundary")).then(|| v.trim_matches('"').to_string())
    })
}

/// A `filename` parameter of a Content-Disposition.
pub fn filename_of(disposition: &str) -> Option<String> {
    disposition.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k.eq_ignore_ascii_case("filename")).then(|| v.trim_matches('"').to_string())
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_part_header(block: &[u8]) -> PartHeader {
    let text = String::from_utf8_lossy(block);
    let mut h = PartHeader {
        name: String::new(),
        filename: String::new(),
    };
    for line in text.split("\r\n") {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("content-disposition") {
            for p in v.split(';').skip(1) {
                if let Some((pk, pv)) = p.trim().split_once('=') {
                    let pv = pv.trim_matches('"').to_string();
                    match pk {
                        "name" => h.name = pv,
                        "filename" => h.filename = pv,
                        _ => {}
                    }
                }
            }
        }
    }
    h
}

/// Stream the parts of a multipart body, calling `on_start` at each part header and `on_data`
/// with each chunk of its content.
pub async fn read_parts<S, E>(
    mut input: S,
    boundary: &str,
    mut on_start: impl FnMut(&PartHeader) -> Result<(), Error>,
    mut on_data: impl FnMut(&[u8]) -> Result<(), Error>,
) -> Result<(), Error>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let delim = format!("\r\n--{boundary}").into_bytes();
    // Prefix CRLF so that the first boundary looks like the others.
    let mut buf = BytesMut::from(&b"\r\n"[..]);
    let mut in_part = false;
    let mut eof = false;
    loop {
        if in_part {
            if let Some(pos) = find(&buf, &delim) {
                on_data(&buf[..pos])?;
                let _ = buf.split_to(pos);
                in_part = false;
                continue;
            }
            // Keep a tail that might hold the start of the delimiter.
            let keep = delim.len().saturating_sub(1);
            if buf.len() > keep {
                let n = buf.len() - keep;
                on_data(&buf[..n])?;
                let _ = buf.split_to(n);
            }
        } else if let Some(pos) = find(&buf, &delim) {
            let after = pos + delim.len();
            if buf.len() >= after + 2 {
                if &buf[after..after + 2] == b"--" {
                    return Ok(());
                }
                if let Some(end) = find(&buf[after..], b"\r\n\r\n") {
                    let header = parse_part_header(&buf[after..after + end]);
                    on_start(&header)?;
                    let _ = buf.split_to(after + end + 4);
                    in_part = true;
                    continue;
                }
            }
        }
        if eof {
            return Err(Error::Other("Truncated multipart response".into()));
        }
        match input.next().await {
            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
            Some(Err(e)) => return Err(Error::Http(e.to_string())),
            None => eof = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(s: ByteStream) -> Vec<u8> {
        let v: Vec<std::io::Result<Bytes>> = s.collect().await;
        v.into_iter().flat_map(|b| b.unwrap().to_vec()).collect()
    }

    #[tokio::test]
    async fn builds_the_body_go_builds() {
        let parts: Vec<(String, String, ByteStream)> = vec![
            (
                "metadata".into(),
                "meta.tar.xz".into(),
                Box::pin(stream::once(async { Ok(Bytes::from_static(b"META")) })),
            ),
            (
                "rootfs".into(),
                "rootfs.squashfs".into(),
                Box::pin(stream::once(async { Ok(Bytes::from_static(b"ROOT")) })),
            ),
        ];
        let b = collect(body("XX", parts)).await;
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "--XX\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"meta.tar.xz\"\r\nContent-Type: application/octet-stream\r\n\r\nMETA\r\n--XX\r\nContent-Disposition: form-data; name=\"rootfs\"; filename=\"rootfs.squashfs\"\r\nContent-Type: application/octet-stream\r\n\r\nROOT\r\n--XX--\r\n"
        );
    }

    #[tokio::test]
    async fn parses_parts_split_across_chunks() {
        let body = "--BB\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"m.tar\"\r\n\r\nhello meta\r\n--BB\r\nContent-Disposition: form-data; name=\"rootfs\"; filename=\"r.sq\"\r\n\r\nroot\r\n--Bdata\r\n--BB--\r\n";
        for chunk in [1usize, 3, 7, 1000] {
            let chunks: Vec<Result<Bytes, std::io::Error>> = body
                .as_bytes()
                .chunks(chunk)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let mut parts: Vec<(PartHeader, Vec<u8>)> = Vec::new();
            let cell = std::cell::RefCell::new(&mut parts);
            read_parts(
                stream::iter(chunks),
                "BB",
                |h| {
                    cell.borrow_mut().push((h.clone(), Vec::new()));
                    Ok(())
                },
                |d| {
                    if let Some(last) = cell.borrow_mut().last_mut() {
                        last.1.extend_from_slice(d);
                    }
                    Ok(())
                },
            )
            .await
            .unwrap();
            assert_eq!(parts.len(), 2, "chunk {chunk}");
            assert_eq!(parts[0].0.name, "metadata");
            assert_eq!(parts[0].0.filename, "m.tar");
            assert_eq!(parts[0].1, b"hello meta");
            assert_eq!(parts[1].0.name, "rootfs");
            assert_eq!(parts[1].1, b"root\r\n--Bdata");
        }
    }

    #[test]
    fn header_parameters() {
        assert_eq!(
            boundary_of("multipart/form-data; boundary=abc123").unwrap(),
            "abc123"
        );
        assert_eq!(
            filename_of("inline;filename=busybox.tar.xz").unwrap(),
            "busybox.tar.xz"
        );
        assert_eq!(
            filename_of("attachment; filename=\"a b.tar\"").unwrap(),
            "a b.tar"
        );
    }
}
