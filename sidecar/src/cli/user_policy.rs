//! `keymesh user policy {set,show,clear}`: what the API keys users create themselves may be.

use std::io::Write;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::apikey::parse_duration;
use super::{connect, CliError};
use crate::api_keys::policy::{KeyPolicy, PolicySource, PolicyStore, DEFAULT_MAX_KEYS};
use crate::config::Config;
use crate::store::names::KeyNames;

/// `keymesh user policy …`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Set the key policy of one user or the default (replacing it whole).
    ///
    /// A user's own policy replaces the default entirely. Without any policy a user may create no key.
    Set(SetPolicyArgs),
    /// Show the policy of a user (the one that applies, and where it comes from) or the default.
    Show {
        /// Whose policy.
        #[command(flatten)]
        whom: Whom,
        /// Print JSON: `{"source", "resources", "scopes", "max_keys", "max_lifetime_secs", "tier"?}`.
        #[arg(long)]
        json: bool,
    },
    /// Remove the policy of a user (they fall back to the default) or the default itself. Existing keys stay.
    Clear {
        /// Whose policy.
        #[command(flatten)]
        whom: Whom,
    },
}

/// A user or the default.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Whom {
    /// The policy of this user.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// The default policy, for users without their own.
    #[arg(long)]
    pub default: bool,
}

/// Arguments of `keymesh user policy set`.
#[derive(Debug, Args)]
pub struct SetPolicyArgs {
    /// Whose policy.
    #[command(flatten)]
    pub whom: Whom,
    /// A resource (absolute URI of an API) keys may be valid for; repeatable. None: no keys at all.
    #[arg(long = "resource", value_name = "URI", num_args = 1..)]
    pub resources: Vec<String>,
    /// A scope keys may grant; repeatable.
    #[arg(long = "scope", value_name = "SCOPE", num_args = 1..)]
    pub scopes: Vec<String>,
    /// Most keys a user may hold at once (expired keys count until revoked).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_KEYS)]
    pub max_keys: u32,
    /// Longest lifetime of a key, such as `90d` or `12h`; keys asked for without an expiry get it. Without it,
    /// keys may never expire.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_lifetime: Option<u64>,
    /// The rate tier every key the user creates carries (forwarded upstream as `x-keymesh-tier`).
    #[arg(long, value_name = "TIER")]
    pub tier: Option<String>,
}

/// A policy as `show --json` prints it.
#[derive(Serialize)]
struct ShownPolicy<'a> {
    source: PolicySource,
    #[serde(flatten)]
    policy: &'a KeyPolicy,
}

/// Runs a `user policy` subcommand against the configured Redis.
pub async fn run_policy(
    config: &Config,
    command: PolicyCommand,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let store = PolicyStore::new(KeyNames::new(config.key_prefix.clone()));
    let mut conn = connect(config).await?;
    match command {
        PolicyCommand::Set(args) => {
            let policy = KeyPolicy {
                resources: args.resources,
                scopes: args.scopes,
                max_keys: args.max_keys,
                max_lifetime_secs: args.max_lifetime,
                tier: args.tier,
            };
            let user = args.whom.user.as_deref();
            let stored = store.set(&mut conn, user, policy).await?;
            writeln!(out, "key policy of {} set", describe(user))?;
            write_policy(out, &stored)?;
        }
        PolicyCommand::Show { whom, json } => {
            let user = whom.user.as_deref();
            let (policy, source) = match user {
                Some(name) => store.effective(&mut conn, name).await?,
                None => match store.get(&mut conn, None).await? {
                    Some(policy) => (policy, PolicySource::Default),
                    None => (KeyPolicy::closed(), PolicySource::BuiltIn),
                },
            };
            if json {
                serde_json::to_writer(
                    &mut *out,
                    &ShownPolicy {
                        source,
                        policy: &policy,
                    },
                )?;
                writeln!(out)?;
            } else {
                let from = match source {
                    PolicySource::User => "the user's own",
                    PolicySource::Default => "the default",
                    PolicySource::BuiltIn => "built in (no policy set: no keys)",
                };
                writeln!(out, "policy:       {from}")?;
                write_policy(out, &policy)?;
            }
        }
        PolicyCommand::Clear { whom } => {
            let user = whom.user.as_deref();
            if !store.clear(&mut conn, user).await? {
                return Err(CliError::NoPolicy(describe(user)));
            }
            writeln!(out, "key policy of {} removed", describe(user))?;
        }
    }
    Ok(())
}

fn describe(user: Option<&str>) -> String {
    user.map_or_else(|| "the default".to_owned(), |name| format!("user {name}"))
}

fn write_policy(out: &mut impl Write, policy: &KeyPolicy) -> Result<(), CliError> {
    writeln!(out, "resources:    {}", policy.resources.join(" "))?;
    writeln!(out, "scopes:       {}", policy.scopes.join(" "))?;
    writeln!(out, "max keys:     {}", policy.max_keys)?;
    writeln!(
        out,
        "tier:         {}",
        policy.tier.as_deref().unwrap_or("none")
    )?;
    writeln!(
        out,
        "max lifetime: {}",
        policy
            .max_lifetime_secs
            .map_or("none (keys may never expire)".to_owned(), |secs| format!(
                "{secs} seconds"
            ))
    )?;
    Ok(())
}
