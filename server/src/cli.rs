//! The command line: with no subcommand, the server; `users …` manages
//! local accounts in the same database, for operators; the pipeline
//! commands (`launch`, `promote`, …) talk to a running Slipway's API
//! (`crate::client`).

use std::io::BufRead;

use app::access::{Grant, Role};
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::error::Result;
use crate::services::accounts::Accounts;
use crate::store::Store;
use crate::store::accounts::AccountSource;

#[derive(Debug, Parser)]
#[command(
    name = "slipway",
    version,
    about = "Control plane for shipping ML models",
    after_help = "Secrets (--mlflow-password, --mlflow-token, --database-url, --job-mlflow-password, \
                  --job-mlflow-token, --webhook-secret, --git-webhook-secret, --oidc-client-secret) \
                  are best given as their variables, or in files: <VARIABLE>_FILE or <flag>-file \
                  (a flag's value is visible to every user of the machine in ps)."
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

// Parsed once, at start-up: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Local accounts (passwords are read from standard input).
    #[command(subcommand)]
    Users(UsersCommand),
    #[command(flatten)]
    Client(crate::client::ClientCommand),
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

/// Runs a `users` command; what it prints is for the operator.
pub async fn users(config: &Config, command: UsersCommand, input: impl BufRead) -> Result<String> {
    let store = Store::connect(&config.database_url()).await?;
    let accounts = Accounts::new(store, config.session_settings(), None);
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
            let password = read_line(input)?;
            accounts
                .add(&actor, &name, Grant { role, scope }, &password, exists_ok)
                .await
        }
        UsersCommand::List => {
            let mut out = format!("{:<24} {:<6} {:<9} {}\n", "NAME", "SOURCE", "STATE", "ROLE");
            for account in accounts.list().await? {
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
            accounts
                .set_role(&actor, &name, Grant { role, scope })
                .await
        }
        UsersCommand::SetPassword { name } => {
            let password = read_line(input)?;
            accounts.set_password(&actor, &name, &password).await
        }
        UsersCommand::Disable { name } => accounts.set_disabled(&actor, &name, true).await,
        UsersCommand::Enable { name } => accounts.set_disabled(&actor, &name, false).await,
    }
}

/// The first line of `input`, without its line ending.
fn read_line(mut input: impl BufRead) -> Result<String> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
