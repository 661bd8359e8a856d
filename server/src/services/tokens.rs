//! Service tokens: what pipelines and the CLI present to the API. A token
//! acts for its owner with a grant no larger than the owner's, checked when
//! it is made and again on every use (a demoted or disabled owner's tokens
//! stop working with them). Only the secret's hash is stored; the secret is
//! shown once, to its owner.

use app::access::{Action, Grant, Role, User, authorize, grants_cover};
use app::model::{AuditAction, CreatedToken, FieldErrors, ServiceToken, TokenRequest, TokensPage};

use super::accounts::{new_token, token_hash, user_of};
use super::audit::Audit;
use crate::error::{Error, Invalid, Result};
use crate::store::Store;
use crate::store::drafts::DraftForm;
use crate::store::now_ms;

/// Every secret starts so, which tells a token from a session and lets
/// secret scanners find leaked ones.
const SECRET_PREFIX: &str = "slp_";
const DAY_MS: i64 = 24 * 60 * 60 * 1000;
pub const MAX_DAYS: i64 = 366;
const DEFAULT_DAYS: i64 = 90;
const MAX_PATTERNS: usize = 20;
/// A token's last use is written at most this often.
const TOUCH_EVERY_MS: i64 = 60_000;
/// How long a new secret waits to be shown on the page after the form.
const REVEAL_WITHIN_MS: i64 = 10 * 60 * 1000;

#[derive(Clone)]
pub struct Tokens {
    store: Store,
    audit: Audit,
}

/// Why a bearer token was refused, said to its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRefused(pub String);

impl Tokens {
    pub fn new(store: Store) -> Self {
        Self {
            audit: Audit::new(store.clone()),
            store,
        }
    }

    /// The tokens `user` may see (an account admin: all), and the secret of
    /// the one just made, if `created` names it.
    pub async fn page(&self, user: &User, created: Option<&str>) -> Result<TokensPage> {
        people_only(user)?;
        let everyone = user.may(Action::ManageAccounts);
        let tokens = self
            .store
            .tokens((!everyone).then_some(user.name.as_str()))
            .await?;
        let created = match created {
            Some(id) => {
                self.store
                    .take_draft::<CreatedToken>(
                        &user.name,
                        DraftForm::TokenSecret,
                        id,
                        now_ms() - REVEAL_WITHIN_MS,
                    )
                    .await?
            }
            None => None,
        };
        let roles = Role::ALL
            .into_iter()
            .filter(|role| user.grants.iter().any(|held| held.role >= *role))
            .collect();
        Ok(TokensPage {
            tokens,
            roles,
            created,
            as_of_ms: now_ms(),
        })
    }

    /// Makes a token for `user`; its listing and its secret.
    pub async fn create(
        &self,
        user: &User,
        request: &TokenRequest,
    ) -> Result<(ServiceToken, String)> {
        people_only(user)?;
        let grant = checked(request)?;
        let days = expiry_days(&request.expires_days)?;
        grants_cover(user, &grant).map_err(|denied| Error::Forbidden(denied.0))?;
        let secret = new_secret();
        let now = now_ms();
        let token = ServiceToken {
            id: uuid::Uuid::new_v4().simple().to_string(),
            name: request.name.trim().to_string(),
            owner: user.name.clone(),
            grant,
            created_ms: now,
            expires_ms: now + days * DAY_MS,
            last_used_ms: None,
            revoked_ms: None,
        };
        if !self
            .store
            .insert_token(&token, &token_hash(&secret))
            .await?
        {
            return Err(Error::Conflict(format!(
                "You have a token named {} already; revoke it or choose another name.",
                token.name
            )));
        }
        self.audit
            .record(
                &user.actor(),
                AuditAction::Token,
                &format!("user:{}", user.name),
                &format!(
                    "made token {} ({}), expires in {days} days",
                    token.name, token.grant
                ),
            )
            .await?;
        tracing::info!(user = %user.name, token = %token.name, grant = %token.grant, "service token made");
        Ok((token, secret))
    }

    /// Keeps a new secret for the page that shows it once; the id to name it by.
    pub async fn keep_secret(&self, user: &User, created: &CreatedToken) -> Result<String> {
        self.store
            .insert_draft(&user.name, DraftForm::TokenSecret, created)
            .await
    }

    /// Its owner or an account admin revokes a token; at once, on every replica.
    pub async fn revoke(&self, user: &User, id: &str) -> Result<ServiceToken> {
        people_only(user)?;
        let token = self
            .store
            .token(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no token {id}")))?;
        if token.owner != user.name {
            authorize(user, Action::ManageAccounts).map_err(|denied| Error::Forbidden(denied.0))?;
        }
        if !self.store.revoke_token(id, &user.actor()).await? {
            return Err(Error::Conflict(format!(
                "Token {} was revoked already.",
                token.name
            )));
        }
        self.audit
            .record(
                &user.actor(),
                AuditAction::Token,
                &format!("user:{}", token.owner),
                &format!("revoked token {}", token.name),
            )
            .await?;
        Ok(token)
    }

    /// The user a bearer secret acts as, or why it may not.
    pub async fn user_for(&self, secret: &str) -> Result<std::result::Result<User, TokenRefused>> {
        let refused = |why: &str| Ok(Err(TokenRefused(why.to_string())));
        if !secret.starts_with(SECRET_PREFIX) {
            return refused("This is not a Slipway token (they start with slp_).");
        }
        let Some(token) = self.store.token_by_secret(&token_hash(secret)).await? else {
            return refused("This token is not known here.");
        };
        let now = now_ms();
        if token.revoked_ms.is_some() {
            return refused(&format!("Token {} was revoked.", token.name));
        }
        if now >= token.expires_ms {
            return refused(&format!(
                "Token {} expired on {}.",
                token.name,
                app::time::format_instant(token.expires_ms)
            ));
        }
        let owner = match self.store.account(&token.owner).await? {
            Some(account) if !account.disabled => user_of(&account),
            _ => {
                return refused(&format!(
                    "Token {}'s owner {} is disabled or gone.",
                    token.name, token.owner
                ));
            }
        };
        if let Err(denied) = grants_cover(&owner, &token.grant) {
            return refused(&format!("Token {}: {denied}", token.name));
        }
        if token
            .last_used_ms
            .is_none_or(|used| now - used > TOUCH_EVERY_MS)
        {
            self.store.touch_token(&token.id, now).await?;
        }
        Ok(Ok(User {
            name: owner.name,
            authenticated: true,
            grants: vec![token.grant],
            token: Some(token.name),
        }))
    }
}

/// Tokens are made and revoked by people on the pages, not by tokens.
fn people_only(user: &User) -> Result<()> {
    if !user.authenticated {
        return Err(Error::Unauthenticated);
    }
    if user.token.is_some() {
        return Err(Error::Forbidden(
            "A token cannot manage tokens; sign in on the tokens page.".into(),
        ));
    }
    Ok(())
}

fn checked(request: &TokenRequest) -> Result<Grant> {
    let mut fields = FieldErrors::new();
    let name = request.name.trim();
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !name_ok {
        fields.insert(
            "name".into(),
            "1 to 64 of letters, digits, '.', '_', '-' (the pipeline it is for)".into(),
        );
    }
    let role = Role::parse(request.role.trim());
    if role.is_none() {
        let names: Vec<&str> = Role::ALL.iter().map(|role| role.as_str()).collect();
        fields.insert("role".into(), format!("one of {}", names.join(", ")));
    }
    let scope: Vec<String> = request
        .scope
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|pattern| !pattern.is_empty())
        .map(str::to_string)
        .collect();
    let patterns_ok = scope.len() <= MAX_PATTERNS
        && scope.iter().all(|pattern| {
            pattern.len() <= 200
                && pattern
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '*' | '/'))
        });
    if !patterns_ok {
        fields.insert(
            "scope".into(),
            format!(
                "at most {MAX_PATTERNS} name patterns of letters, digits, '.', '_', '-', '/', '*'"
            ),
        );
    }
    if let Err(Error::Invalid(invalid)) = expiry_days(&request.expires_days) {
        fields.extend(invalid.fields);
    }
    match role {
        Some(role) if fields.is_empty() => Ok(Grant { role, scope }),
        _ => Err(Error::Invalid(Invalid {
            problems: Vec::new(),
            fields,
        })),
    }
}

fn expiry_days(text: &str) -> Result<i64> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(DEFAULT_DAYS);
    }
    match text.parse::<i64>() {
        Ok(days) if (1..=MAX_DAYS).contains(&days) => Ok(days),
        _ => Err(Error::Invalid(Invalid {
            problems: Vec::new(),
            fields: FieldErrors::from([(
                "expires_days".to_string(),
                format!("a whole number of days from 1 to {MAX_DAYS}"),
            )]),
        })),
    }
}

fn new_secret() -> String {
    format!("{SECRET_PREFIX}{}", new_token())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str, role: &str, scope: &str, days: &str) -> TokenRequest {
        TokenRequest {
            name: name.into(),
            role: role.into(),
            scope: scope.into(),
            expires_days: days.into(),
        }
    }

    #[test]
    fn a_request_is_checked_field_by_field() {
        let grant = checked(&request("ci-deploy", "deployer", "fraud-*, iris", "")).unwrap();
        assert_eq!(grant.role, Role::Deployer);
        assert_eq!(grant.scope, vec!["fraud-*", "iris"]);
        let Err(Error::Invalid(invalid)) = checked(&request("", "boss", "a b;c", "0")) else {
            panic!("invalid");
        };
        let fields: Vec<&str> = invalid.fields.keys().map(String::as_str).collect();
        assert_eq!(fields, ["expires_days", "name", "role", "scope"]);
        assert_eq!(expiry_days("").unwrap(), DEFAULT_DAYS);
        assert!(expiry_days("367").is_err());
    }

    #[test]
    fn secrets_are_long_random_and_marked() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with(SECRET_PREFIX) && a.len() == SECRET_PREFIX.len() + 43);
        assert_ne!(a, b);
        assert_ne!(token_hash(&a), token_hash(&b));
    }
}
