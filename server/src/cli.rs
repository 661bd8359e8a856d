//! The command line: with no subcommand, the server; `users …` manages
//! local accounts in the same database, for operators.

use std::io::BufRead;

use app::access::{Grant, Role};
use clap::{Parser, Subcommand};

use crate::auth::password;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::{Account, AccountSource, Store, now_ms};

#[derive(Debug, Parser)]
#[command(
    name = "slipway",
    version,
    about = "Control plane for shipping ML models"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Local accounts (passwords are read from standard input).
    #[command(subcommand)]
    Users(UsersCommand),
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Creates an account; its password is the first line of standard input.
    Add {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Limits the role to projects and models whose names match
        /// (`*` wildcard); repeat for several. Outside it the account is a viewer.
        #[arg(long)]
        scope: Vec<String>,
        /// Leave an existing account as it is instead of failing.
        #[arg(long)]
        exists_ok: bool,
    },
    /// Every account: name, source, role, state.
    List,
    SetRole {
        name: String,
        #[arg(value_parser = parse_role)]
        role: Role,
        #[arg(long)]
        scope: Vec<String>,
    },
    /// Sets a new password (from standard input) and ends the account's sessions.
    SetPassword {
        name: String,
    },
    /// Refuses the account's sign-ins and ends its sessions.
    Disable {
        name: String,
    },
    Enable {
        name: String,
    },
}

fn parse_role(text: &str) -> std::result::Result<Role, String> {
    Role::parse(text).ok_or_else(|| {
        let names: Vec<&str> = Role::ALL.iter().map(|role| role.as_str()).collect();
        format!("unknown role {text:?}; one of {}", names.join(", "))
    })
}

/// Account names: what a person or an identity provider would use, and
/// nothing that needs escaping in a log line or a URL path.
pub fn check_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if valid {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "account name {name:?}: 1 to 64 of letters, digits, '.', '_', '-', '@'"
        )))
    }
}

/// Runs a `users` command; what it prints is for the operator.
pub async fn users(config: &Config, command: UsersCommand, input: impl BufRead) -> Result<String> {
    let store = Store::connect(&config.database_url()).await?;
    let actor = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    );
    match command {
        UsersCommand::Add {
            name,
            role,
            scope,
            exists_ok,
        } => {
            check_name(&name)?;
            if store.account(&name).await?.is_some() {
                return if exists_ok {
                    Ok(format!("{name} exists; left as it is"))
                } else {
                    Err(Error::Config(format!("account {name} exists")))
                };
            }
            let password = read_password(input)?;
            let grant = Grant { role, scope };
            let detail = format!("created with role {grant}");
            let created = store
                .create_account(&Account {
                    name: name.clone(),
                    password_hash: Some(hash(password).await?),
                    grants: vec![grant],
                    source: AccountSource::Local,
                    disabled: false,
                    created_ms: now_ms(),
                })
                .await?;
            if !created {
                return Err(Error::Config(format!("account {name} exists")));
            }
            store
                .record_event(&actor, "account", &format!("user:{name}"), &detail)
                .await?;
            Ok(format!("{name}: {detail}"))
        }
        UsersCommand::List => {
            let mut out = format!("{:<24} {:<6} {:<9} {}\n", "NAME", "SOURCE", "STATE", "ROLE");
            for account in store.accounts().await? {
                let grants: Vec<String> = account.grants.iter().map(Grant::to_string).collect();
                out.push_str(&format!(
                    "{:<24} {:<6} {:<9} {}\n",
                    account.name,
                    match account.source {
                        AccountSource::Local => "local",
                        AccountSource::Oidc => "oidc",
                    },
                    if account.disabled {
                        "disabled"
                    } else {
                        "active"
                    },
                    grants.join("; ")
                ));
            }
            Ok(out.trim_end().to_string())
        }
        UsersCommand::SetRole { name, role, scope } => {
            let grant = Grant { role, scope };
            found(
                &name,
                store
                    .set_account_grants(&name, std::slice::from_ref(&grant))
                    .await?,
            )?;
            let detail = format!("role set to {grant}");
            store
                .record_event(&actor, "account", &format!("user:{name}"), &detail)
                .await?;
            Ok(format!("{name}: {detail}"))
        }
        UsersCommand::SetPassword { name } => {
            let account = store.account(&name).await?;
            found(&name, account.is_some())?;
            if account.is_some_and(|account| account.source != AccountSource::Local) {
                return Err(Error::Config(format!(
                    "{name} signs in through single sign-on and has no password here"
                )));
            }
            let hashed = hash(read_password(input)?).await?;
            found(&name, store.set_account_password(&name, &hashed).await?)?;
            store
                .record_event(
                    &actor,
                    "account",
                    &format!("user:{name}"),
                    "password changed; sessions ended",
                )
                .await?;
            Ok(format!("{name}: password changed; its sessions ended"))
        }
        UsersCommand::Disable { name } => {
            found(&name, store.set_account_disabled(&name, true).await?)?;
            store
                .record_event(
                    &actor,
                    "account",
                    &format!("user:{name}"),
                    "disabled; sessions ended",
                )
                .await?;
            Ok(format!("{name}: disabled; its sessions ended"))
        }
        UsersCommand::Enable { name } => {
            found(&name, store.set_account_disabled(&name, false).await?)?;
            store
                .record_event(&actor, "account", &format!("user:{name}"), "enabled")
                .await?;
            Ok(format!("{name}: enabled"))
        }
    }
}

fn found(name: &str, exists: bool) -> Result<()> {
    if exists {
        Ok(())
    } else {
        Err(Error::Config(format!("no account named {name}")))
    }
}

fn read_password(mut input: impl BufRead) -> Result<String> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    password::check_strength(&password).map_err(Error::Config)?;
    Ok(password)
}

async fn hash(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|err| Error::Internal(format!("hashing: {err}")))
}
