//! Where an edge asks for its lease: byok's base URL, checked once, by every host the same way.
//!
//! The request carries a service token and the answer a scope's keys, so the URL is `https://`
//! unless byok is reached on this host or on a private network by address (a loopback or
//! private IP literal, `localhost`), or the deployment says so for a private name
//! (`allow_plain_http`). A mistyped `http://byok.example.com` is refused at start, not sent in
//! cleartext across the internet.

use alloc::string::{String, ToString};
use core::fmt;
use core::net::{IpAddr, Ipv6Addr};

/// byok's base URL as an edge calls it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerUrl {
    https: bool,
    authority: String,
    base_path: String,
}

/// Why a server URL is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerUrlError {
    /// Neither `https://` nor `http://`.
    Scheme,
    /// `http://` to a host not known to be private: the token and keys would cross in
    /// cleartext.
    PlainHttp,
    /// No host, user info (`user@`), a query or a fragment.
    Malformed(&'static str),
    /// The org or scope (named) is empty or not an id: it goes into the lease's path, where
    /// `/`, `..` or `?` would ask another endpoint with the service token.
    NotAnId(&'static str),
}

impl fmt::Display for ServerUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scheme => f.write_str("the server URL must start with https://"),
            Self::PlainHttp => f.write_str(
                "http:// sends the service token and the scope's keys in cleartext: use https://, \
                 or a loopback or private IP address; for a private name, allow plain HTTP \
                 explicitly (BYOK_ALLOW_PLAIN_HTTP=1, allowPlainHttp)",
            ),
            Self::Malformed(why) => write!(f, "the server URL is not usable: {why}"),
            Self::NotAnId(which) => write!(
                f,
                "the {which} is not set, or not an id (letters, digits, - and _ only)"
            ),
        }
    }
}

impl ServerUrl {
    /// Checks `url` (`https://host[:port][/base]`). `allow_plain_http` lets `http://` reach
    /// any host, for a private network known by name.
    pub fn parse(url: &str, allow_plain_http: bool) -> Result<Self, ServerUrlError> {
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(ServerUrlError::Scheme);
        };
        if rest.contains(['?', '#']) {
            return Err(ServerUrlError::Malformed("a query or fragment"));
        }
        let (authority, base) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('@') {
            return Err(ServerUrlError::Malformed("user info before the host"));
        }
        let host = host_of(authority).ok_or(ServerUrlError::Malformed("no host"))?;
        if !https && !allow_plain_http && !is_private_host(host) {
            return Err(ServerUrlError::PlainHttp);
        }
        let base = base.trim_end_matches('/');
        Ok(Self {
            https,
            authority: authority.to_string(),
            base_path: if base.is_empty() {
                String::new()
            } else {
                alloc::format!("/{base}")
            },
        })
    }

    /// Whether it is `https://`.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// `host[:port]`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The lease path for `org` and `scope` under the base (`/base/v1/orgs/ORG/scopes/S/lease`).
    ///
    /// # Errors
    ///
    /// [`ServerUrlError::NotAnId`] when either is empty or holds anything but ASCII letters,
    /// digits, `-` and `_`.
    pub fn lease_path(&self, org: &str, scope: &str) -> Result<String, ServerUrlError> {
        let id = |v: &str| {
            !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !id(org) {
            return Err(ServerUrlError::NotAnId("org"));
        }
        if !id(scope) {
            return Err(ServerUrlError::NotAnId("scope"));
        }
        Ok(alloc::format!(
            "{}/v1/orgs/{org}/scopes/{scope}/lease",
            self.base_path
        ))
    }

    /// The lease's whole URL (`https://host/base/v1/orgs/ORG/scopes/S/lease`), checked as
    /// [`Self::lease_path`].
    ///
    /// # Errors
    ///
    /// As [`Self::lease_path`].
    pub fn lease_url(&self, org: &str, scope: &str) -> Result<String, ServerUrlError> {
        let scheme = if self.https { "https" } else { "http" };
        Ok(alloc::format!(
            "{scheme}://{}{}",
            self.authority,
            self.lease_path(org, scope)?
        ))
    }
}

/// The host of `host[:port]` or `[v6][:port]`; `None` if empty.
fn host_of(authority: &str) -> Option<&str> {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => authority.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}

/// Loopback, a private IPv4 range, a unique local or link-local IPv6 address, `localhost`.
fn is_private_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a.is_loopback() || a.is_private() || a.is_link_local(),
        Ok(IpAddr::V6(a)) => {
            a.is_loopback() || a.is_unique_local() || a.is_unicast_link_local() || mapped_private(a)
        }
        Err(_) => false,
    }
}

fn mapped_private(a: Ipv6Addr) -> bool {
    a.to_ipv4_mapped()
        .is_some_and(|v4| v4.is_loopback() || v4.is_private())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_plain_http_only_to_private_addresses() {
        for ok in [
            "https://byok.example.com",
            "https://byok.example.com:8443/base/",
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://10.0.0.5",
            "http://172.16.3.4:80",
            "http://192.168.1.10",
            "http://[::1]:8080",
            "http://[fd00::5]",
        ] {
            assert!(ServerUrl::parse(ok, false).is_ok(), "{ok}");
        }
        for plain in [
            "http://byok.example.com",
            "http://8.8.8.8",
            "http://172.32.0.1",
            "http://[2001:db8::1]",
            "http://byok.internal",
        ] {
            assert_eq!(
                ServerUrl::parse(plain, false),
                Err(ServerUrlError::PlainHttp),
                "{plain}"
            );
            assert!(ServerUrl::parse(plain, true).is_ok(), "{plain}");
        }
        assert_eq!(
            ServerUrl::parse("ftp://x", true),
            Err(ServerUrlError::Scheme)
        );
        for bad in [
            "https://",
            "https://user@byok.example.com",
            "https://byok.example.com/?x=1",
            "https://[::1",
        ] {
            assert!(
                matches!(
                    ServerUrl::parse(bad, true),
                    Err(ServerUrlError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_lease_path_is_under_the_base() {
        let u = ServerUrl::parse("https://h.example:9/byok/", false).unwrap();
        assert_eq!(
            (
                u.is_https(),
                u.authority(),
                u.lease_path("o", "s").unwrap().as_str()
            ),
            (true, "h.example:9", "/byok/v1/orgs/o/scopes/s/lease")
        );
        assert_eq!(
            u.lease_url("o-1", "S_2").unwrap(),
            "https://h.example:9/byok/v1/orgs/o-1/scopes/S_2/lease"
        );
        let u = ServerUrl::parse("http://127.0.0.1:8080", false).unwrap();
        assert_eq!(u.lease_path("o", "s").unwrap(), "/v1/orgs/o/scopes/s/lease");
        assert_eq!(
            u.lease_url("o", "s").unwrap(),
            "http://127.0.0.1:8080/v1/orgs/o/scopes/s/lease"
        );
    }

    /// The org and scope go into the path: anything but an id could reach another endpoint
    /// with the service token (`../tokens`), or leave the path (`?`, `#`).
    #[test]
    fn the_org_and_scope_are_ids() {
        let u = ServerUrl::parse("https://byok.example.com", false).unwrap();
        for (org, scope, which) in [
            ("", "s", "org"),
            ("o", "", "scope"),
            ("..", "s", "org"),
            ("o", "../../tokens", "scope"),
            ("o", "s?x=1", "scope"),
            ("o/x", "s", "org"),
            ("o", "s#", "scope"),
            ("o", "s%2f", "scope"),
            ("o", "é", "scope"),
        ] {
            assert_eq!(
                u.lease_url(org, scope),
                Err(ServerUrlError::NotAnId(which)),
                "{org:?} {scope:?}"
            );
        }
    }
}
