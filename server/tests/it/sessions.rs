//! Sessions end when they should: when the operator disables the account or
//! sets a new password (through the CLI), when idle or old past the limits;
//! the sweep deletes what expired; cookies are `Secure` behind https.

use std::time::Duration;

use app::access::Role;
use std::sync::Arc;

use crate::support::{TEST_PASSWORD, config, mlflow_url};
use server::cli::{UsersCommand, users};
use server::services::accounts::{Accounts, SessionSettings};
use server::store::Store;
use server::web::gate::{Gate, GateSettings};
use server::web::hosts::AllowedHosts;

/// The sessions' service and the web gate in front of it, as a Slipway at
/// `external` with these limits builds them.
async fn auth_with(store: &Store, idle: Duration, absolute: Duration, external: &str) -> Gate {
    let external_url: url::Url = external.parse().unwrap();
    let accounts = Accounts::new(
        store.clone(),
        SessionSettings {
            idle,
            absolute,
            single_sign_on: absolute,
        },
        None,
    );
    Gate {
        accounts: Arc::new(accounts),
        settings: GateSettings {
            allowed_hosts: AllowedHosts::new(&[], Some(&external_url)),
            external_url: Some(external_url),
            trusted_proxies: Default::default(),
        },
    }
}

/// The operator's command, the password (if any) on standard input.
async fn cli(config: &server::config::Config, command: UsersCommand, password: &str) {
    let input = format!("{password}\n");
    users(config, command, input.as_bytes()).await.unwrap();
}

async fn signed_in(auth: &Gate, password: &str) -> String {
    auth.accounts
        .login("dana", password, None)
        .await
        .unwrap()
        .unwrap_or_else(|refused| panic!("{refused:?}"))
}

#[tokio::test]
async fn sessions_end_on_account_changes_and_on_expiry() {
    let data = tempfile::tempdir().unwrap();
    let config = config(&mlflow_url(), data.path());
    let add = UsersCommand::Add {
        name: "dana".into(),
        role: Role::Deployer,
        scope: Vec::new(),
        exists_ok: false,
    };
    cli(&config, add, TEST_PASSWORD).await;
    let store = Store::connect(&config.database_url()).await.unwrap();
    let hour = Duration::from_secs(3600);
    let auth = auth_with(&store, hour, hour, "https://slipway.example").await;

    // Disabling ends the session; enabling does not bring it back.
    let token = signed_in(&auth, TEST_PASSWORD).await;
    let user = auth
        .accounts
        .user_for(&token)
        .await
        .unwrap()
        .expect("signed in");
    assert!(user.may(app::access::Action::Rollback { model: "m" }));
    cli(
        &config,
        UsersCommand::Disable {
            name: "dana".into(),
        },
        "",
    )
    .await;
    assert_eq!(auth.accounts.user_for(&token).await.unwrap(), None);
    assert!(
        auth.accounts
            .login("dana", TEST_PASSWORD, None)
            .await
            .unwrap()
            .is_err()
    );
    cli(
        &config,
        UsersCommand::Enable {
            name: "dana".into(),
        },
        "",
    )
    .await;
    assert_eq!(auth.accounts.user_for(&token).await.unwrap(), None);

    // A new role applies to the open session at once; a new password ends it.
    let token = signed_in(&auth, TEST_PASSWORD).await;
    let set_role = UsersCommand::SetRole {
        name: "dana".into(),
        role: Role::Viewer,
        scope: Vec::new(),
    };
    cli(&config, set_role, "").await;
    let user = auth
        .accounts
        .user_for(&token)
        .await
        .unwrap()
        .expect("still signed in");
    assert!(!user.may(app::access::Action::Rollback { model: "m" }));
    let set_password = UsersCommand::SetPassword {
        name: "dana".into(),
    };
    cli(&config, set_password, "another long password").await;
    assert_eq!(auth.accounts.user_for(&token).await.unwrap(), None);
    assert!(
        auth.accounts
            .login("dana", TEST_PASSWORD, None)
            .await
            .unwrap()
            .is_err()
    );
    signed_in(&auth, "another long password").await;

    // Idle too long, or older than the absolute limit (though in use): ended.
    // Long enough that a loaded machine checks a fresh session within it.
    let short = Duration::from_millis(1500);
    let idling = auth_with(&store, short, hour, "https://slipway.example").await;
    let aging = auth_with(&store, hour, short, "https://slipway.example").await;
    let idle_token = signed_in(&idling, "another long password").await;
    let old_token = signed_in(&aging, "another long password").await;
    assert!(
        idling
            .accounts
            .user_for(&idle_token)
            .await
            .unwrap()
            .is_some()
    );
    assert!(aging.accounts.user_for(&old_token).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        idling.accounts.user_for(&idle_token).await.unwrap(),
        None,
        "idle"
    );
    assert_eq!(
        aging.accounts.user_for(&old_token).await.unwrap(),
        None,
        "too old"
    );

    // The sweep deletes expired sessions nobody presents again.
    let forgotten = signed_in(&idling, "another long password").await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(idling.accounts.sweep_sessions().await.unwrap() >= 1);
    assert_eq!(auth.accounts.user_for(&forgotten).await.unwrap(), None);

    // Cookies: Secure behind https, not on plain http (it would never be sent back).
    let cookie = auth.session_cookie("t");
    assert_eq!(
        cookie.to_str().unwrap(),
        "slipway_session=t; Path=/; HttpOnly; SameSite=Lax; Secure"
    );
    let plain = auth_with(&store, hour, hour, "http://127.0.0.1:3000").await;
    assert_eq!(
        plain.session_cookie("t").to_str().unwrap(),
        "slipway_session=t; Path=/; HttpOnly; SameSite=Lax"
    );
}

/// RFC 9207: a callback that names another issuer than the configured one
/// is refused before its code goes anywhere.
#[tokio::test]
async fn a_callback_from_another_issuer_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let config = config(&mlflow_url(), data.path());
    let store = Store::connect(&config.database_url()).await.unwrap();
    let oidc = server::adapters::oidc::Oidc::new(server::adapters::oidc::OidcSettings {
        issuer: "https://idp.example".into(),
        client_id: "slipway".into(),
        client_secret: None,
        scopes: vec!["openid".into()],
        groups_claim: "groups".into(),
        username_claim: "preferred_username".into(),
        role_map: Vec::new(),
        redirect_url: "https://slipway.example/login/oidc/callback"
            .parse()
            .unwrap(),
    });
    let hour = Duration::from_secs(3600);
    let settings = SessionSettings {
        idle: hour,
        absolute: hour,
        single_sign_on: hour,
    };
    let accounts = Accounts::new(store, settings, Some(oidc));
    let refused = accounts
        .finish_sso(Some("st"), "code", "st", Some("https://evil.example"))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, server::error::Error::Forbidden(_)),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("https://evil.example"),
        "{refused}"
    );
    // The configured issuer (a trailing slash aside) goes on to the flow's
    // own checks: this state was never begun.
    let next = accounts
        .finish_sso(Some("st"), "code", "st", Some("https://idp.example/"))
        .await
        .unwrap_err();
    assert!(
        next.to_string().contains("expired or was already used"),
        "{next}"
    );
}
