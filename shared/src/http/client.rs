//! The client's address and country, as the platform guarantees them — never as the client claims them. A
//! client can put anything in `X-Forwarded-For`; only what the platform itself set counts:
//!
//! | where | address | country |
//! |---|---|---|
//! | Lambda, API Gateway HTTP API and Function URL | `requestContext.http.sourceIp` | `CloudFront-Viewer-Country` |
//! | Lambda, API Gateway REST API | `requestContext.identity.sourceIp` | `CloudFront-Viewer-Country` |
//! | Lambda, ALB | the last `X-Forwarded-For` entry (the one the ALB appended) | — |
//! | Vercel | `X-Real-IP` (set by Vercel's edge, which overwrites client values) | `X-Vercel-IP-Country` |
//! | local server | the socket's peer address | — |

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use http::HeaderMap;
use lambda_http::request::RequestContext;

use crate::config::Platform;

/// Who is on the other end, as far as the platform vouches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    pub ip: Option<IpAddr>,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<String>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

fn country(text: Option<&str>) -> Option<String> {
    text.filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic())).map(str::to_ascii_uppercase)
}

/// Resolves the client of a request with these `extensions` and `headers` on `platform`.
pub fn resolve(platform: Platform, extensions: &http::Extensions, headers: &HeaderMap) -> Client {
    let parse = |text: Option<&str>| text.and_then(|t| t.trim().parse::<IpAddr>().ok());
    match platform {
        Platform::Vercel => {
            Client { ip: parse(header(headers, "x-real-ip")), country: country(header(headers, "x-vercel-ip-country")) }
        }
        Platform::Lambda => {
            let cloudfront = country(header(headers, "cloudfront-viewer-country"));
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
    fn client_supplied_forwarding_headers_never_count() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        let ext = http::Extensions::new();
        assert_eq!(resolve(Platform::Local, &ext, &headers).ip, None);
        assert_eq!(resolve(Platform::Lambda, &ext, &headers).ip, None);
        assert_eq!(resolve(Platform::Vercel, &ext, &headers).ip, None);
        headers.insert("x-real-ip", "2001:db8::1".parse().unwrap());
        headers.insert("x-vercel-ip-country", "de".parse().unwrap());
        let vercel = resolve(Platform::Vercel, &ext, &headers);
        assert_eq!(vercel.ip, "2001:db8::1".parse().ok());
        assert_eq!(vercel.country.as_deref(), Some("DE"));
    }
}
