//! The client's address and country, as the platform guarantees them — never as the client claims them. A
//! client can put anything in `X-Forwarded-For`; only what the platform itself set counts:
//!
//! | where | address | country |
//! |---|---|---|
//! | Lambda, API Gateway HTTP API and Function URL | `requestContext.http.sourceIp` | — |
//! | Lambda, API Gateway REST API | `requestContext.identity.sourceIp` | — |
//! | Lambda behind CloudFront (`CLOUD_AGENT_BEHIND_CLOUDFRONT=true`) | `CloudFront-Viewer-Address` (the source IP is CloudFront's edge) | `CloudFront-Viewer-Country` |
//! | Lambda, ALB | the last `X-Forwarded-For` entry (the one the ALB appended) | — |
//! | Vercel | `X-Real-IP` (set by Vercel's edge, which overwrites client values) | `X-Vercel-IP-Country` |
//! | local server | the socket's peer address | — |

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use http::HeaderMap;
use lambda_http::request::RequestContext;

use crate::config::Platform;
use crate::config::network::Vantage;

/// Who is on the other end, as far as the platform vouches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    pub ip: Option<IpAddr>,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<String>,
}

/// The address in `CloudFront-Viewer-Address` (`198.51.100.10:46532`, `2001:db8::1:46532` or `[2001:db8::1]:46532`).
fn viewer_address(text: Option<&str>) -> Option<IpAddr> {
    let text = text?.trim();
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    text.rsplit_once(':')
        .and_then(|(ip, port)| port.parse::<u16>().ok().and(ip.parse().ok()))
        .or_else(|| text.parse().ok())
}

impl Client {
    /// The address a per-address limit counts: an IPv4 address whole, an IPv6 address by its /64 (one subscriber
    /// usually holds a whole /64, and could otherwise step through it to escape the limit).
    pub fn limit_key(&self) -> String {
        match self.ip {
            Some(IpAddr::V4(v4)) => v4.to_string(),
            Some(IpAddr::V6(v6)) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            None => "unknown".to_owned(),
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

fn country(text: Option<&str>) -> Option<String> {
    text.filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic())).map(str::to_ascii_uppercase)
}

/// Resolves the client of a request with these `extensions` and `headers` seen from `vantage`.
pub fn resolve(vantage: Vantage, extensions: &http::Extensions, headers: &HeaderMap) -> Client {
    let parse = |text: Option<&str>| text.and_then(|t| t.trim().parse::<IpAddr>().ok());
    let vouched_country = || vantage.country_header().and_then(|name| country(header(headers, name)));
    match vantage.platform {
        Platform::Vercel => Client { ip: parse(header(headers, "x-real-ip")), country: vouched_country() },
        // Behind CloudFront the event's source address is the edge's: the viewer's is in the header CloudFront
        // sets (the origin request policy must forward it).
        Platform::Lambda if vantage.behind_cloudfront => {
            Client { ip: viewer_address(header(headers, "cloudfront-viewer-address")), country: vouched_country() }
        }
        Platform::Lambda => {
            let cloudfront = vouched_country();
            match extensions.get::<RequestContext>() {
                Some(RequestContext::ApiGatewayV2(ctx)) => {
                    Client { ip: parse(ctx.http.source_ip.as_deref()), country: cloudfront }
                }
                Some(RequestContext::ApiGatewayV1(ctx)) => {
                    Client { ip: parse(ctx.identity.source_ip.as_deref()), country: cloudfront }
                }
                // The ALB appends the peer it saw to whatever the client sent: only the last entry is its own.
                Some(RequestContext::Alb(_)) => Client {
                    ip: parse(header(headers, "x-forwarded-for").and_then(|v| v.rsplit(',').next())),
                    country: None,
                },
                _ => Client::default(),
            }
        }
        Platform::Local => Client {
            ip: extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip().to_canonical()),
            country: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_ipv6_clients_by_their_64() {
        let key = |ip: &str| Client { ip: ip.parse().ok(), country: None }.limit_key();
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:ffff:1:2:3"));
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("203.0.113.9"), "203.0.113.9");
        assert_ne!(key("203.0.113.9"), key("203.0.113.10"));
    }

    #[test]
    fn client_supplied_forwarding_headers_never_count() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        let ext = http::Extensions::new();
        let at = |platform| Vantage { platform, behind_cloudfront: false };
        assert_eq!(resolve(at(Platform::Local), &ext, &headers).ip, None);
        assert_eq!(resolve(at(Platform::Lambda), &ext, &headers).ip, None);
        assert_eq!(resolve(at(Platform::Vercel), &ext, &headers).ip, None);
        headers.insert("x-real-ip", "2001:db8::1".parse().unwrap());
        headers.insert("x-vercel-ip-country", "de".parse().unwrap());
        let vercel = resolve(at(Platform::Vercel), &ext, &headers);
        assert_eq!(vercel.ip, "2001:db8::1".parse().ok());
        assert_eq!(vercel.country.as_deref(), Some("DE"));
    }

    #[test]
    fn cloudfronts_country_counts_only_behind_cloudfront() {
        let mut headers = HeaderMap::new();
        headers.insert("cloudfront-viewer-country", "kp".parse().unwrap());
        let mut ext = http::Extensions::new();
        ext.insert(RequestContext::ApiGatewayV2(
            lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext::default(),
        ));
        let direct = Vantage { platform: Platform::Lambda, behind_cloudfront: false };
        assert_eq!(resolve(direct, &ext, &headers).country, None, "a client sets that header itself");
        let behind = Vantage { platform: Platform::Lambda, behind_cloudfront: true };
        assert_eq!(resolve(behind, &ext, &headers).country.as_deref(), Some("KP"));
        // Behind CloudFront the address is the viewer's, not the edge's source address.
        headers.insert("cloudfront-viewer-address", "198.51.100.10:46532".parse().unwrap());
        let mut v2 = lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext::default();
        v2.http.source_ip = Some("130.176.1.1".to_owned());
        ext.insert(RequestContext::ApiGatewayV2(v2));
        assert_eq!(resolve(behind, &ext, &headers).ip, "198.51.100.10".parse().ok());
        assert_eq!(resolve(direct, &ext, &headers).ip, "130.176.1.1".parse().ok());
        for (text, ip) in
            [("2001:db8::1:46532", "2001:db8::1"), ("[2001:db8::7]:443", "2001:db8::7"), ("2001:db8::9", "2001:db8::9")]
        {
            assert_eq!(viewer_address(Some(text)), ip.parse().ok(), "{text}");
        }
        // Vercel's own header only on Vercel.
        headers.insert("x-vercel-ip-country", "kp".parse().unwrap());
        assert_eq!(resolve(direct, &ext, &headers).country, None);
    }
}
