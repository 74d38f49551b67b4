//! `config trust ...`: the server's trust store. `add` without a certificate asks for a trust
//! token (printed for `lxc remote add NAME TOKEN`), with one adds it; `list`, `list-tokens`,
//! `remove`, `revoke-token`, `show`.

use anyhow::bail;
use clap::Subcommand;
use lxd_api::certificate::{Certificate, CertificatesPost, summarize_der};
use reqwest::Method;

use super::print_out;
use crate::client::esc;
use crate::{Ctx, output};

#[derive(Debug, Subcommand)]
pub enum TrustCmd {
    /// Add new trusted client
    Add {
        #[arg(value_name = "[<remote>:] [<cert>]")]
        args: Vec<String>,
        /// Alternative certificate name
        #[arg(long, default_value = "")]
        name: String,
        /// List of projects to restrict the certificate to
        #[arg(long, default_value = "")]
        projects: String,
        /// Restrict the certificate to one or more projects
        #[arg(long)]
        restricted: bool,
        /// Type of certificate
        #[arg(long = "type", default_value = "client")]
        kind: String,
    },
    /// List trusted clients
    #[command(visible_alias = "ls")]
    List {
        #[arg(value_name = "[<remote>:]")]
        remote: Option<String>,
        /// Format (csv|json|table|yaml|compact)
        #[arg(short, long, default_value = "table")]
        format: String,
    },
    /// List all active certificate add tokens
    ListTokens {
        #[arg(value_name = "[<remote>:]")]
        remote: Option<String>,
        /// Format (csv|json|table|yaml|compact)
        #[arg(short, long, default_value = "table")]
        format: String,
    },
    /// Remove trusted client
    #[command(visible_alias = "rm")]
    Remove {
        #[arg(value_name = "[<remote>:]<fingerprint>")]
        fingerprint: String,
    },
    /// Revoke certificate add token
    RevokeToken {
        #[arg(value_name = "[<remote>:]<name>")]
        name: String,
    },
    /// Show trust configurations
    Show {
        #[arg(value_name = "[<remote>:]<fingerprint>")]
        fingerprint: String,
    },
}

/// `Nov 28, 2026 at 1:11am (UTC)`.
fn long_date(rfc3339: &str) -> String {
    output::parse_time(rfc3339)
        .map(|t| {
            t.to_zoned_datetime(jiff::tz::TimeZone::UTC)
                .strftime("%b %-d, %Y at %-I:%M%P (UTC)")
                .to_string()
        })
        .unwrap_or_default()
}

fn der_of(pem: &str) -> Option<Vec<u8>> {
    crate::client::tls::parse_cert_pem(pem)
        .ok()
        .map(|d| d.as_ref().to_vec())
}

pub async fn run(ctx: &Ctx, cmd: TrustCmd) -> anyhow::Result<()> {
    match cmd {
        TrustCmd::Add {
            args,
            name,
            projects,
            restricted,
            kind,
        } => {
            super::check_args(&args, 0, Some(2))?;
            let (remote, cert) = match args.as_slice() {
                [] => (ctx.conf.default_remote.clone(), None),
                [a] if a.ends_with(':') => (ctx.parse_remote(a)?.0, None),
                [a] => (ctx.conf.default_remote.clone(), Some(a.clone())),
                [r, c] => (ctx.parse_remote(r)?.0, Some(c.clone())),
                _ => unreachable!(),
            };
            let client = ctx.client(&remote)?;
            let projects: Option<Vec<String>> =
                (!projects.is_empty()).then(|| projects.split(',').map(str::to_string).collect());
            match cert {
                Some(path) => {
                    let pem = std::fs::read_to_string(&path).map_err(|e| {
                        crate::client::io_error("open", std::path::Path::new(&path), &e)
                    })?;
                    let der = der_of(&pem)
                        .ok_or_else(|| anyhow::anyhow!("Invalid certificate file {path}"))?;
                    use base64::Engine;
                    let req = CertificatesPost {
                        name,
                        kind,
                        restricted,
                        projects,
                        certificate: base64::engine::general_purpose::STANDARD.encode(der),
                        ..Default::default()
                    };
                    client
                        .send(Method::POST, "/1.0/certificates", Some(&req), None)
                        .await?;
                }
                None => {
                    if name.is_empty() {
                        bail!("A client name must be provided");
                    }
                    let req = CertificatesPost {
                        name: name.clone(),
                        kind: "client".into(),
                        restricted,
                        projects,
                        token: true,
                        ..Default::default()
                    };
                    let op = client
                        .operation(Method::POST, "/1.0/certificates", Some(&req), None)
                        .await?;
                    let token = token_of(&op.op).ok_or_else(|| {
                        anyhow::anyhow!(
                            "Failed converting token operation to certificate add token"
                        )
                    })?;
                    if !ctx.global.quiet {
                        println!("Client {name} certificate add token:");
                    }
                    println!("{}", encode_token(&token));
                }
            }
            Ok(())
        }
        TrustCmd::List { remote, format } => {
            let format = super::format(&format)?;
            let remote = match remote {
                Some(r) => ctx.parse_remote(&r)?.0,
                None => ctx.conf.default_remote.clone(),
            };
            let client = ctx.client(&remote)?;
            let certs: Vec<Certificate> = client.get("/1.0/certificates?recursion=1").await?;
            let mut rows = Vec::new();
            for c in &certs {
                let s = der_of(&c.certificate)
                    .and_then(|d| summarize_der(&d))
                    .unwrap_or_default();
                rows.push(vec![
                    c.kind.clone(),
                    c.name.clone(),
                    s.common_name,
                    c.fingerprint.chars().take(12).collect(),
                    long_date(&s.not_before),
                    long_date(&s.not_after),
                ]);
            }
            output::sort_rows(&mut rows);
            print_out(&output::render(
                format,
                &[
                    "TYPE",
                    "NAME",
                    "COMMON NAME",
                    "FINGERPRINT",
                    "ISSUE DATE",
                    "EXPIRY DATE",
                ],
                &rows,
                &certs,
            )?);
            Ok(())
        }
        TrustCmd::ListTokens { remote, format } => {
            let format = super::format(&format)?;
            let remote = match remote {
                Some(r) => ctx.parse_remote(&r)?.0,
                None => ctx.conf.default_remote.clone(),
            };
            let client = ctx.client(&remote)?;
            let tokens = tokens(&client).await?;
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|(_, t)| vec![t.client_name.clone(), encode_token(t), String::new()])
                .collect();
            let raw: Vec<_> = tokens.into_iter().map(|(_, t)| t).collect();
            print_out(&output::render(
                format,
                &["NAME", "TOKEN", "EXPIRES AT"],
                &rows,
                &raw,
            )?);
            Ok(())
        }
        TrustCmd::Remove { fingerprint } => {
            let (client, fp) = ctx.client_for(&fingerprint)?;
            client
                .send::<()>(
                    Method::DELETE,
                    &format!("/1.0/certificates/{}", esc(&fp)),
                    None,
                    None,
                )
                .await?;
            Ok(())
        }
        TrustCmd::RevokeToken { name } => {
            let (client, name) = ctx.client_for(&name)?;
            for (id, t) in tokens(&client).await? {
                if t.client_name == name {
                    client
                        .send::<()>(
                            Method::DELETE,
                            &format!("/1.0/operations/{}", esc(&id)),
                            None,
                            None,
                        )
                        .await?;
                    return Ok(());
                }
            }
            bail!("No certificate add token for member {name} on remote");
        }
        TrustCmd::Show { fingerprint } => {
            let (client, fp) = ctx.client_for(&fingerprint)?;
            let c: Certificate = client
                .get(&format!("/1.0/certificates/{}", esc(&fp)))
                .await?;
            print_out(&output::yaml(&c)?);
            Ok(())
        }
    }
}

/// The running trust-token operations and their tokens.
async fn tokens(
    client: &crate::client::Client,
) -> anyhow::Result<Vec<(String, lxd_api::certificate::CertificateAddToken)>> {
    let ops: serde_json::Value = client.get("/1.0/operations?recursion=1").await?;
    let mut out = Vec::new();
    for list in ops.as_object().into_iter().flat_map(|m| m.values()) {
        for op in list.as_array().into_iter().flatten() {
            let Ok(op) = serde_json::from_value::<lxd_api::Operation>(op.clone()) else {
                continue;
            };
            if op.class != "token" || op.status_code != lxd_api::StatusCode::Running {
                continue;
            }
            if let Some(t) = token_of(&op) {
                out.push((op.id.clone(), t));
            }
        }
    }
    Ok(out)
}

/// LXD's `Operation.ToCertificateAddToken`.
fn token_of(op: &lxd_api::Operation) -> Option<lxd_api::certificate::CertificateAddToken> {
    let m = &op.metadata;
    Some(lxd_api::certificate::CertificateAddToken {
        client_name: m.get("request")?.get("name")?.as_str()?.to_string(),
        fingerprint: m.get("fingerprint")?.as_str()?.to_string(),
        addresses: serde_json::from_value(m.get("addresses")?.clone()).unwrap_or_default(),
        secret: m.get("secret")?.as_str()?.to_string(),
        expires_at: m
            .get("expiresAt")
            .and_then(|v| v.as_str())
            .unwrap_or(lxd_api::ZERO_TIME)
            .to_string(),
    })
}

fn encode_token(t: &lxd_api::certificate::CertificateAddToken) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(t).unwrap_or_default())
}
