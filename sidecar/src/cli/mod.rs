//! The command line: `keymesh serve`, `keymesh client {create,list,delete}`,
//! `keymesh apikey {create,list,revoke,regenerate}`, `keymesh user {create,list,delete,policy}`, `keymesh key …` and
//! `keymesh issuer {add,list,remove,refresh}` and `keymesh health`.
//!
//! Every subcommand loads the same [`Config`] as the server, so client and API key commands act on the Redis (and
//! key prefix) the running sidecar uses.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::config::{Config, CONFIG_PATH_ENV};
use crate::oauth::clients::{ClientError, ClientStore, GrantType, NewClient};
use crate::store::connection::{RedisConnection, RedisTarget};
use crate::store::names::KeyNames;
use crate::support::clock::Clock;

mod apikey;
mod health;
mod issuer;
mod key;
mod user;
mod user_policy;

pub use apikey::{parse_duration, parse_grace, run_apikey, ApiKeyCommand, CreateApiKeyArgs};
pub use health::{run_health, HealthArgs, HealthError};
pub use issuer::{run_issuer, AddIssuerArgs, IssuerCommand, IssuerCommandError};
pub use key::{run_key, KeyCommand, KeyCommandError, RotateArgs};
pub use user::{run_user, CreateUserArgs, UserCommand};
pub use user_policy::{run_policy, PolicyCommand, SetPolicyArgs, Whom};

const CLI_REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// `keymesh`: OAuth2 authorization server and key mirror for the keymesh Envoy filters.
#[derive(Debug, Parser)]
#[command(name = "keymesh", version, about)]
pub struct Cli {
    /// TOML configuration file (values there override defaults; environment variables override it).
    #[arg(long, global = true, env = CONFIG_PATH_ENV, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server until SIGTERM or SIGINT.
    Serve,
    /// Manage OAuth clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage API keys (for callers that do not use OAuth).
    #[command(subcommand, name = "apikey")]
    ApiKey(ApiKeyCommand),
    /// Manage the users who log in at the authorization page.
    #[command(subcommand)]
    User(UserCommand),
    /// Rotate and list signing keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage the external identity providers whose tokens the filters accept.
    #[command(subcommand)]
    Issuer(IssuerCommand),
    /// Ask the running server whether it is alive or ready: exit 0 if so, 1 if not (for container health checks).
    Health(HealthArgs),
}

/// `keymesh client …`.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client and print its secret (the only time it is shown).
    Create(CreateArgs),
    /// List registered clients (never shows secrets or hashes).
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete a client.
    Delete {
        /// The client id.
        id: String,
    },
}

/// Arguments of `keymesh client create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The client id.
    #[arg(long, value_name = "ID")]
    pub id: String,
    /// A name to show users on the consent page (defaults to the id).
    #[arg(long, value_name = "TEXT")]
    pub name: Option<String>,
    /// Use this secret instead of generating one (stored as an Argon2id hash).
    #[arg(long, value_name = "SECRET", conflicts_with = "public")]
    pub secret: Option<String>,
    /// A public client (a native or browser app): no secret, PKCE required, no client_credentials.
    #[arg(long)]
    pub public: bool,
    /// A resource (absolute URI) the client may get tokens for; repeatable.
    #[arg(long = "resource", value_name = "URI", required = true, num_args = 1..)]
    pub resources: Vec<String>,
    /// A scope the client may request; repeatable.
    #[arg(long = "scope", value_name = "SCOPE", num_args = 1..)]
    pub scopes: Vec<String>,
    /// A redirect URI for the authorization code grant (compared as an exact string); repeatable.
    #[arg(long = "redirect-uri", value_name = "URI", num_args = 1..)]
    pub redirect_uris: Vec<String>,
    /// A grant type the client may use (authorization_code, refresh_token, client_credentials); repeatable.
    /// Default: authorization_code and refresh_token when redirect URIs are given, plus client_credentials for
    /// confidential clients.
    #[arg(long = "grant-type", value_name = "GRANT", num_args = 1.., value_parser = clap::value_parser!(GrantType))]
    pub grant_types: Vec<GrantType>,
    /// A rate tier (such as `free` or `pro`; 1 to 32 letters, digits, `-`, `_`, `.`): the client's access tokens
    /// carry it as the `keymesh_tier` claim, and the filters forward it upstream as `x-keymesh-tier`.
    #[arg(long, value_name = "NAME")]
    pub tier: Option<String>,
    /// A resource (absolute URI) the client may get tokens for by RFC 8693 token exchange, on behalf of the user
    /// of a token it received; repeatable. Allows the token exchange grant. Off by default.
    #[arg(long = "exchange-resource", value_name = "URI", num_args = 1..)]
    pub exchange_resources: Vec<String>,
    /// Replace an existing client with the same id.
    #[arg(long)]
    pub force: bool,
    /// Print JSON: `{"client_id", "client_secret", "public", "resources", "scopes", "redirect_uris",
    /// "grant_types"}` (no `client_secret` for public clients).
    #[arg(long)]
    pub json: bool,
}

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Redis could not be reached.
    #[error("cannot connect to redis: {0}")]
    Connect(#[source] redis::RedisError),
    /// The client operation failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// `delete` named a client that does not exist.
    #[error("no client {0:?}")]
    NotFound(String),
    /// The API key operation failed.
    #[error(transparent)]
    ApiKey(#[from] crate::api_keys::ApiKeyError),
    /// `revoke` or `regenerate` named an API key that does not exist.
    #[error("no api key {0:?}")]
    ApiKeyNotFound(String),
    /// The user operation failed.
    #[error(transparent)]
    User(#[from] crate::oauth::users::UserError),
    /// A signing key command failed.
    #[error(transparent)]
    Key(#[from] KeyCommandError),
    /// An external issuer command failed.
    #[error(transparent)]
    Issuer(#[from] IssuerCommandError),
    /// A key policy operation failed.
    #[error(transparent)]
    Policy(#[from] crate::api_keys::policy::PolicyError),
    /// `user policy clear` named a policy that is not set.
    #[error("no key policy for {0}")]
    NoPolicy(String),
    /// `user delete` named a user that does not exist.
    #[error("no user {0:?}")]
    UserNotFound(String),
    /// The password could not be read from standard input.
    #[error("cannot read the password from standard input: {0}")]
    PasswordInput(std::io::Error),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// Serialising JSON output failed.
    #[error("cannot encode output: {0}")]
    Json(#[from] serde_json::Error),
}

/// A client as `client list` shows it.
#[derive(Serialize)]
struct ListedClient<'a> {
    client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    public: bool,
    resources: &'a [String],
    scopes: &'a [String],
    redirect_uris: &'a [String],
    grant_types: &'a [GrantType],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    exchange_resources: &'a [String],
    created_at: u64,
    /// `operator` (`client create`) or how the client registered itself.
    created_by: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tier: Option<&'a str>,
}

/// Runs a `client` subcommand against the configured Redis, writing its output to `out`.
pub async fn run_client(
    config: &Config,
    command: ClientCommand,
    clock: &Clock,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let store = ClientStore::new(KeyNames::new(config.key_prefix.clone()));
    let mut conn = connect(config).await?;
    match command {
        ClientCommand::Create(args) => {
            let new = NewClient {
                client_id: args.id,
                name: args.name,
                secret: args.secret,
                public: args.public,
                resources: args.resources,
                scopes: args.scopes,
                redirect_uris: args.redirect_uris,
                grant_types: args.grant_types,
                exchange_resources: args.exchange_resources,
                force: args.force,
                tier: args.tier,
            };
            let registered = store.register(&mut conn, new, clock.now_secs()).await?;
            if args.json {
                serde_json::to_writer(&mut *out, &registered)?;
                writeln!(out)?;
            } else {
                let grants: Vec<&str> = registered.grant_types.iter().map(|g| g.as_str()).collect();
                writeln!(out, "client_id:     {}", registered.client_id)?;
                if registered.public {
                    writeln!(out, "client_secret: (none: public client, PKCE required)")?;
                } else {
                    writeln!(out, "client_secret: {}", registered.client_secret)?;
                }
                writeln!(out, "resources:     {}", registered.resources.join(" "))?;
                writeln!(out, "scopes:        {}", registered.scopes.join(" "))?;
                writeln!(out, "redirect_uris: {}", registered.redirect_uris.join(" "))?;
                writeln!(out, "grant_types:   {}", grants.join(" "))?;
                if !registered.exchange_resources.is_empty() {
                    writeln!(
                        out,
                        "exchange:      {}",
                        registered.exchange_resources.join(" ")
                    )?;
                }
                if !registered.public {
                    writeln!(
                        out,
                        "The secret is stored only hashed and will not be shown again."
                    )?;
                }
            }
        }
        ClientCommand::List { json } => {
            let clients = store.list(&mut conn).await?;
            let listed: Vec<ListedClient<'_>> = clients
                .iter()
                .map(|c| ListedClient {
                    client_id: &c.client_id,
                    name: c.name.as_deref(),
                    public: c.public,
                    resources: &c.resources,
                    scopes: &c.scopes,
                    redirect_uris: &c.redirect_uris,
                    grant_types: &c.grant_types,
                    exchange_resources: &c.exchange_resources,
                    created_at: c.created_at,
                    created_by: c
                        .registration
                        .as_ref()
                        .map_or("operator", |r| r.via.as_str()),
                    tier: c.tier.as_deref(),
                })
                .collect();
            if json {
                serde_json::to_writer(&mut *out, &listed)?;
                writeln!(out)?;
            } else {
                for c in &listed {
                    let grants: Vec<&str> = c.grant_types.iter().map(|g| g.as_str()).collect();
                    writeln!(
                        out,
                        "{}\t{}\tresources={}\tscopes={}\tredirect_uris={}\tgrant_types={}\tcreated_at={}\tcreated_by={}\ttier={}",
                        c.client_id,
                        if c.public { "public" } else { "confidential" },
                        c.resources.join(","),
                        c.scopes.join(","),
                        c.redirect_uris.join(","),
                        grants.join(","),
                        c.created_at,
                        c.created_by,
                        c.tier.unwrap_or("-")
                    )?;
                }
            }
        }
        ClientCommand::Delete { id } => {
            if !store.delete(&mut conn, &id).await? {
                return Err(CliError::NotFound(id));
            }
            // Its grants go with it: refresh tokens stop, and access tokens issued from them are revoked at every
            // proxy.
            let names = KeyNames::new(config.key_prefix.clone());
            let revoked = crate::oauth::registration::revoke_client_grants(
                &mut conn,
                &names,
                &id,
                clock.now_secs(),
            )
            .await
            .map_err(crate::oauth::clients::ClientError::Redis)?;
            writeln!(out, "deleted client {id} ({revoked} access tokens revoked)")?;
        }
    }
    Ok(())
}

pub(crate) async fn connect(config: &Config) -> Result<RedisConnection, CliError> {
    RedisTarget::from_config(config)
        .map_err(CliError::Connect)?
        .connect(CLI_REDIS_TIMEOUT)
        .await
        .map_err(CliError::Connect)
}
