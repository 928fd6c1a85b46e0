//! `keymesh issuer {add,list,remove,refresh}`: external identity providers whose tokens the filters accept.

use std::io::Write;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{connect, CliError};
use crate::config::Config;
use crate::issuers::{
    jwks_kids, ExternalIssuer, FetchError, FetchStatus, Fetched, Fetcher, IssuerError, IssuerStore,
    KeySource, NewIssuer, RefusedKey,
};
use crate::store::names::KeyNames;
use crate::support::clock::Clock;

/// `keymesh issuer …`.
#[derive(Debug, Subcommand)]
pub enum IssuerCommand {
    /// Trust an external identity provider: fetch its keys now, store the registration in Redis, and deliver the
    /// keys to every filter, bound to this issuer and these audiences.
    Add(AddIssuerArgs),
    /// List the external providers with their keys and how fetching them has gone.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting a provider: its tokens fail at every proxy once the change reaches it.
    Remove {
        /// The issuer.
        issuer: String,
    },
    /// Fetch a provider's keys now (the running sidecars also do so on their schedule).
    Refresh {
        /// The issuer.
        issuer: String,
    },
}

/// Arguments of `keymesh issuer add`.
#[derive(Debug, Args)]
pub struct AddIssuerArgs {
    /// The provider's issuer identifier: exactly the `iss` of its tokens.
    pub issuer: String,
    /// The provider's JWK Set URL.
    #[arg(long, value_name = "URL", conflicts_with_all = ["discovery", "discovery_url"])]
    pub jwks_uri: Option<String>,
    /// Find the JWK Set through OpenID Connect discovery at `<issuer>/.well-known/openid-configuration`.
    #[arg(long, conflicts_with = "discovery_url")]
    pub discovery: bool,
    /// Find the JWK Set through the metadata document at this URL (OIDC discovery or RFC 8414).
    #[arg(long, value_name = "URL")]
    pub discovery_url: Option<String>,
    /// An API (audience URI) the provider's tokens may be used at; repeatable, at least one.
    #[arg(long = "audience", value_name = "URI", required = true, num_args = 1..)]
    pub audiences: Vec<String>,
    /// Also accept access tokens whose `typ` header is this media type (e.g. `JWT`), for a provider known to
    /// mint them so; repeatable. `at+jwt` (RFC 9068) is always accepted, and by default nothing else.
    #[arg(long = "accept-typ", value_name = "TYPE")]
    pub accept_typ: Vec<String>,
    /// Also accept this provider's access tokens that carry no `typ` header at all.
    #[arg(long)]
    pub accept_missing_typ: bool,
    /// Replace an existing registration of this issuer.
    #[arg(long)]
    pub force: bool,
    /// Print JSON: `{"issuer", "jwks_uri", "audiences", "kids"}`.
    #[arg(long)]
    pub json: bool,
}

/// Why an issuer command failed.
#[derive(Debug, thiserror::Error)]
pub enum IssuerCommandError {
    /// Neither a JWKS URI nor discovery was given.
    #[error("say where the keys are: --jwks-uri URL, --discovery, or --discovery-url URL")]
    NoSource,
    /// The registration or store operation failed.
    #[error(transparent)]
    Store(#[from] IssuerError),
    /// The keys could not be fetched.
    #[error("cannot fetch the keys: {0}")]
    Fetch(#[from] FetchError),
    /// The fetch thread failed.
    #[error("fetch task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

#[derive(Serialize)]
struct Listed<'a> {
    issuer: &'a str,
    source: &'a KeySource,
    audiences: &'a [String],
    kids: Vec<&'a str>,
    accept_typ: &'a [String],
    accept_missing_typ: bool,
    refused_keys: &'a [RefusedKey],
    keys_changed_at: u64,
    status: FetchStatus,
}

/// Runs an `issuer` subcommand against the configured Redis, writing its output to `out`.
pub async fn run_issuer(
    config: &Config,
    command: IssuerCommand,
    clock: &Clock,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let store = IssuerStore::new(KeyNames::new(config.key_prefix.clone()));
    let fetcher = Fetcher::new(config.external_issuers.fetch_timeout);
    match command {
        IssuerCommand::Add(args) => {
            let source = match (args.jwks_uri, args.discovery, args.discovery_url) {
                (Some(url), _, _) => KeySource::JwksUri(url),
                (None, _, Some(url)) => KeySource::Discovery(url),
                (None, true, None) => KeySource::Discovery(NewIssuer::discovery_url(&args.issuer)),
                (None, false, None) => return Err(IssuerCommandError::NoSource.into()),
            };
            let new = NewIssuer::new(args.issuer, source, args.audiences, &config.issuer)
                .and_then(|new| new.accepting_types(args.accept_typ, args.accept_missing_typ))
                .map_err(IssuerCommandError::from)?;
            // Fetch before storing: a registration that cannot fetch is reported now, not found out later.
            let probe = ExternalIssuer {
                issuer: new.issuer.clone(),
                source: new.source.clone(),
                audiences: new.audiences.clone(),
                jwks: None,
                keys_changed_at: 0,
                accept_typ: new.accept_typ.clone(),
                accept_missing_typ: new.accept_missing_typ,
                refused_keys: Vec::new(),
            };
            let fetched = fetch(&fetcher, probe).await?;
            let mut conn = connect(config).await?;
            let record = store
                .add(&mut conn, new, &fetched, clock.now_secs(), args.force)
                .await
                .map_err(IssuerCommandError::from)?;
            let kids = record.kids();
            if args.json {
                serde_json::to_writer(
                    &mut *out,
                    &serde_json::json!({
                        "issuer": record.issuer, "jwks_uri": fetched.jwks_uri,
                        "audiences": record.audiences, "kids": kids,
                        "accept_typ": record.accept_typ,
                        "accept_missing_typ": record.accept_missing_typ,
                        "refused_keys": record.refused_keys,
                    }),
                )?;
                writeln!(out)?;
            } else {
                writeln!(out, "issuer:    {}", record.issuer)?;
                writeln!(out, "jwks_uri:  {}", fetched.jwks_uri)?;
                writeln!(out, "audiences: {}", record.audiences.join(" "))?;
                writeln!(out, "kids:      {}", kids.join(" "))?;
                if !record.accept_typ.is_empty() || record.accept_missing_typ {
                    let mut types = vec!["at+jwt".to_owned()];
                    types.extend(record.accept_typ.iter().cloned());
                    if record.accept_missing_typ {
                        types.push("(no typ)".into());
                    }
                    writeln!(out, "typ:       {}", types.join(" "))?;
                }
                for skipped in &fetched.skipped {
                    writeln!(out, "left out:  {skipped}")?;
                }
                for refused in &fetched.refused {
                    writeln!(out, "refused:   {}: {}", refused.kid, refused.reason)?;
                }
            }
        }
        IssuerCommand::List { json } => {
            let mut conn = connect(config).await?;
            let records = store
                .list(&mut conn)
                .await
                .map_err(IssuerCommandError::from)?;
            let statuses = store
                .statuses(&mut conn)
                .await
                .map_err(IssuerCommandError::from)?;
            // Every registered issuer, with a default status for one never tried.
            let listed: Vec<Listed<'_>> = records
                .iter()
                .map(|record| Listed {
                    issuer: &record.issuer,
                    source: &record.source,
                    audiences: &record.audiences,
                    kids: record.kids(),
                    accept_typ: &record.accept_typ,
                    accept_missing_typ: record.accept_missing_typ,
                    refused_keys: &record.refused_keys,
                    keys_changed_at: record.keys_changed_at,
                    status: statuses.get(&record.issuer).cloned().unwrap_or_default(),
                })
                .collect();
            if json {
                serde_json::to_writer(&mut *out, &listed)?;
                writeln!(out)?;
            } else {
                for entry in &listed {
                    writeln!(
                        out,
                        "{}\tkeys={}\taudiences={}{}{}\tlast_success={}\tfailures={}{}",
                        entry.issuer,
                        entry.kids.join(","),
                        entry.audiences.join(","),
                        typ_column(entry.accept_typ, entry.accept_missing_typ),
                        refused_column(entry.refused_keys),
                        entry.status.last_success,
                        entry.status.failures,
                        entry
                            .status
                            .last_error
                            .as_deref()
                            .map(|e| format!("\tlast_error={e}"))
                            .unwrap_or_default(),
                    )?;
                }
            }
        }
        IssuerCommand::Remove { issuer } => {
            let mut conn = connect(config).await?;
            store
                .remove(&mut conn, &issuer)
                .await
                .map_err(IssuerCommandError::from)?;
            writeln!(out, "removed issuer {issuer}")?;
        }
        IssuerCommand::Refresh { issuer } => {
            let mut conn = connect(config).await?;
            let records = store
                .list(&mut conn)
                .await
                .map_err(IssuerCommandError::from)?;
            let record = records
                .into_iter()
                .find(|record| record.issuer == issuer)
                .ok_or_else(|| IssuerCommandError::Store(IssuerError::NotFound(issuer.clone())))?;
            let fetched = fetch(&fetcher, record.clone()).await?;
            let now = clock.now_secs();
            let changed = store
                .store_keys(&mut conn, &record, &fetched, now)
                .await
                .map_err(IssuerCommandError::from)?;
            store
                .set_status(&mut conn, &issuer, &FetchStatus::succeeded(now, &fetched))
                .await
                .map_err(IssuerCommandError::from)?;
            let kids = jwks_kids(&fetched.jwks);
            let what = if changed {
                "keys changed"
            } else {
                "keys unchanged"
            };
            writeln!(out, "{issuer}: {what}: {}", kids.join(" "))?;
        }
    }
    Ok(())
}

/// The `typ` column of `issuer list`: empty for a provider held to `at+jwt` only.
fn typ_column(accept_typ: &[String], missing: bool) -> String {
    if accept_typ.is_empty() && !missing {
        return String::new();
    }
    let mut types = vec!["at+jwt".to_owned()];
    types.extend(accept_typ.iter().cloned());
    if missing {
        types.push("none".into());
    }
    format!("\taccept_typ={}", types.join(","))
}

/// The `refused` column of `issuer list`: each refused key and why; empty when none was.
fn refused_column(refused: &[RefusedKey]) -> String {
    if refused.is_empty() {
        return String::new();
    }
    let keys: Vec<String> = refused
        .iter()
        .map(|key| format!("{} ({})", key.kid, key.reason))
        .collect();
    format!("\trefused={}", keys.join("; "))
}

async fn fetch(fetcher: &Fetcher, record: ExternalIssuer) -> Result<Fetched, CliError> {
    let fetcher = fetcher.clone();
    let fetched = tokio::task::spawn_blocking(move || fetcher.fetch(&record))
        .await
        .map_err(IssuerCommandError::from)?
        .map_err(IssuerCommandError::from)?;
    Ok(fetched)
}
