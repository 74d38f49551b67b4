//! Trusted client certificates and trust tokens (LXD `shared/api/certificate.go`).

use serde::{Deserialize, Serialize};

/// A trust store entry as `GET /1.0/certificates/<fingerprint>` returns it; `certificate` is PEM.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Certificate {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub restricted: bool,
    #[serde(deserialize_with = "crate::null_default")]
    pub projects: Vec<String>,
    pub certificate: String,
    pub fingerprint: String,
}

/// The writable part of a certificate (`PUT`/`PATCH /1.0/certificates/<fingerprint>`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CertificatePut {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub restricted: bool,
    #[serde(deserialize_with = "crate::null_default")]
    pub projects: Vec<String>,
    /// Base64 of the DER certificate (not PEM), as LXD's client sends it.
    pub certificate: String,
}

/// `POST /1.0/certificates`: add a certificate (given, or the TLS peer's), ask for a trust token
/// (`token: true`), or authenticate an untrusted client with `password` (the trust password, or
/// a token as the 5.0 client sends it) or `trust_token` (newer clients).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CertificatesPost {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub restricted: bool,
    pub projects: Option<Vec<String>>,
    pub certificate: String,
    pub password: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub trust_token: String,
    pub token: bool,
}

/// The decoded form of a trust token (base64 of this JSON), what `lxc remote add NAME TOKEN`
/// needs to find and authenticate to the server.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct CertificateAddToken {
    pub client_name: String,
    pub fingerprint: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub addresses: Vec<String>,
    pub secret: String,
    pub expires_at: String,
}

/// What `lxc config trust list` shows of a certificate: subject common name and validity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateSummary {
    pub common_name: String,
    /// RFC 3339.
    pub not_before: String,
    pub not_after: String,
}

/// Read the subject CN and validity of a DER certificate (a minimal DER walk over
/// `tbsCertificate`: version, serial, signature, issuer, validity, subject).
pub fn summarize_der(der: &[u8]) -> Option<CertificateSummary> {
    let (_, cert, _) = der_tlv(der)?;
    let (_, tbs, _) = der_tlv(cert)?;
    let mut rest = tbs;
    let mut fields = Vec::new();
    while !rest.is_empty() && fields.len() < 7 {
        let (tag, body, next) = der_tlv(rest)?;
        fields.push((tag, body));
        rest = next;
    }
    // Skip the optional [0] version.
    let fields: Vec<(u8, &[u8])> = if fields.first()?.0 == 0xa0 {
        fields[1..].to_vec()
    } else {
        fields
    };
    // serial, signature, issuer, validity, subject
    let (_, validity) = *fields.get(3)?;
    let (_, subject) = *fields.get(4)?;
    let (t1, nb, after) = der_tlv(validity)?;
    let (t2, na, _) = der_tlv(after)?;
    Some(CertificateSummary {
        common_name: common_name(subject).unwrap_or_default(),
        not_before: der_time(t1, nb)?,
        not_after: der_time(t2, na)?,
    })
}

fn der_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, hdr) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let body = b.get(hdr..hdr.checked_add(len)?)?;
    Some((tag, body, &b[hdr + len..]))
}

fn common_name(name: &[u8]) -> Option<String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    let mut rdns = name;
    let mut found = None;
    while !rdns.is_empty() {
        let (_, set, next) = der_tlv(rdns)?;
        rdns = next;
        let mut atvs = set;
        while !atvs.is_empty() {
            let (_, atv, n) = der_tlv(atvs)?;
            atvs = n;
            let (_, oid, v) = der_tlv(atv)?;
            if oid == CN {
                let (_, value, _) = der_tlv(v)?;
                found = Some(String::from_utf8_lossy(value).into_owned());
            }
        }
    }
    found
}

fn der_time(tag: u8, body: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(body).ok()?.trim_end_matches('Z');
    let full = match tag {
        // UTCTime: YYMMDDHHMMSS; years 50-99 are 19xx.
        0x17 if s.len() >= 12 => {
            let yy: u32 = s[..2].parse().ok()?;
            let century = if yy >= 50 { "19" } else { "20" };
            format!("{century}{s}")
        }
        0x18 if s.len() >= 14 => s.to_string(),
        _ => return None,
    };
    if !full[..14].bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(format!(
        "{}-{}-{}T{}:{}:{}Z",
        &full[0..4],
        &full[4..6],
        &full[6..8],
        &full[8..10],
        &full[10..12],
        &full[12..14]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarizes_an_lxd_client_certificate() {
        // The client.crt LXD 5.0.2's `lxc remote add` generated (base64 DER).
        let b64 = "MIIB0DCCAVegAwIBAgIRALwK/gikGmTFlRmx4krvjgQwCgYIKoZIzj0EAwMwMDEcMBoGA1UEChMTbGludXhjb250YWluZXJzLm9yZzEQMA4GA1UEAwwHcm9vdEB2bTAeFw0yNjExMjgwMTExMDZaFw0zNjExMjUwMTExMDZaMDAxHDAaBgNVBAoTE2xpbnV4Y29udGFpbmVycy5vcmcxEDAOBgNVBAMMB3Jvb3RAdm0wdjAQBgcqhkjOPQIBBgUrgQQAIgNiAAR43AbBWfkY03MiBS0T6ZsMLSmEY3If0LeymBq/YW5+Lbo7F4MgHyQkPTrGILWB2bSEXjtc0thV2bZ7ZhAj4BxjKiNprZs7UuUf7Ova+pYWNqKb2/FiyfHtE+lWtrNN19SjNTAzMA4GA1UdDwEB/wQEAwIFoDATBgNVHSUEDDAKBggrBgEFBQcDAjAMBgNVHRMBAf8EAjAAMAoGCCqGSM49BAMDA2cAMGQCMA06oRsaASe7VxbvWyX9kIWwP1fst2Xj/YzSbO020pHspbdxeHab1csmeo107IIlugIwC4JQUalaat6dugecaKhttH/LcirJ2uzj8zUHaOCWIebQI9x0tiZDROSUGo61pLm+";
        let der = decode_b64(b64);
        let s = summarize_der(&der).unwrap();
        assert_eq!(s.common_name, "root@vm");
        assert_eq!(s.not_before, "2026-11-28T01:11:06Z");
        assert_eq!(s.not_after, "2036-11-25T01:11:06Z");
        assert!(summarize_der(b"\x30\x03\x01").is_none());
    }

    fn decode_b64(s: &str) -> Vec<u8> {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for c in s.bytes().filter(|c| *c != b'=') {
            acc = (acc << 6) | A.iter().position(|x| *x == c).unwrap() as u32;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        out
    }
}
