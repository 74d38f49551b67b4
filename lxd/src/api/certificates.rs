//! `/1.0/certificates`: the trust store. Trusted callers list, add (a given certificate or a
//! trust token), update and remove entries; an untrusted HTTPS client adds its own certificate
//! with the trust password or a token (the 5.0 client sends a token in `password`).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use lxd_api::certificate::{Certificate, CertificatePut, CertificatesPost, summarize_der};
use std::collections::HashMap;

use super::{AppState, params};
use crate::db::certificates::CertificateRow;
use crate::error::{ApiError, Result};
use crate::response::{
    ApiResult, Json, async_op, check_etag, created, empty, etag_of, sync, sync_etag,
};
use crate::trust::Caller;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/1.0/certificates", get(list).post(add))
        .route(
            "/1.0/certificates/{fp}",
            get(show).put(replace).patch(patch).delete(delete),
        )
}

fn to_api(c: &CertificateRow) -> Certificate {
    Certificate {
        name: c.name.clone(),
        kind: c.kind.clone(),
        restricted: c.restricted,
        projects: vec![],
        certificate: c.certificate.clone(),
        fingerprint: c.fingerprint.clone(),
    }
}

async fn list(State(d): State<AppState>, q: Query<HashMap<String, String>>) -> ApiResult {
    let p = params(q)?;
    let certs = d.db.certificates()?;
    if p.recursion > 0 {
        Ok(sync(certs.iter().map(to_api).collect::<Vec<_>>()))
    } else {
        Ok(sync(
            certs
                .iter()
                .map(|c| format!("/1.0/certificates/{}", c.fingerprint))
                .collect::<Vec<_>>(),
        ))
    }
}

fn check_type(kind: &str) -> Result<String> {
    match kind {
        "" | "client" => Ok("client".into()),
        "metrics" => Ok("metrics".into()),
        other => Err(ApiError::bad_request(format!(
            "Unknown certificate type \"{other}\""
        ))),
    }
}

async fn add(
    State(d): State<AppState>,
    caller: Caller,
    Json(req): Json<CertificatesPost>,
) -> ApiResult {
    if req.token && !req.certificate.is_empty() {
        return Err(ApiError::bad_request(
            "Can't use certificate if token is requested",
        ));
    }
    if req.token && !matches!(req.kind.as_str(), "" | "client") {
        return Err(ApiError::bad_request(
            "Tokens can only be issued for client certificates",
        ));
    }
    let mut req = req;
    if !caller.is_trusted() {
        req = authenticate(&d, req)?;
    } else if req.token {
        return issue_token(&d, req).await;
    }
    let kind = check_type(&req.kind)?;
    let der = if !req.certificate.is_empty() && caller.is_trusted() {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(req.certificate.trim())
            .map_err(|e| ApiError::bad_request(format!("Invalid certificate material: {e}")))?
    } else {
        match &caller {
            Caller::Remote(r) => r
                .cert
                .as_ref()
                .map(|c| c.to_vec())
                .ok_or_else(|| ApiError::bad_request("No client certificate provided"))?,
            Caller::Local => {
                return Err(ApiError::bad_request("Can't use TLS data on non-TLS link"));
            }
        }
    };
    let summary =
        summarize_der(&der).ok_or_else(|| ApiError::bad_request("Invalid certificate material"))?;
    let fingerprint = crate::tls::fingerprint(&der);
    let name = if !req.name.is_empty() {
        req.name.clone()
    } else if !summary.common_name.is_empty() {
        summary.common_name.clone()
    } else {
        match &caller {
            Caller::Remote(r) => r.addr.ip().to_string(),
            Caller::Local => String::new(),
        }
    };
    d.db.certificate_create(&CertificateRow {
        fingerprint: fingerprint.clone(),
        kind,
        name,
        certificate: crate::tls::cert_to_pem(&der),
        restricted: req.restricted,
    })?;
    let url = format!("/1.0/certificates/{fingerprint}");
    d.events
        .lifecycle("certificate-created", &url, serde_json::json!({}));
    Ok(created(&url))
}

/// An untrusted client proves itself with a trust token (consumed) or the trust password;
/// the request is then what the token was issued for, or a plain client certificate.
fn authenticate(d: &AppState, req: CertificatesPost) -> Result<CertificatesPost> {
    let secret = if req.trust_token.is_empty() {
        req.password.clone()
    } else {
        req.trust_token.clone()
    };
    if secret.is_empty() {
        return Err(ApiError::forbidden("not authorized"));
    }
    if let Some(token) = crate::trust::decode_token(&secret) {
        let issued = crate::trust::redeem_token(d, &token.secret)
            .ok_or_else(|| ApiError::forbidden("No matching certificate add operation found"))?;
        return Ok(CertificatesPost {
            name: issued.name,
            kind: issued.kind,
            restricted: issued.restricted,
            projects: issued.projects,
            ..Default::default()
        });
    }
    let stored =
        d.db.server_config_get("core.trust_password")?
            .unwrap_or_default();
    if stored.is_empty() || !crate::trust::check_password(&stored, &secret) {
        tracing::warn!("Bad trust password");
        return Err(ApiError::forbidden("not authorized"));
    }
    Ok(CertificatesPost {
        name: req.name,
        kind: "client".into(),
        ..Default::default()
    })
}

/// `lxc config trust add --name X`: a token operation holding a secret, our fingerprint and
/// the addresses we listen on; redeemed once by `lxc remote add NAME TOKEN`.
async fn issue_token(d: &AppState, req: CertificatesPost) -> ApiResult {
    let id = crate::endpoints::identity(d)?;
    let addresses = match crate::endpoints::https_address(d).await {
        Some(a) => crate::trust::listen_addresses(&a).await,
        None => vec![],
    };
    let request = CertificatesPost {
        name: req.name.clone(),
        kind: "client".into(),
        restricted: req.restricted,
        projects: Some(req.projects.clone().unwrap_or_default()),
        token: true,
        ..Default::default()
    };
    let metadata = serde_json::json!({
        "secret": crate::operations::random_secret(),
        "fingerprint": id.fingerprint,
        "addresses": addresses,
        "request": request,
    });
    let op = d
        .ops
        .start_token("Executing operation", Default::default(), metadata);
    Ok(async_op(&op.to_api()))
}

fn cert_etag(c: &CertificateRow) -> String {
    etag_of(&(&c.name, &c.kind, &c.restricted, &c.certificate))
}

async fn show(State(d): State<AppState>, Path(fp): Path<String>) -> ApiResult {
    let c = d.db.certificate_by_prefix(&fp)?;
    Ok(sync_etag(to_api(&c), &cert_etag(&c)))
}

async fn replace(
    State(d): State<AppState>,
    Path(fp): Path<String>,
    headers: HeaderMap,
    Json(put): Json<CertificatePut>,
) -> ApiResult {
    let mut c = d.db.certificate_by_prefix(&fp)?;
    check_etag(&headers, &cert_etag(&c))?;
    c.name = put.name;
    c.kind = check_type(&put.kind)?;
    c.restricted = put.restricted;
    d.db.certificate_update(&c)?;
    d.events.lifecycle(
        "certificate-updated",
        &format!("/1.0/certificates/{}", c.fingerprint),
        serde_json::json!({}),
    );
    Ok(empty())
}

async fn patch(
    State(d): State<AppState>,
    Path(fp): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let mut c = d.db.certificate_by_prefix(&fp)?;
    check_etag(&headers, &cert_etag(&c))?;
    let v: serde_json::Value = crate::response::parse_json(&body)?;
    if let Some(n) = v.get("name").and_then(|x| x.as_str()) {
        c.name = n.to_string();
    }
    if let Some(t) = v.get("type").and_then(|x| x.as_str()) {
        c.kind = check_type(t)?;
    }
    if let Some(r) = v.get("restricted").and_then(|x| x.as_bool()) {
        c.restricted = r;
    }
    d.db.certificate_update(&c)?;
    Ok(empty())
}

async fn delete(State(d): State<AppState>, Path(fp): Path<String>) -> ApiResult {
    let c = d.db.certificate_by_prefix(&fp)?;
    d.db.certificate_delete(&c.fingerprint)?;
    d.events.lifecycle(
        "certificate-deleted",
        &format!("/1.0/certificates/{}", c.fingerprint),
        serde_json::json!({}),
    );
    Ok(empty())
}
