//! `keymesh user {create,list,delete,policy}`: the users who log in at the authorization page and the account page,
//! and the policy for the API keys they create themselves.

use std::io::{BufRead, Write};

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{connect, CliError};
use crate::config::Config;
use crate::oauth::users::{NewUser, UserStore};
use crate::store::names::KeyNames;
use crate::support::clock::Clock;

/// `keymesh user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (the password is stored only as an Argon2id hash).
    Create(CreateUserArgs),
    /// List users (never a password or hash).
    List {
        /// Print JSON: an array of `{"username", "created_at"}`.
        #[arg(long)]
        json: bool,
    },
    /// Delete a user: they can no longer log in, and their grants' refresh tokens stop working.
    Delete {
        /// The username.
        username: String,
    },
    /// The policy for the API keys users create on the account page: resources, scopes, number and lifetime.
    #[command(subcommand)]
    Policy(super::user_policy::PolicyCommand),
}

/// Arguments of `keymesh user create`.
#[derive(Args)]
pub struct CreateUserArgs {
    /// The login name (1 to 128 visible ASCII characters); it becomes the `sub` of the user's tokens.
    #[arg(long, value_name = "NAME")]
    pub username: String,
    /// Read the password from the first line of standard input (recommended: it stays out of the process list
    /// and the shell history).
    #[arg(
        long,
        conflicts_with = "password",
        required_unless_present = "password"
    )]
    pub password_stdin: bool,
    /// The password (at least 8 characters). Visible to other local users while the command runs: prefer
    /// `--password-stdin`.
    #[arg(long, value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Replace an existing user with the same name.
    #[arg(long)]
    pub force: bool,
}

impl std::fmt::Debug for CreateUserArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateUserArgs")
            .field("username", &self.username)
            .field("password_stdin", &self.password_stdin)
            .field("force", &self.force)
            .finish_non_exhaustive()
    }
}

/// A user as `user list --json` shows it.
#[derive(Serialize)]
struct ListedUser<'a> {
    username: &'a str,
    created_at: u64,
}

/// Runs a `user` subcommand against the configured Redis; the password of `create --password-stdin` is read from
/// `input`.
pub async fn run_user(
    config: &Config,
    command: UserCommand,
    clock: &Clock,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let store = UserStore::new(KeyNames::new(config.key_prefix.clone()));
    match command {
        UserCommand::Create(args) => {
            let password = match args.password {
                Some(password) => password,
                None => {
                    let mut line = String::new();
                    input
                        .read_line(&mut line)
                        .map_err(CliError::PasswordInput)?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let mut conn = connect(config).await?;
            let new = NewUser {
                username: args.username,
                password,
                force: args.force,
            };
            let user = store.create(&mut conn, new, clock.now_secs()).await?;
            writeln!(out, "created user {}", user.username)?;
        }
        UserCommand::List { json } => {
            let mut conn = connect(config).await?;
            let users = store.list(&mut conn).await?;
            let listed: Vec<ListedUser<'_>> = users
                .iter()
                .map(|user| ListedUser {
                    username: &user.username,
                    created_at: user.created_at,
                })
                .collect();
            if json {
                serde_json::to_writer(&mut *out, &listed)?;
                writeln!(out)?;
            } else {
                for user in &listed {
                    writeln!(out, "{}\tcreated_at={}", user.username, user.created_at)?;
                }
            }
        }
        UserCommand::Policy(command) => {
            super::user_policy::run_policy(config, command, out).await?;
        }
        UserCommand::Delete { username } => {
            let mut conn = connect(config).await?;
            if !store.delete(&mut conn, &username).await? {
                return Err(CliError::UserNotFound(username));
            }
            writeln!(out, "deleted user {username}")?;
        }
    }
    Ok(())
}
