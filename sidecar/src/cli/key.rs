//! `keymesh key {rotate,list}`: signing key rotation and inspection.

use std::io::Write;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{connect, CliError};
use crate::config::Config;
use crate::keys::lifecycle::{self, KeyState, LifecycleError, Rotation};
use crate::keys::{self, Alg, KeyStoreError};
use crate::store::names::KeyNames;
use crate::support::clock::Clock;
use crate::support::kek::{self, KekError};

/// `keymesh key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Publish a new signing key. It signs tokens only after `key_publish_delay_secs` (so every proxy holds it
    /// first), once a running `keymesh serve` activates it; the key it replaces stays published until the tokens
    /// it signed have expired. Needs the key-encryption key.
    Rotate(RotateArgs),
    /// List the signing keys with their state (next, active, retiring); never shows private material.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `keymesh key rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Algorithm of the new key: EdDSA, ES256 or RS256 (default: `key_algorithm`, EdDSA unless configured).
    #[arg(long, value_name = "ALG", value_parser = parse_alg)]
    pub alg: Option<Alg>,
    /// Print JSON: `{"kid", "alg", "version", "activate_at"}`.
    #[arg(long)]
    pub json: bool,
}

fn parse_alg(value: &str) -> Result<Alg, String> {
    value.parse()
}

/// Why a key command failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyCommandError {
    /// No usable key-encryption key.
    #[error(transparent)]
    Kek(#[from] KekError),
    /// The lifecycle operation failed.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// The new key could not be generated.
    #[error(transparent)]
    KeyStore(#[from] KeyStoreError),
    /// A rotation is already waiting for its key to become active.
    #[error("a rotation is already under way: key {kid} has not become active yet (see `keymesh key list`)")]
    Pending {
        /// The waiting key.
        kid: String,
    },
    /// Redis has no active key yet.
    #[error("no active signing key yet: start `keymesh serve` once, it creates the first key")]
    NoActiveKey,
    /// The deployment's keys are sealed under another KEK than the one given to this command.
    #[error(
        "the active key {kid} is sealed under key-encryption key {sealed_with}, but this command has {have}: a key \
         sealed with it could not be used by the sidecars; use the deployment's KEK"
    )]
    OtherKek {
        /// The active key.
        kid: String,
        /// The KEK id of its record.
        sealed_with: String,
        /// This command's KEK id.
        have: String,
    },
}

#[derive(Serialize)]
struct Rotated<'a> {
    kid: &'a str,
    alg: &'a str,
    version: u64,
    activate_at: u64,
}

/// Runs a `key` subcommand against the configured Redis, writing its output to `out`.
pub async fn run_key(
    config: &Config,
    command: KeyCommand,
    clock: &Clock,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let names = KeyNames::new(config.key_prefix.clone());
    match command {
        KeyCommand::Rotate(args) => {
            // Refuse before touching Redis: without the KEK nothing can be sealed.
            let kek = kek::resolve(config.signing.kek.as_ref()).map_err(KeyCommandError::from)?;
            let mut conn = connect(config).await?;
            let keys = lifecycle::list(&mut conn, &names)
                .await
                .map_err(KeyCommandError::from)?;
            let active = keys
                .iter()
                .find(|key| matches!(key.state, KeyState::Active { .. }))
                .ok_or(KeyCommandError::NoActiveKey)?;
            if let Some(sealed_with) = active.sealed_with.as_deref().filter(|id| *id != kek.id()) {
                return Err(KeyCommandError::OtherKek {
                    kid: active.kid.clone(),
                    sealed_with: sealed_with.to_owned(),
                    have: kek.id().to_owned(),
                }
                .into());
            }
            let now = clock.now_secs();
            let alg = args.alg.unwrap_or(config.signing.algorithm);
            let key = keys::generate(alg, now)
                .await
                .map_err(KeyCommandError::from)?;
            let rotation = lifecycle::rotate(
                &mut conn,
                &names,
                &kek,
                &key,
                now,
                config.signing.publish_delay_secs,
                None,
            )
            .await
            .map_err(KeyCommandError::from)?;
            let (version, activate_at) = match rotation {
                Rotation::Published {
                    version,
                    activate_at,
                } => (version, activate_at),
                Rotation::Pending { kid } => return Err(KeyCommandError::Pending { kid }.into()),
                Rotation::NoActiveKey | Rotation::NotDue => {
                    return Err(KeyCommandError::NoActiveKey.into())
                }
            };
            if args.json {
                let rotated = Rotated {
                    kid: key.kid(),
                    alg: alg.as_str(),
                    version,
                    activate_at,
                };
                serde_json::to_writer(&mut *out, &rotated)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "published signing key {} ({alg}) at bundle version {version}",
                    key.kid()
                )?;
                writeln!(
                    out,
                    "it signs new tokens from {activate_at} (in {}s, once a running `keymesh serve` activates it); \
                     the key it replaces stays published until the tokens it signed have expired",
                    config.signing.publish_delay_secs
                )?;
            }
        }
        KeyCommand::List { json } => {
            let mut conn = connect(config).await?;
            let keys = lifecycle::list(&mut conn, &names)
                .await
                .map_err(KeyCommandError::from)?;
            if json {
                serde_json::to_writer(&mut *out, &keys)?;
                writeln!(out)?;
            } else {
                for key in &keys {
                    let when = match key.state {
                        KeyState::Next { activate_at } => format!("activate_at={activate_at}"),
                        KeyState::Active { since } => format!("since={}", or_dash(since)),
                        KeyState::Retiring { remove_at } => {
                            format!("remove_at={}", or_dash(remove_at))
                        }
                    };
                    writeln!(
                        out,
                        "{}\talg={}\tcreated_at={}\tstate={}\t{when}\tkek={}",
                        key.kid,
                        key.alg,
                        key.created_at,
                        key.state.name(),
                        key.sealed_with
                            .as_deref()
                            .unwrap_or("none (stored in clear)")
                    )?;
                }
            }
        }
    }
    Ok(())
}

fn or_dash(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}
