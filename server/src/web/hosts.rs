//! Which host names Slipway answers to. A page that a DNS-rebinding attack
//! points at Slipway still names the attacker's host in `Host`; refused
//! before any handler, it reaches nothing.

use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use url::Url;

/// One allowed host: a name or address, and a port if it must match too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    host: String,
    port: Option<u16>,
}

impl FromStr for AllowedHost {
    type Err = String;

    /// `host` or `host:port`; IPv6 addresses in brackets (`[::1]:3000`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (host, port) = split_host(text.trim())
            .ok_or_else(|| format!("{text:?} is not a host name or host:port"))?;
        Ok(Self { host, port })
    }
}

/// `host[:port]` as (lower-case host, port), or `None` if it is not one:
/// a DNS name, an IPv4 address or a bracketed IPv6 address, then digits.
fn split_host(text: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (address, after) = rest.split_once(']')?;
            address.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after {
                "" => "",
                after => after.strip_prefix(':')?,
            };
            (format!("[{address}]"), port)
        }
        None => {
            let (host, port) = text.rsplit_once(':').unwrap_or((text, ""));
            let name = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
            if host.is_empty() || !host.chars().all(name) {
                return None;
            }
            (host.to_string(), port)
        }
    };
    let port = match port {
        "" if !text.ends_with(':') => None,
        digits => Some(digits.parse::<u16>().ok()?),
    };
    Some((host.to_ascii_lowercase(), port))
}

impl AllowedHost {
    fn of_url(url: &Url) -> Option<Self> {
        let host = match url.host()? {
            url::Host::Ipv6(address) => format!("[{address}]"),
            host => host.to_string().to_ascii_lowercase(),
        };
        // A browser leaves the default port out of `Host`; a port the URL
        // names must match.
        Some(Self {
            host,
            port: url.port(),
        })
    }

    fn admits(&self, host: &str, port: Option<u16>) -> bool {
        self.host == host && (self.port.is_none() || self.port == port)
    }
}

/// The hosts Slipway answers to: those configured and `--external-url`'s;
/// with neither, this machine's loopback names on any port (a laptop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts(Vec<AllowedHost>);

const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

impl AllowedHosts {
    pub fn new(configured: &[AllowedHost], external_url: Option<&Url>) -> Self {
        let mut hosts: Vec<AllowedHost> = configured.to_vec();
        hosts.extend(external_url.and_then(AllowedHost::of_url));
        if hosts.is_empty() {
            hosts = LOOPBACK
                .iter()
                .map(|host| AllowedHost {
                    host: (*host).to_string(),
                    port: None,
                })
                .collect();
        }
        Self(hosts)
    }

    /// Whether a request naming `host` (its `Host` header) is for Slipway.
    pub fn admits(&self, host: &str) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        self.0.iter().any(|allowed| allowed.admits(&name, port))
    }
}

/// Refuses a request for any host Slipway does not answer to. A request
/// that names none (HTTP/1.0, an in-process call) is let through: browsers
/// always name one.
pub async fn allowed_host(
    State(hosts): State<Arc<AllowedHosts>>,
    request: Request,
    next: Next,
) -> Response {
    let named = request
        .headers()
        .get(header::HOST)
        .map(|host| host.to_str().unwrap_or_default().to_string())
        .or_else(|| {
            request
                .uri()
                .authority()
                .map(|authority| authority.to_string())
        });
    match named {
        Some(host) if !hosts.admits(&host) => {
            tracing::warn!(%host, path = request.uri().path(), "refused a request for another host");
            (
                StatusCode::MISDIRECTED_REQUEST,
                "Refused: Slipway is not served under this host name.",
            )
                .into_response()
        }
        _ => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(configured: &[&str], external: Option<&str>) -> AllowedHosts {
        let configured: Vec<AllowedHost> = configured
            .iter()
            .map(|host| host.parse().unwrap())
            .collect();
        AllowedHosts::new(
            &configured,
            external.map(|url| Url::parse(url).unwrap()).as_ref(),
        )
    }

    #[test]
    fn with_nothing_configured_only_loopback_names_on_any_port() {
        let hosts = hosts(&[], None);
        for host in [
            "127.0.0.1:3000",
            "localhost",
            "LOCALHOST:8080",
            "[::1]:3000",
        ] {
            assert!(hosts.admits(host), "{host}");
        }
        for host in ["evil.example:3000", "127.0.0.2:3000", "10.0.0.5", "", "a b"] {
            assert!(!hosts.admits(host), "{host}");
        }
    }

    #[test]
    fn the_external_url_and_the_list_are_what_counts_when_configured() {
        let hosts = hosts(
            &["slipway.internal:8080", "Slipway.Lan"],
            Some("https://slipway.example.com"),
        );
        for host in [
            "slipway.example.com",
            "slipway.example.com:443",
            "slipway.internal:8080",
            "slipway.lan:1234",
        ] {
            assert!(hosts.admits(host), "{host}");
        }
        for host in [
            "slipway.example.org",
            "slipway.internal:9090",
            "127.0.0.1:3000",
            "localhost",
        ] {
            assert!(!hosts.admits(host), "{host}");
        }
    }

    #[test]
    fn entries_that_are_not_hosts_are_refused_at_start_up() {
        for entry in ["", "http://x", "user@host", "host:port"] {
            assert!(entry.parse::<AllowedHost>().is_err(), "{entry}");
        }
    }
}
