//! Single sign-on with OpenID Connect: authorization code with PKCE, a
//! nonce and a state bound to the browser by a cookie. The provider is
//! discovered on first use (it may be down when Slipway starts). Its
//! groups map to roles through configuration (`group=role[:pattern,…]`).

use app::access::{Grant, Role};
use base64::Engine;
use openidconnect::core::{CoreClient, CoreProviderMetadata, CoreResponseType};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope,
};
use url::Url;

use crate::error::{Error, Result};
use crate::store::accounts::OidcFlow;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

#[derive(Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub scopes: Vec<String>,
    pub groups_claim: String,
    pub username_claim: String,
    pub role_map: Vec<GroupRole>,
    /// `{external URL}/login/oidc/callback`.
    pub redirect_url: Url,
}

// The client secret stays out of logs.
impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("role_map", &self.role_map)
            .finish_non_exhaustive()
    }
}

/// One line of the role map: members of `group` get `grant`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRole {
    pub group: String,
    pub grant: Grant,
}

impl std::str::FromStr for GroupRole {
    type Err = String;

    /// `group=role` or `group=role:pattern,pattern`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (group, rest) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?}: expected group=role[:pattern,…]"))?;
        let (role, scope) = match rest.split_once(':') {
            Some((role, scope)) => (role, scope.split(',').map(str::to_string).collect()),
            None => (rest, Vec::new()),
        };
        let role =
            Role::parse(role.trim()).ok_or_else(|| format!("{text:?}: unknown role {role:?}"))?;
        if group.trim().is_empty() {
            return Err(format!("{text:?}: the group is empty"));
        }
        Ok(Self {
            group: group.trim().to_string(),
            grant: Grant { role, scope },
        })
    }
}

pub struct Oidc {
    settings: OidcSettings,
    http: openidconnect::reqwest::Client,
    /// Discovered on first use, and again when a token names a signing key
    /// it does not have (the provider rotated its keys).
    client: tokio::sync::RwLock<Option<Client>>,
}

/// Who signed in, as the provider vouches: the person is the issuer and
/// subject (`sub`); the name claim is only what they are called.
#[derive(Debug)]
pub struct SignedIn {
    pub issuer: String,
    pub subject: String,
    pub name: String,
    pub grants: Vec<Grant>,
    pub groups: Vec<String>,
    pub next: String,
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> Self {
        let http = openidconnect::reqwest::Client::builder()
            // Following redirects would let a provider's answer send us anywhere.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .expect("a plain HTTP client builds");
        Self {
            settings,
            http,
            client: tokio::sync::RwLock::new(None),
        }
    }

    /// The issuer as configured, as the callback's `iss` must name it.
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// The provider as the sign-in page names it.
    pub fn provider(&self) -> String {
        Url::parse(&self.settings.issuer)
            .ok()
            .and_then(|url| url.host_str().map(str::to_string))
            .unwrap_or_else(|| self.settings.issuer.clone())
    }

    /// The client from the provider's discovery document (and its keys),
    /// discovered once, or again with `rediscover`.
    async fn client(&self, rediscover: bool) -> Result<Client> {
        if !rediscover && let Some(client) = self.client.read().await.as_ref() {
            return Ok(client.clone());
        }
        let mut slot = self.client.write().await;
        if !rediscover && let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let discovered = async {
            let issuer = IssuerUrl::new(self.settings.issuer.clone())
                .map_err(|err| format!("issuer URL: {err}"))?;
            let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
                .await
                .map_err(|err| format!("discovery at {}: {err}", self.settings.issuer))?;
            let redirect = RedirectUrl::new(self.settings.redirect_url.to_string())
                .map_err(|err| format!("redirect URL: {err}"))?;
            Ok::<_, String>(
                CoreClient::from_provider_metadata(
                    metadata,
                    ClientId::new(self.settings.client_id.clone()),
                    self.settings.client_secret.clone().map(ClientSecret::new),
                )
                .set_redirect_uri(redirect),
            )
        }
        .await
        .map_err(|why| Error::Unavailable(format!("single sign-on: {why}")))?;
        *slot = Some(discovered.clone());
        Ok(discovered)
    }

    /// Where to send the browser, the state its cookie must carry back,
    /// and what the callback needs kept until then.
    pub async fn begin(&self, next: String) -> Result<(Url, String, OidcFlow)> {
        let client = self.client(false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &self.settings.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        let flow = OidcFlow {
            pkce_verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
            next,
        };
        Ok((url, state.secret().clone(), flow))
    }

    /// The callback: the code for tokens (with the PKCE verifier), the ID
    /// token verified (signature, issuer, audience, expiry, nonce), then
    /// the user's name and groups from it, or from the provider's userinfo
    /// where the ID token leaves them out (as many providers do by default).
    pub async fn finish(&self, flow: OidcFlow, code: &str) -> Result<SignedIn> {
        let client = self.client(false).await?;
        let refused = |why: String| Error::Unavailable(format!("single sign-on: {why}"));
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|err| refused(format!("token endpoint: {err}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier))
            .request_async(&self.http)
            .await
            .map_err(|err| refused(format!("exchanging the code: {err}")))?;
        let id_token = tokens
            .extra_fields()
            .id_token()
            .ok_or_else(|| refused("the provider sent no ID token".into()))?;
        let nonce = Nonce::new(flow.nonce);
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(claims) => claims.clone(),
            // Signed with a key Slipway has not seen: the provider may have
            // rotated its keys since discovery. Its keys once more, then.
            Err(openidconnect::ClaimsVerificationError::SignatureVerification(_)) => {
                tracing::info!(
                    "the ID token's key is not among the provider's known keys: discovering again"
                );
                let fresh = self.client(true).await?;
                id_token
                    .claims(&fresh.id_token_verifier(), &nonce)
                    .map_err(|err| refused(format!("the ID token: {err}")))?
                    .clone()
            }
            Err(err) => return Err(refused(format!("the ID token: {err}"))),
        };
        let subject = claims.subject().as_str().to_string();
        // Verified above; its other claims are read from the same token.
        let mut payload = id_token_payload(&id_token.to_string()).map_err(refused)?;
        let wanted = [&self.settings.username_claim, &self.settings.groups_claim];
        if wanted
            .iter()
            .any(|claim| payload.get(claim.as_str()).is_none())
            && let Some(url) = client.user_info_url()
        {
            let info = self
                .user_info(url.as_str(), tokens.access_token().secret(), &subject)
                .await
                .map_err(refused)?;
            for claim in wanted {
                if payload.get(claim.as_str()).is_none()
                    && let Some(value) = info.get(claim.as_str())
                {
                    payload[claim.as_str()] = value.clone();
                }
            }
        }
        let name = payload
            .get(&self.settings.username_claim)
            .and_then(|value| value.as_str())
            .unwrap_or(&subject)
            .to_string();
        let groups: Vec<String> = payload
            .get(&self.settings.groups_claim)
            .and_then(|value| value.as_array())
            .map(|groups| {
                groups
                    .iter()
                    .filter_map(|group| group.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let grants = self.grants_for(&groups);
        Ok(SignedIn {
            issuer: claims.issuer().as_str().to_string(),
            subject,
            name,
            grants,
            groups,
            next: flow.next,
        })
    }

    /// The provider's userinfo for the access token; it must be about the
    /// ID token's subject (OpenID Connect Core 5.3.2).
    async fn user_info(
        &self,
        url: &str,
        access_token: &str,
        subject: &str,
    ) -> std::result::Result<serde_json::Value, String> {
        let answer = self
            .http
            .get(url)
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|err| format!("userinfo: {err}"))?;
        if !answer.status().is_success() {
            return Err(format!("userinfo answered {}", answer.status()));
        }
        let info: serde_json::Value = answer
            .json()
            .await
            .map_err(|err| format!("userinfo is not JSON: {err}"))?;
        if info["sub"].as_str() != Some(subject) {
            return Err("userinfo is about another subject than the ID token".into());
        }
        Ok(info)
    }

    pub fn grants_for(&self, groups: &[String]) -> Vec<Grant> {
        self.settings
            .role_map
            .iter()
            .filter(|mapping| groups.contains(&mapping.group))
            .map(|mapping| mapping.grant.clone())
            .collect()
    }
}

fn id_token_payload(jwt: &str) -> std::result::Result<serde_json::Value, String> {
    let payload = jwt.split('.').nth(1).ok_or("the ID token is not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|err| format!("the ID token's payload: {err}"))?;
    serde_json::from_slice(&bytes).map_err(|err| format!("the ID token's payload: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_map_lines_parse_with_and_without_scope() {
        let plain: GroupRole = "ml-approvers=approver".parse().unwrap();
        assert_eq!(plain.grant, Grant::global(Role::Approver));
        let scoped: GroupRole = "fraud=deployer:fraud-*,risk-*".parse().unwrap();
        assert_eq!(scoped.grant.scope, vec!["fraud-*", "risk-*"]);
        assert!("nogroup".parse::<GroupRole>().is_err());
        assert!("g=wizard".parse::<GroupRole>().is_err());
    }

    /// A provider at idp.example, not discovered (no network).
    fn settings() -> OidcSettings {
        OidcSettings {
            issuer: "https://idp.example".into(),
            client_id: "slipway".into(),
            client_secret: None,
            scopes: vec!["openid".into(), "groups".into()],
            groups_claim: "groups".into(),
            username_claim: "preferred_username".into(),
            role_map: Vec::new(),
            redirect_url: Url::parse("https://slipway.example/login/oidc/callback").unwrap(),
        }
    }

    #[tokio::test]
    async fn userinfo_counts_only_when_it_is_about_the_same_subject() {
        let app = axum::Router::new().route(
            "/userinfo",
            axum::routing::get(|headers: axum::http::HeaderMap| async move {
                let token = headers["authorization"].to_str().unwrap().to_string();
                let sub = if token == "Bearer for-u-1" {
                    "u-1"
                } else {
                    "u-2"
                };
                axum::Json(serde_json::json!({"sub": sub, "groups": ["ml-approvers"]}))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/userinfo", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let oidc = Oidc::new(settings());
        let info = oidc.user_info(&url, "for-u-1", "u-1").await.unwrap();
        assert_eq!(info["groups"][0], "ml-approvers");
        let other = oidc.user_info(&url, "for-u-1", "u-9").await.unwrap_err();
        assert!(other.contains("another subject"), "{other}");
    }

    #[tokio::test]
    async fn the_authorization_request_carries_pkce_state_and_nonce() {
        // Discovery is what needs a provider; the request itself is built
        // from the client, so a client is made from fixed metadata here.
        let oidc = Oidc::new(settings());
        let metadata: CoreProviderMetadata = serde_json::from_value(serde_json::json!({
            "issuer": "https://idp.example",
            "authorization_endpoint": "https://idp.example/authorize",
            "token_endpoint": "https://idp.example/token",
            "jwks_uri": "https://idp.example/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"]
        }))
        .unwrap();
        let client =
            CoreClient::from_provider_metadata(metadata, ClientId::new("slipway".into()), None)
                .set_redirect_uri(
                    RedirectUrl::new(oidc.settings.redirect_url.to_string()).unwrap(),
                );
        *oidc.client.write().await = Some(client);
        let (url, state, flow) = oidc.begin("/models".into()).await.unwrap();
        let query: std::collections::HashMap<String, String> =
            url.query_pairs().into_owned().collect();
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(query["state"], state);
        assert!(query["code_challenge"].len() >= 43, "{query:?}");
        assert!(!query["nonce"].is_empty());
        assert_eq!(
            query["redirect_uri"],
            "https://slipway.example/login/oidc/callback"
        );
        assert!(query["scope"].contains("groups"));
        // The verifier kept for the callback is the one the challenge was made from.
        let expected = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            flow.pkce_verifier,
        ));
        assert_eq!(query["code_challenge"], expected.as_str());
        assert_eq!(flow.next, "/models");
    }
}
