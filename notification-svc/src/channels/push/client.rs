//! The SSRF-safe HTTP side of Web Push: which endpoints a subscription may
//! name, which resolved addresses count as public, and the client that
//! connects to public addresses only.

/// A push service name that resolves to no public address (loopback,
/// private, link-local…): refused, so subscriptions cannot reach inside.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves to no public address")]
pub struct NotPublic(String);

/// Resolves names to their public addresses only.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(NotPublic(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether `ip` is reachable on the public internet (not loopback,
/// private, link-local, shared, unique-local, documentation or reserved).
pub fn is_public(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (b & 0xc0) == 64)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// The HTTP client for push services: it resolves names to their public
/// addresses only.
pub(super) fn public_only_client() -> anyhow::Result<reqwest::Client> {
    crate::channels::http_client_builder()
        .dns_resolver(std::sync::Arc::new(PublicOnly))
        .build()
        .map_err(|e| anyhow::anyhow!("building the HTTP client: {e}"))
}

/// Whether `endpoint` may be a push service: an https URL on a public DNS
/// name. IP literals, single-label and local names are refused, so a
/// subscription cannot make the service post to internal addresses (with
/// `allow_http`, for development, anything goes). A public name that
/// resolves to a private address is for the egress policy to stop.
pub fn check_endpoint(endpoint: &str, allow_http: bool) -> Result<(), &'static str> {
    const INVALID: &str = "must be an https URL of a push service";
    if endpoint.len() > 2048 {
        return Err("must be at most 2048 characters");
    }
    let url = reqwest::Url::parse(endpoint).map_err(|_| INVALID)?;
    if allow_http {
        return if matches!(url.scheme(), "https" | "http") && url.has_host() {
            Ok(())
        } else {
            Err(INVALID)
        };
    }
    if url.scheme() != "https" || !url.username().is_empty() || url.password().is_some() {
        return Err(INVALID);
    }
    // `domain()` is None for IP literals.
    let Some(host) = url.domain() else {
        return Err("must name a push service by its DNS name, not an address");
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let local = [
        "localhost",
        ".localhost",
        ".local",
        ".internal",
        ".lan",
        ".home.arpa",
        ".cluster.local",
    ]
    .iter()
    .any(|suffix| host == suffix.trim_start_matches('.') || host.ends_with(suffix));
    if local || !host.contains('.') {
        return Err("must be a public push service");
    }
    Ok(())
}

/// `scheme://host[:port]` of a URL.
pub fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_https_push_services_are_accepted() {
        for ok in [
            "https://fcm.googleapis.com/fcm/send/abc:def",
            "https://updates.push.services.mozilla.com/wpush/v2/gAAA",
            "https://web.push.apple.com/QGuQ",
        ] {
            assert_eq!(check_endpoint(ok, false), Ok(()), "{ok}");
        }
        for bad in [
            "http://fcm.googleapis.com/x",
            "https://10.0.3.7:8443/admin",
            "https://[::1]/x",
            "https://127.0.0.1/x",
            "https://localhost/x",
            "https://user-svc/x",
            "https://user-svc.shopmesh.svc.cluster.local/x",
            "https://printer.local/x",
            "https://metadata.internal/x",
            "https://user:pw@push.example.com/x",
            "https://exa mple.com/",
            "not a url",
            "",
        ] {
            assert!(check_endpoint(bad, false).is_err(), "{bad}");
        }
        assert_eq!(check_endpoint("http://127.0.0.1:9000/push", true), Ok(()));
        assert!(check_endpoint("ftp://127.0.0.1/push", true).is_err());
        assert!(
            check_endpoint(
                &format!("https://push.example.com/{}", "a".repeat(2048)),
                false
            )
            .is_err()
        );
    }

    #[test]
    fn only_public_addresses_count_as_public() {
        for ip in [
            "8.8.8.8",
            "142.250.74.46",
            "2a00:1450:4001:82b::200a",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
