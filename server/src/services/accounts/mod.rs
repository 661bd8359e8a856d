//! Accounts and sessions: signing in (a password, or single sign-on),
//! sessions and their expiry, and the operator's account commands. Who a
//! request comes from is found by the web gate through `user_for`; what a
//! signed-in user may do is decided in `app::access::authorize`.

pub mod limiter;
pub mod password;

use std::net::IpAddr;
use std::time::Duration;

use app::access::Grant;
use app::access::User;
use app::model::AuditAction;
use base64::Engine;
use sha2::{Digest, Sha256};
use url::Url;

use super::audit::Audit;
use crate::adapters::oidc::Oidc;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::accounts::{Account, AccountSource};
use crate::store::now_ms;
use limiter::LoginLimiter;

/// A session's last-seen time is written at most this often.
const TOUCH_EVERY_MS: i64 = 60_000;

#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub absolute: Duration,
    /// A single sign-on session ends this long after sign-in: the person
    /// signs in through the provider again, which says afresh whether
    /// their groups still grant a role (a page visit starts it on its own).
    pub single_sign_on: Duration,
}

/// What a session token stands for now.
#[derive(Debug, Clone, PartialEq)]
pub enum Session {
    Open(User),
    /// It ended now: expired, or its account disabled. `single_sign_on`:
    /// it was a provider's session whose time ran out, to be renewed there.
    Ended {
        single_sign_on: bool,
    },
    /// No such session (ended before, or never one).
    Unknown,
}

pub struct Accounts {
    store: Store,
    audit: Audit,
    settings: SessionSettings,
    limiter: LoginLimiter,
    hashing: password::Hashing,
    oidc: Option<Oidc>,
}

/// Why a sign-in was refused. Deliberately vague to the user: a wrong name
/// and a wrong password look the same.
#[derive(Debug)]
pub enum LoginRefused {
    Invalid,
    Throttled(Duration),
}

impl Accounts {
    pub fn new(store: Store, settings: SessionSettings, oidc: Option<Oidc>) -> Self {
        Self {
            audit: Audit::new(store.clone()),
            store,
            settings,
            limiter: LoginLimiter::default(),
            hashing: password::Hashing::default(),
            oidc,
        }
    }

    /// The single sign-on provider's name, when there is one.
    pub fn single_sign_on(&self) -> Option<String> {
        self.oidc.as_ref().map(Oidc::provider)
    }

    /// Starts a single sign-on that returns to `next` (a local path): the
    /// provider's URL, and the state the browser must carry back.
    pub async fn begin_sso(&self, next: String) -> Result<(Url, String)> {
        let oidc = self.oidc()?;
        let (url, state, flow) = oidc.begin(next).await?;
        self.store
            .start_oidc_flow(&token_hash(&state), &flow)
            .await?;
        Ok((url, state))
    }

    /// Finishes a single sign-on: the account as the provider describes it
    /// now, and a new session; the token and where to go. `browser_state`
    /// is the state the browser kept from `begin_sso`.
    pub async fn finish_sso(
        &self,
        browser_state: Option<&str>,
        code: &str,
        state: &str,
        issuer: Option<&str>,
    ) -> Result<(String, String)> {
        let oidc = self.oidc()?;
        // The state must come back to the browser that started the login.
        if browser_state != Some(state) {
            return Err(Error::Forbidden(
                "the sign-in did not start in this browser".into(),
            ));
        }
        // RFC 9207: a provider that names itself must be the one configured
        // (a code from another provider is not exchanged with this one).
        if let Some(issuer) = issuer
            && issuer.trim_end_matches('/') != oidc.issuer().trim_end_matches('/')
        {
            return Err(Error::Forbidden(format!(
                "the callback came from issuer {issuer:?}, not {:?}",
                oidc.issuer()
            )));
        }
        let flow = self
            .store
            .take_oidc_flow(&token_hash(state))
            .await?
            .ok_or_else(|| Error::invalid("this sign-in expired or was already used"))?;
        let signed_in = oidc.finish(flow, code).await?;
        let name = signed_in.name.clone();
        check_name(&name)?;
        if signed_in.grants.is_empty() {
            // The provider took their groups away: what they could do ends
            // now, in every open session, not when those expire.
            if let Some(known) = self
                .store
                .sso_account_name(&signed_in.issuer, &signed_in.subject)
                .await?
            {
                self.store.set_account_grants(&known, &[]).await?;
                self.store.end_sessions_of(&known).await?;
            }
            let refused = self
                .audit
                .record(
                    &name,
                    AuditAction::Login,
                    &subject(&name),
                    &format!(
                        "refused: single sign-on groups {:?} grant no role",
                        signed_in.groups
                    ),
                )
                .await;
            if let Err(err) = refused {
                tracing::warn!(error = %err, "auditing a refused single sign-on");
            }
            return Err(Error::Forbidden(format!(
                "{name}'s groups grant no role in Slipway"
            )));
        }
        let account = match self
            .store
            .upsert_sso_account(
                &signed_in.issuer,
                &signed_in.subject,
                &name,
                &signed_in.grants,
            )
            .await?
        {
            Ok(account) => account,
            Err(why) => {
                self.audit
                    .record(
                        &name,
                        AuditAction::Login,
                        &subject(&name),
                        &format!("refused: {why}"),
                    )
                    .await?;
                return Err(Error::Forbidden(why));
            }
        };
        // Known by their person, they keep the account's name whatever
        // the name claim says today.
        let name = account.name.clone();
        if account.disabled {
            return Err(Error::Forbidden(format!("{name}'s account is disabled")));
        }
        let token = self.open_session(&name).await?;
        let grants: Vec<String> = signed_in.grants.iter().map(ToString::to_string).collect();
        self.audit
            .record(
                &name,
                AuditAction::Login,
                &subject(&name),
                &format!("signed in through single sign-on as {}", grants.join("; ")),
            )
            .await?;
        tracing::info!(user = %name, groups = ?signed_in.groups, "signed in through single sign-on");
        Ok((token, signed_in.next))
    }

    /// The most password hashes that were ever computed at once (tests
    /// read it: it must stay within `password::HASHES_AT_ONCE`).
    pub fn hashing_peak(&self) -> usize {
        self.hashing.peak()
    }

    fn oidc(&self) -> Result<&Oidc> {
        self.oidc
            .as_ref()
            .ok_or_else(|| Error::NotFound("single sign-on is not configured".into()))
    }

    /// Checks a local account's password and opens a new session; returns its token.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Result<std::result::Result<String, LoginRefused>> {
        // No account has a longer name: refused before anything is counted or hashed.
        if check_name(name).is_err() {
            return Ok(Err(LoginRefused::Invalid));
        }
        if let Err(held) = self.limiter.attempt(name, address) {
            // The first refusal of a window is recorded; the rest of a burst is not.
            if held.first {
                tracing::warn!(user = name, ?address, "sign-in refused: too many attempts");
                self.audit
                    .record(
                        name,
                        AuditAction::Login,
                        &subject(name),
                        &format!(
                            "refused: too many failed attempts{}; further ones are refused unrecorded for {} min",
                            address.map(|address| format!(" from {address}")).unwrap_or_default(),
                            held.wait.as_secs().div_ceil(60)
                        ),
                    )
                    .await?;
            }
            return Ok(Err(LoginRefused::Throttled(held.wait)));
        }
        let account = self.store.account(name).await?;
        let stored = account
            .as_ref()
            .filter(|account| !account.disabled)
            .and_then(|account| account.password_hash.clone());
        let password = password.to_string();
        let matches = self.hashing.verify(password, stored).await?;
        if !matches {
            tracing::warn!(user = name, ?address, "sign-in failed");
            self.audit
                .record(
                    name,
                    AuditAction::Login,
                    &subject(name),
                    "failed: wrong name or password, or a disabled account",
                )
                .await?;
            return Ok(Err(LoginRefused::Invalid));
        }
        self.limiter.succeeded(name, address);
        let token = self.open_session(name).await?;
        tracing::info!(user = name, ?address, "signed in");
        self.audit
            .record(
                name,
                AuditAction::Login,
                &subject(name),
                "signed in with a password",
            )
            .await?;
        Ok(Ok(token))
    }

    /// A new session for an account whose identity is already checked.
    pub async fn open_session(&self, name: &str) -> Result<String> {
        let token = new_token();
        self.store.create_session(&token_hash(&token), name).await?;
        Ok(token)
    }

    pub async fn logout(&self, token: &str) -> Result<()> {
        self.store.end_session(&token_hash(token)).await
    }

    /// The signed-in user of a session token; `None` for an unknown, ended,
    /// expired or disabled one.
    pub async fn user_for(&self, token: &str) -> Result<Option<User>> {
        Ok(match self.session(token).await? {
            Session::Open(user) => Some(user),
            Session::Ended { .. } | Session::Unknown => None,
        })
    }

    /// What a session token stands for now; one that is due to end ends.
    pub async fn session(&self, token: &str) -> Result<Session> {
        let hash = token_hash(token);
        let Some(session) = self.store.session(&hash).await? else {
            return Ok(Session::Unknown);
        };
        let now = now_ms();
        let idle_ms = self.settings.idle.as_millis() as i64;
        let absolute_ms = self.settings.absolute.as_millis() as i64;
        let provider_ms = self.settings.single_sign_on.as_millis() as i64;
        let provider_due =
            session.account.source == AccountSource::Oidc && now - session.created_ms > provider_ms;
        if session.account.disabled
            || now - session.last_seen_ms > idle_ms
            || now - session.created_ms > absolute_ms
            || provider_due
        {
            self.store.end_session(&hash).await?;
            return Ok(Session::Ended {
                single_sign_on: provider_due && !session.account.disabled,
            });
        }
        if now - session.last_seen_ms > TOUCH_EVERY_MS {
            self.store.touch_session(&hash).await?;
        }
        Ok(Session::Open(user_of(&session.account)))
    }

    /// Deletes expired sessions (the gate refuses them anyway; this keeps the table small).
    pub async fn sweep_sessions(&self) -> Result<u64> {
        let now = now_ms();
        self.store
            .end_expired_sessions(
                now - self.settings.idle.as_millis() as i64,
                now - self.settings.absolute.as_millis() as i64,
            )
            .await
    }
}

/// The operator's account commands (`slipway users …`), each audited as
/// `actor`; what they return is for the operator to read.
impl Accounts {
    /// Creates a local account with `password`; `exists_ok` leaves an
    /// existing one as it is.
    pub async fn add(
        &self,
        actor: &str,
        name: &str,
        grant: Grant,
        password: &str,
        exists_ok: bool,
    ) -> Result<String> {
        check_name(name)?;
        if self.store.account(name).await?.is_some() {
            return if exists_ok {
                Ok(format!("{name} exists; left as it is"))
            } else {
                Err(Error::Conflict(format!("account {name} exists")))
            };
        }
        let detail = format!("created with role {grant}");
        let created = self
            .store
            .create_account(&Account {
                name: name.to_string(),
                password_hash: Some(hash(password).await?),
                grants: vec![grant],
                source: AccountSource::Local,
                disabled: false,
                created_ms: now_ms(),
            })
            .await?;
        if !created {
            return Err(Error::Conflict(format!("account {name} exists")));
        }
        self.audit
            .record(actor, AuditAction::Account, &subject(name), &detail)
            .await?;
        Ok(format!("{name}: {detail}"))
    }

    pub async fn list(&self) -> Result<Vec<Account>> {
        self.store.accounts().await
    }

    pub async fn set_role(&self, actor: &str, name: &str, grant: Grant) -> Result<String> {
        found(
            name,
            self.store
                .set_account_grants(name, std::slice::from_ref(&grant))
                .await?,
        )?;
        let detail = format!("role set to {grant}");
        self.audit
            .record(actor, AuditAction::Account, &subject(name), &detail)
            .await?;
        Ok(format!("{name}: {detail}"))
    }

    /// A new password; the account's sessions end.
    pub async fn set_password(&self, actor: &str, name: &str, password: &str) -> Result<String> {
        let account = self.store.account(name).await?;
        found(name, account.is_some())?;
        if account.is_some_and(|account| account.source != AccountSource::Local) {
            return Err(Error::invalid(format!(
                "{name} signs in through single sign-on and has no password here"
            )));
        }
        let hashed = hash(password).await?;
        found(name, self.store.set_account_password(name, &hashed).await?)?;
        self.audit
            .record(
                actor,
                AuditAction::Account,
                &subject(name),
                "password changed; sessions ended",
            )
            .await?;
        Ok(format!("{name}: password changed; its sessions ended"))
    }

    /// Refuses (or again allows) the account's sign-ins; disabling ends its sessions.
    pub async fn set_disabled(&self, actor: &str, name: &str, disabled: bool) -> Result<String> {
        found(name, self.store.set_account_disabled(name, disabled).await?)?;
        let detail = if disabled {
            "disabled; sessions ended"
        } else {
            "enabled"
        };
        self.audit
            .record(actor, AuditAction::Account, &subject(name), detail)
            .await?;
        Ok(if disabled {
            format!("{name}: disabled; its sessions ended")
        } else {
            format!("{name}: enabled")
        })
    }
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
        Err(Error::invalid(format!(
            "account name {name:?}: 1 to 64 of letters, digits, '.', '_', '-', '@'"
        )))
    }
}

pub fn user_of(account: &Account) -> User {
    User {
        name: account.name.clone(),
        authenticated: true,
        grants: account.grants.clone(),
        token: None,
    }
}

fn subject(name: &str) -> String {
    format!("user:{name}")
}

fn found(name: &str, exists: bool) -> Result<()> {
    if exists {
        Ok(())
    } else {
        Err(Error::NotFound(format!("no account named {name}")))
    }
}

async fn hash(password: &str) -> Result<String> {
    password::check_strength(password).map_err(Error::invalid)?;
    let password = password.to_string();
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|err| Error::Internal(format!("hashing: {err}")))
}

/// 32 random bytes, base64url: a session's token, a service token's secret.
pub(crate) fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the OS has randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored of a session token, a sign-in's state or a service
/// token's secret: its hash only.
pub(crate) fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
