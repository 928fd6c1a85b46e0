//! `keymesh apikey {create,list,revoke,disable,enable,regenerate}`: API keys from the command line.

use std::io::Write;

use clap::{Args, Subcommand};

use super::{connect, CliError};
use crate::api_keys::{ApiKeyInfo, ApiKeyStore, Grace, IssuedApiKey, NewApiKey, MAX_GRACE_SECS};
use crate::config::Config;
use crate::store::names::KeyNames;
use crate::support::clock::{format_utc, Clock};

/// `keymesh apikey …`.
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create an API key and print it (the only time it is shown; only its hash is stored).
    Create(CreateApiKeyArgs),
    /// List an owner's API keys (never a key or its hash).
    ///
    /// Shows each key's id, label, prefix, resources, scopes, tier, state (active, disabled or expired), when it
    /// was last used (to the minute, as reported by the proxies), creation and expiry, oldest first.
    List {
        /// The owner (subject) whose keys to list.
        #[arg(long, value_name = "SUBJECT")]
        owner: String,
        /// Print JSON: an array of `{"id", "owner", "label", "prefix", "resources", "scopes", "created_at",
        /// "expires_at", "tier", "state", "last_used_at"}`, plus `"previous_secret": {"prefix", "until"}` while a
        /// replaced secret is in its grace period.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key.
    ///
    /// Every proxy stops accepting it within moments. Fails if there is no such key.
    Revoke {
        /// The key's id (`ak_…`).
        id: String,
    },
    /// Disable an API key without deleting it: every proxy refuses it until it is enabled.
    ///
    /// A replaced secret still in its grace period stops working too, for good. Fails if there is no such key.
    Disable {
        /// The key's id (`ak_…`).
        id: String,
    },
    /// Enable a disabled API key: every proxy accepts it again within moments. Fails if there is no such key.
    Enable {
        /// The key's id (`ak_…`).
        id: String,
    },
    /// Give an API key a new secret and print it (the only time it is shown).
    ///
    /// The id, owner, label, rights, tier and expiry stay. Without `--grace` the old secret stops working at the
    /// moment the new one starts; with it, both work until the grace period ends, then every proxy refuses the old
    /// one. Fails if there is no such key.
    Regenerate {
        /// The key's id (`ak_…`).
        id: String,
        /// How long the old secret keeps working, such as `1h` or `2d` (at most `7d`; default: not at all).
        #[arg(long, value_name = "DURATION", value_parser = parse_grace)]
        grace: Option<u64>,
        /// Print JSON, as `create --json` does, plus `previous_secret_until` with a grace period.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `keymesh apikey create`.
#[derive(Debug, Args)]
pub struct CreateApiKeyArgs {
    /// The subject the key acts for (forwarded upstream as the caller's identity).
    #[arg(long, value_name = "SUBJECT")]
    pub owner: String,
    /// A label to recognise the key by, such as where it is used (1 to 200 printable characters).
    #[arg(long, value_name = "TEXT")]
    pub label: String,
    /// A resource (absolute URI of an API) the key is valid for; repeatable, at least one (a key without
    /// resources would be valid for no API).
    #[arg(long = "resource", value_name = "URI", required = true, num_args = 1..)]
    pub resources: Vec<String>,
    /// A scope the key grants; repeatable.
    #[arg(long = "scope", value_name = "SCOPE", num_args = 1..)]
    pub scopes: Vec<String>,
    /// Lifetime, such as `30d`, `12h`, `90m` or `45s`; without it the key does not expire.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub expires_in: Option<u64>,
    /// A rate tier (such as `free` or `pro`; 1 to 32 letters, digits, `-`, `_`, `.`), forwarded upstream as
    /// `x-keymesh-tier` for Envoy's rate limiting to act on.
    #[arg(long, value_name = "NAME")]
    pub tier: Option<String>,
    /// Print JSON: `{"id", "key", "owner", "label", "prefix", "resources", "scopes", "created_at",
    /// "expires_at", "tier"}` (times in seconds since the Unix epoch, `expires_at` null if it never expires).
    #[arg(long)]
    pub json: bool,
}

/// Parses a duration of whole days, hours, minutes or seconds (`30d`, `12h`, `90m`, `45s`) into seconds.
pub fn parse_duration(value: &str) -> Result<u64, String> {
    let value = value.trim();
    let unit_at = value
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{value:?} has no unit: use s, m, h or d, as in 30d"))?;
    let (number, unit) = value.split_at(unit_at);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a number followed by s, m, h or d"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit {unit:?}: use s, m, h or d")),
    };
    match number.checked_mul(factor) {
        Some(0) => Err("a duration must be longer than zero".to_owned()),
        Some(secs) => Ok(secs),
        None => Err(format!("{value:?} is too long")),
    }
}

/// Parses a grace period: a duration (as [`parse_duration`]) or `0`, at most 7 days.
pub fn parse_grace(value: &str) -> Result<u64, String> {
    let secs = if value.trim() == "0" {
        0
    } else {
        parse_duration(value)?
    };
    if secs > MAX_GRACE_SECS {
        return Err(format!("{value:?} is longer than the 7 day maximum"));
    }
    Ok(secs)
}

/// Runs an `apikey` subcommand against the configured Redis, writing its output to `out`.
pub async fn run_apikey(
    config: &Config,
    command: ApiKeyCommand,
    clock: &Clock,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let store = ApiKeyStore::new(KeyNames::new(config.key_prefix.clone()));
    let mut conn = connect(config).await?;
    match command {
        ApiKeyCommand::Create(args) => {
            let new = NewApiKey {
                owner: args.owner,
                label: args.label,
                resources: args.resources,
                scopes: args.scopes,
                expires_in_secs: args.expires_in,
                tier: args.tier,
            };
            let issued = store.create(&mut conn, new, clock.now_secs()).await?;
            write_issued(out, &issued, args.json)?;
        }
        ApiKeyCommand::List { owner, json } => {
            let keys: Vec<ApiKeyInfo> =
                store.list_info(&mut conn, &owner, clock.now_secs()).await?;
            if json {
                serde_json::to_writer(&mut *out, &keys)?;
                writeln!(out)?;
            } else {
                for key in &keys {
                    writeln!(
                        out,
                        "{}\tlabel={}\tprefix={}\tresources={}\tscopes={}\ttier={}\tstate={}\tlast_used={}\tcreated={}\texpires={}{}",
                        key.id,
                        key.label,
                        key.prefix,
                        key.resources.join(","),
                        key.scopes.join(","),
                        key.tier.as_deref().unwrap_or("-"),
                        key.state.as_str(),
                        key.last_used_at.map_or("never".to_owned(), format_utc),
                        format_utc(key.created_at),
                        key.expires_at.map_or("never".to_owned(), format_utc),
                        key.previous_secret.as_ref().map_or(String::new(), |previous| format!(
                            "\tprevious={} until {}",
                            previous.prefix,
                            format_utc(previous.until)
                        )),
                    )?;
                }
            }
        }
        ApiKeyCommand::Revoke { id } => {
            if !store.revoke(&mut conn, &id).await? {
                return Err(CliError::ApiKeyNotFound(id));
            }
            writeln!(out, "revoked api key {id}")?;
        }
        ApiKeyCommand::Disable { id } => {
            store
                .disable(&mut conn, &id)
                .await?
                .ok_or_else(|| CliError::ApiKeyNotFound(id.clone()))?;
            writeln!(out, "disabled api key {id}")?;
        }
        ApiKeyCommand::Enable { id } => {
            store
                .enable(&mut conn, &id, clock.now_secs())
                .await?
                .ok_or_else(|| CliError::ApiKeyNotFound(id.clone()))?;
            writeln!(out, "enabled api key {id}")?;
        }
        ApiKeyCommand::Regenerate { id, grace, json } => {
            let grace = Grace::from_secs(grace.unwrap_or(0))?;
            let issued = store
                .regenerate(&mut conn, &id, grace, clock.now_secs())
                .await?
                .ok_or(CliError::ApiKeyNotFound(id))?;
            write_issued(out, &issued, json)?;
        }
    }
    Ok(())
}

fn write_issued(out: &mut impl Write, issued: &IssuedApiKey, json: bool) -> Result<(), CliError> {
    if json {
        serde_json::to_writer(&mut *out, issued)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "id:        {}", issued.id)?;
    writeln!(out, "key:       {}", issued.key)?;
    writeln!(out, "owner:     {}", issued.owner)?;
    writeln!(out, "label:     {}", issued.label)?;
    writeln!(out, "resources: {}", issued.resources.join(" "))?;
    writeln!(out, "scopes:    {}", issued.scopes.join(" "))?;
    if let Some(tier) = &issued.tier {
        writeln!(out, "tier:      {tier}")?;
    }
    writeln!(
        out,
        "expires:   {}",
        issued.expires_at.map_or("never".to_owned(), format_utc)
    )?;
    if let Some(until) = issued.previous_secret_until {
        writeln!(out, "previous:  works until {}", format_utc(until))?;
    }
    writeln!(
        out,
        "The key is stored only hashed and will not be shown again."
    )?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration("12h"), Ok(12 * 3_600));
        assert_eq!(parse_duration("90m"), Ok(5_400));
        assert_eq!(parse_duration("45s"), Ok(45));
        for bad in [
            "",
            "30",
            "d",
            "0d",
            "1.5h",
            "-1d",
            "3w",
            "1 d",
            "10dd",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration(&format!("{}d", u64::MAX / 86_400 + 1)).is_err());
    }
}
