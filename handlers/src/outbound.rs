//! The SSRF-safe HTTP client: the only way this process sends a request to a URL a caller chose (health checks,
//! API tests, webhooks). Built once per process ([`Outbound::new`]) and cloned freely (the client is shared).
//!
//! What it guarantees, and where:
//! - Only `http` and `https`; no credentials in the URL (they would end up in logs and errors).
//! - Every address the request could reach is checked by [`is_forbidden`] before connecting: private, loopback,
//!   link-local (the cloud metadata service at 169.254.169.254 / `fd00:ec2::254`), CGNAT, multicast, reserved,
//!   and IPv6 forms that embed such an IPv4 address are refused.
//!   - Host names go through `CheckedResolver`, reqwest's resolver for this client: it resolves once, refuses
//!     the host if ANY answer is forbidden, and hands back exactly the checked addresses, so there is no second
//!     lookup between the check and the connect (no TOCTOU / DNS-rebinding window).
//!   - IP-literal hosts never reach a resolver, so they are checked before sending and again in the redirect
//!     policy, which also re-checks the scheme and counts hops. Host names in redirects go through the resolver.
//! - No proxies (an environment `HTTP_PROXY` would make the proxy, not us, resolve and connect), no cookies, no
//!   referer, no retries (a webhook must not be delivered twice).
//! - Connect and total timeouts; the response body is read chunk by chunk and capped (`truncated: true`), never
//!   buffered unbounded.

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Total time a request may take (connect, send, response and body) unless the policy says less.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most response body bytes kept; the rest is not read.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Most redirects followed before giving up.
pub const DEFAULT_MAX_REDIRECTS: u8 = 5;

/// Host names refused before any lookup: cloud metadata services reachable by name inside a VM.
const METADATA_HOSTS: &[&str] = &["metadata.google.internal", "metadata"];

/// Request headers a caller may not set: the client manages framing and connections itself, and a caller-chosen
/// `Host` would let a request to one checked address claim to be for another virtual host.
pub const REFUSED_REQUEST_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// What an [`Outbound`] allows. Fixed for the client's life: the resolver and redirect policy capture it.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Let requests reach 127.0.0.0/8 and ::1. For tests and local development against local servers only:
    /// production configuration never sets it (a loopback request reaches this host's own unauthenticated
    /// listeners). Every other forbidden range stays forbidden even when this is set.
    pub allow_loopback: bool,
    /// Connect timeout and total timeout of one request; a request's own timeout is capped at this.
    pub timeout: Duration,
    /// Most response body bytes kept; beyond it the response is reported `truncated`.
    pub max_response_bytes: usize,
    /// Most redirects followed; one more is [`OutboundError::TooManyRedirects`] (0: any redirect is).
    pub max_redirects: u8,
    pub user_agent: String,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            allow_loopback: false,
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            user_agent: concat!("cloud-agent/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// One request to send.
#[derive(Clone, Default)]
pub struct OutboundRequest {
    pub method: http::Method,
    pub url: String,
    /// Checked by [`check_header`]; the ones in [`REFUSED_REQUEST_HEADERS`] are refused.
    pub headers: Vec<(String, String)>,
    pub body: Option<Bytes>,
    /// This request's total timeout, capped at the policy's.
    pub timeout: Option<Duration>,
}

// By hand: header values (Authorization, webhook signatures) and bodies must not reach logs through `{:?}`.
impl fmt::Debug for OutboundRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &self.headers.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>())
            .field("body_len", &self.body.as_ref().map(Bytes::len))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The answer to a request (after redirects).
#[derive(Debug, Clone)]
pub struct OutboundResponse {
    pub status: u16,
    pub headers: HeaderMap,
    /// At most the cap's worth of the body.
    pub body: Bytes,
    /// The body was longer than the cap; the rest was not read.
    pub truncated: bool,
    /// From sending to the end of the (capped) body.
    pub elapsed: Duration,
    /// The URL that answered, after redirects.
    pub final_url: String,
    pub content_type: Option<String>,
}

/// Why a request was not answered. Messages name the host, never the path or query (they may carry secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error("URL scheme {scheme:?} is not allowed; use http or https")]
    SchemeNotAllowed { scheme: String },
    /// The host is, or resolves to, an address this service may not reach (`addr` is `None` for a refused
    /// metadata host name, refused before any lookup).
    #[error("{}", forbidden_message(.host, .addr.as_ref(), .reason))]
    ForbiddenAddress { host: String, addr: Option<IpAddr>, reason: &'static str },
    #[error("could not resolve host {host}: {message}")]
    Dns { host: String, message: String },
    #[error("no complete response within {} ms (timed out)", .after.as_millis())]
    Timeout { after: Duration },
    #[error("could not connect to {host}: {message}")]
    Connect { host: String, message: String },
    #[error("stopped after {max} redirects (the limit); point the URL at the final location")]
    TooManyRedirects { max: u8 },
    #[error("header {name:?} is not allowed: {reason}")]
    InvalidHeader { name: String, reason: String },
    #[error("outbound request failed: {0}")]
    Other(String),
}

/// Names the host and the rule, never the address a name resolved to: that would tell a caller how our internal
/// DNS answers (the address goes to our own log line instead).
fn forbidden_message(host: &str, addr: Option<&IpAddr>, reason: &str) -> String {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let literal = bare.parse::<IpAddr>().is_ok();
    let target = match addr {
        // The rule alone ("private", "loopback"): even its block would say where the name points.
        Some(_) if !literal => {
            format!("{host} (it resolves to a {} address)", reason.split(',').next().unwrap_or(reason))
        }
        _ => format!("{host} ({reason})"),
    };
    format!(
        "refused to connect to {target}: requests to private, loopback, link-local and cloud-metadata addresses \
         are not allowed; use a publicly reachable URL"
    )
}

impl OutboundError {
    /// The request was refused for what it asked (where it was going, even after a redirect, or what it carried)
    /// rather than failing on the way: retrying cannot help, the caller must change the request.
    pub fn is_refused_by_policy(&self) -> bool {
        matches!(
            self,
            Self::InvalidUrl(_)
                | Self::SchemeNotAllowed { .. }
                | Self::ForbiddenAddress { .. }
                | Self::InvalidHeader { .. }
        )
    }
}

/// The SSRF-safe client. Cheap to clone; build one per process.
#[derive(Debug, Clone)]
pub struct Outbound {
    client: reqwest::Client,
    policy: Arc<Policy>,
}

impl Outbound {
    /// The client for `policy`.
    ///
    /// # Panics
    /// If the TLS backend cannot initialise (bundled webpki roots with ring): a build defect, not a runtime
    /// condition, like reqwest's own `Client::new`. [`Outbound::try_new`] reports it instead.
    pub fn new(policy: Policy) -> Self {
        Self::try_new(policy).expect("the outbound HTTP client builds")
    }

    pub fn try_new(policy: Policy) -> Result<Self, OutboundError> {
        let client = reqwest::Client::builder()
            // Environment proxies would resolve and connect on our behalf, past the address check.
            .no_proxy()
            .dns_resolver(Arc::new(CheckedResolver { allow_loopback: policy.allow_loopback }))
            .redirect(redirect_policy(policy.allow_loopback, policy.max_redirects))
            // Exactly one delivery per send: a webhook must not arrive twice.
            .retry(reqwest::retry::never())
            .referer(false)
            .connect_timeout(policy.timeout)
            .timeout(policy.timeout)
            .user_agent(policy.user_agent.clone())
            .build()
            .map_err(|e| OutboundError::Other(format!("building the HTTP client: {}", describe(&e))))?;
        Ok(Self { client, policy: Arc::new(policy) })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Parses `url` and applies every check that needs no lookup: scheme, credentials, IP-literal hosts and
    /// metadata host names. Handlers call it while validating input, so nothing is sent for a refused target.
    pub fn check_url(&self, url: &str) -> Result<Url, OutboundError> {
        let parsed = Url::parse(url).map_err(|e| OutboundError::InvalidUrl(e.to_string()))?;
        check_parsed_url(&parsed, self.policy.allow_loopback)?;
        Ok(parsed)
    }

    /// Sends `req`, keeping at most the policy's `max_response_bytes` of the body.
    pub async fn send(&self, req: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        self.send_limited(req, self.policy.max_response_bytes).await
    }

    /// Sends `req`, keeping at most `max_body` bytes of the body (capped at the policy's): for callers that only
    /// look at the start of an answer, so they don't hold a megabyte each.
    pub async fn send_limited(&self, req: OutboundRequest, max_body: usize) -> Result<OutboundResponse, OutboundError> {
        let max_body = max_body.min(self.policy.max_response_bytes);
        let timeout = req.timeout.map_or(self.policy.timeout, |t| t.min(self.policy.timeout));
        let url = self.check_url(&req.url)?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let headers = header_map(&req.headers)?;

        let mut builder = self.client.request(req.method, url).headers(headers).timeout(timeout);
        if let Some(body) = req.body {
            builder = builder.body(body);
        }
        let started = Instant::now();
        let exchange = async {
            let mut response = builder.send().await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let final_url = response.url().to_string();
            let expected = response.content_length().map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
            // Capacity from Content-Length only up to the cap: a lying header must not allocate for it.
            let mut body = Vec::with_capacity(expected.min(max_body).min(64 * 1024));
            let mut truncated = false;
            while let Some(chunk) = response.chunk().await? {
                let room = max_body - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    // Dropping the response here closes the connection instead of draining the rest.
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>((status, headers, final_url, body, truncated))
        };
        // reqwest applies the same timeout; this outer one bounds everything here whatever reqwest does.
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => Err(OutboundError::Timeout { after: timeout }),
            Ok(Err(e)) => Err(classify(&e, &host, timeout)),
            Ok(Ok((status, headers, final_url, body, truncated))) => {
                let content_type =
                    headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
                Ok(OutboundResponse {
                    status,
                    headers,
                    body: Bytes::from(body),
                    truncated,
                    elapsed: started.elapsed(),
                    final_url,
                    content_type,
                })
            }
        }
    }
}

/// Whether a request may not reach `ip`. Loopback (127.0.0.0/8, ::1, and their mapped forms) is allowed only
/// with `allow_loopback`, which production never sets.
pub fn is_forbidden(ip: IpAddr, allow_loopback: bool) -> bool {
    forbidden_reason(ip, allow_loopback).is_some()
}

/// Why `ip` is forbidden, for the error message; `None` when it may be reached.
fn forbidden_reason(ip: IpAddr, allow_loopback: bool) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4, allow_loopback),
        IpAddr::V6(v6) => v6_reason(v6, allow_loopback),
    }
}

fn v4_reason(ip: Ipv4Addr, allow_loopback: bool) -> Option<&'static str> {
    match ip.octets() {
        [0, ..] => Some("unspecified, 0.0.0.0/8"),
        [127, ..] if allow_loopback => None,
        [127, ..] => Some("loopback, 127.0.0.0/8"),
        [10, ..] => Some("private, 10.0.0.0/8"),
        [172, 16..=31, ..] => Some("private, 172.16.0.0/12"),
        [192, 168, ..] => Some("private, 192.168.0.0/16"),
        [100, 64..=127, ..] => Some("carrier-grade NAT, 100.64.0.0/10"),
        [169, 254, ..] => Some("link-local and cloud metadata, 169.254.0.0/16"),
        [192, 0, 0, _] => Some("IETF protocol assignments, 192.0.0.0/24"),
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => Some("documentation range"),
        [192, 88, 99, _] => Some("6to4 relay anycast, 192.88.99.0/24"),
        [198, 18..=19, ..] => Some("benchmarking, 198.18.0.0/15"),
        [224..=239, ..] => Some("multicast, 224.0.0.0/4"),
        [255, 255, 255, 255] => Some("broadcast"),
        [240..=255, ..] => Some("reserved, 240.0.0.0/4"),
        _ => None,
    }
}

fn v6_reason(ip: Ipv6Addr, allow_loopback: bool) -> Option<&'static str> {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => Some("unspecified, ::"),
        [0, 0, 0, 0, 0, 0, 0, 1] if allow_loopback => None,
        [0, 0, 0, 0, 0, 0, 0, 1] => Some("loopback, ::1"),
        // IPv4-mapped: the socket talks IPv4 to the embedded address, so judge that (loopback rule included).
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => v4_reason(embedded(hi, lo), allow_loopback),
        [0, 0, 0, 0, 0, 0, _, _] => Some("IPv4-compatible (deprecated), ::/96"),
        // NAT64 (64:ff9b::/96, IPv4 last) and 6to4 (2002::/16, IPv4 next) carry the packet to the embedded IPv4
        // address, never to our own loopback.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] | [0x2002, hi, lo, ..] => v4_reason(embedded(hi, lo), false),
        [0x64, 0xff9b, 1, ..] => Some("local-use NAT64, 64:ff9b:1::/48"),
        // Teredo hides the client's IPv4 address (obfuscated); nothing legitimate is reached this way.
        [0x2001, 0, ..] => Some("Teredo, 2001::/32"),
        [0x2001, 0..=0x01ff, ..] => Some("IETF special-purpose, 2001::/23"),
        [0x2001, 0x0db8, ..] => Some("documentation, 2001:db8::/32"),
        [0x3fff, 0..=0x0fff, ..] => Some("documentation, 3fff::/20"),
        [0x0100, 0, 0, 0, ..] => Some("discard-only, 100::/64"),
        [a, ..] if a & 0xffc0 == 0xfe80 => Some("link-local, fe80::/10"),
        [a, ..] if a & 0xffc0 == 0xfec0 => Some("site-local, fec0::/10"),
        // Includes the AWS IPv6 metadata endpoint fd00:ec2::254.
        [a, ..] if a & 0xfe00 == 0xfc00 => Some("unique-local (includes cloud metadata fd00:ec2::254), fc00::/7"),
        [a, ..] if a & 0xff00 == 0xff00 => Some("multicast, ff00::/8"),
        // Whatever else is outside global unicast is reserved: refuse rather than enumerate.
        [a, ..] if a & 0xe000 != 0x2000 => Some("not global unicast, outside 2000::/3"),
        _ => None,
    }
}

/// The checks that need no lookup, for the first URL and every redirect target.
fn check_parsed_url(url: &Url, allow_loopback: bool) -> Result<(), OutboundError> {
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(OutboundError::SchemeNotAllowed { scheme: other.to_owned() }),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OutboundError::InvalidUrl(
            "credentials in the URL are not allowed; send them in a header (e.g. Authorization)".to_owned(),
        ));
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| OutboundError::InvalidUrl("no host".into()))?;
    // The URL parser has already normalised every IPv4 spelling (octal, hex, 127.1) to dotted decimal.
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(ip) => check_addr(host, ip, allow_loopback),
        Err(_) => check_host_name(host),
    }
}

fn check_addr(host: &str, ip: IpAddr, allow_loopback: bool) -> Result<(), OutboundError> {
    match forbidden_reason(ip, allow_loopback) {
        None => Ok(()),
        Some(reason) => {
            tracing::warn!(host, addr = %ip, reason, "outbound request refused: forbidden address");
            Err(OutboundError::ForbiddenAddress { host: host.to_owned(), addr: Some(ip), reason })
        }
    }
}

fn check_host_name(host: &str) -> Result<(), OutboundError> {
    let normalised = host.trim_end_matches('.').to_ascii_lowercase();
    if METADATA_HOSTS.contains(&normalised.as_str()) {
        tracing::warn!(host, "outbound request refused: cloud metadata host name");
        return Err(OutboundError::ForbiddenAddress {
            host: host.to_owned(),
            addr: None,
            reason: "cloud metadata host name",
        });
    }
    Ok(())
}

/// A request header as the client will send it, or why it may not be sent.
pub fn check_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), OutboundError> {
    let refuse = |reason: &str| OutboundError::InvalidHeader { name: name.to_owned(), reason: reason.to_owned() };
    let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| refuse("not a valid header name"))?;
    if REFUSED_REQUEST_HEADERS.contains(&header.as_str()) {
        return Err(refuse("the client sets it itself (connection, framing or host)"));
    }
    // Refuses CR, LF and other control characters: no header injection.
    let mut value =
        HeaderValue::from_str(value).map_err(|_| refuse("the value has characters not allowed in a header"))?;
    value.set_sensitive(true);
    Ok((header, value))
}

fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, OutboundError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let (name, value) = check_header(name, value)?;
        map.append(name, value);
    }
    Ok(map)
}

/// Re-checks every redirect: hop count, scheme, credentials, IP-literal hosts (which skip the resolver) and
/// metadata names. Host names are checked again by the resolver when the redirect is followed.
fn redirect_policy(allow_loopback: bool, max_redirects: u8) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        // `previous` holds the first URL and every hop followed so far.
        if attempt.previous().len() > usize::from(max_redirects) {
            return attempt.error(OutboundError::TooManyRedirects { max: max_redirects });
        }
        let verdict = check_parsed_url(attempt.url(), allow_loopback);
        match verdict {
            Ok(()) => attempt.follow(),
            Err(refusal) => attempt.error(refusal),
        }
    })
}

/// reqwest's resolver for this client: resolves once, refuses the host if any answer is forbidden, and returns
/// exactly the addresses it checked (the connector connects to these; nothing resolves again).
#[derive(Debug, Clone, Copy)]
struct CheckedResolver {
    allow_loopback: bool,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let addrs = resolve_checked(name.as_str(), allow_loopback).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Any forbidden answer refuses the host, not just that answer: a name that mixes public and private answers is
/// either misconfigured or an attacker's rebinding setup, and the connector may fall back to any answer given.
async fn resolve_checked(host: &str, allow_loopback: bool) -> Result<Vec<SocketAddr>, OutboundError> {
    check_host_name(host)?;
    let dns = |message: String| OutboundError::Dns { host: host.to_owned(), message };
    // Port 0: the connector sets the URL's port on each address.
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await.map_err(|e| dns(e.to_string()))?.collect();
    if addrs.is_empty() {
        return Err(dns("no addresses".to_owned()));
    }
    for addr in &addrs {
        check_addr(host, addr.ip(), allow_loopback)?;
    }
    Ok(addrs)
}

/// Our own refusal if reqwest carries one (from the resolver or redirect policy), else the kind of failure.
fn classify(error: &reqwest::Error, host: &str, timeout: Duration) -> OutboundError {
    let mut source: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(err) = source {
        if let Some(ours) = err.downcast_ref::<OutboundError>() {
            return ours.clone();
        }
        source = err.source();
    }
    let host = error.url().and_then(Url::host_str).unwrap_or(host).to_owned();
    if error.is_timeout() {
        OutboundError::Timeout { after: timeout }
    } else if error.is_connect() {
        // The deepest cause is the one to act on ("Connection refused", a certificate problem).
        let message = std::iter::successors(error.source(), |&e| e.source()).last().map(ToString::to_string);
        OutboundError::Connect { host, message: message.unwrap_or_else(|| describe(error)) }
    } else {
        OutboundError::Other(describe(error))
    }
}

/// The error's causes, the most specific last ("connection refused" sits deep in the chain). reqwest's own top
/// line names the full URL, which may carry secrets in its query: it is used only when there is no cause, with the
/// URL cut to its origin.
fn describe(error: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = error.source();
    while let Some(err) = source {
        parts.push(err.to_string());
        source = err.source();
    }
    if !parts.is_empty() {
        return parts.join(": ");
    }
    let top = error.to_string();
    match error.url() {
        Some(url) => top.replace(url.as_str(), &url.origin().ascii_serialization()),
        None => top,
    }
}

/// A raw HTTP/1.1 server for tests here and in the handlers: full control over what is answered (redirects to
/// anywhere, delays, silence) and visibility of what was received.
#[cfg(test)]
pub(crate) mod testing {
    use std::fmt::Write as _;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    /// A request as the test server received it (header names lowercased).
    #[derive(Debug, Clone)]
    pub(crate) struct Seen {
        pub(crate) method: String,
        pub(crate) path: String,
        pub(crate) headers: Vec<(String, String)>,
        pub(crate) body: Vec<u8>,
    }

    impl Seen {
        pub(crate) fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
        }
    }

    #[derive(Debug, Clone)]
    pub(crate) struct Reply {
        pub(crate) status: u16,
        pub(crate) headers: Vec<(String, String)>,
        pub(crate) body: Vec<u8>,
        pub(crate) delay: Duration,
    }

    impl Reply {
        pub(crate) fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
            Self { status, headers: Vec::new(), body: body.into(), delay: Duration::ZERO }
        }

        pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
            self.headers.push((name.to_owned(), value.to_owned()));
            self
        }

        pub(crate) fn delay(mut self, delay: Duration) -> Self {
            self.delay = delay;
            self
        }

        pub(crate) fn redirect(to: &str) -> Self {
            Self::new(302, "").header("location", to)
        }
    }

    /// Serves `answer` on 127.0.0.1 until the runtime ends; one request per connection.
    pub(crate) async fn serve<F>(answer: F) -> SocketAddr
    where
        F: Fn(&Seen) -> Reply + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let answer = Arc::clone(&answer);
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    let Some(seen) = read_request(&mut stream).await else { return };
                    let reply = answer(&seen);
                    tokio::time::sleep(reply.delay).await;
                    let mut head = format!("HTTP/1.1 {} Test\r\nconnection: close\r\n", reply.status);
                    for (name, value) in &reply.headers {
                        write!(head, "{name}: {value}\r\n").unwrap();
                    }
                    write!(head, "content-length: {}\r\n\r\n", reply.body.len()).unwrap();
                    let stream = stream.get_mut();
                    // The client may hang up early (a capped body); that is not the server's failure.
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&reply.body).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        addr
    }

    async fn read_request(stream: &mut BufReader<tokio::net::TcpStream>) -> Option<Seen> {
        let mut line = String::new();
        stream.read_line(&mut line).await.ok()?;
        let mut parts = line.split_whitespace();
        let method = parts.next()?.to_owned();
        let path = parts.next()?.to_owned();
        let mut headers = Vec::new();
        loop {
            line.clear();
            stream.read_line(&mut line).await.ok()?;
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            let (name, value) = trimmed.split_once(':')?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        let length = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok());
        let mut body = vec![0; length.unwrap_or(0)];
        stream.read_exact(&mut body).await.ok()?;
        Some(Seen { method, path, headers, body })
    }

    /// Accepts connections and never answers; keeps them open so the client waits.
    pub(crate) async fn silent() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        addr
    }

    /// Asserts `listener` was never connected to: connects a probe and checks the first connection in the
    /// accept queue (FIFO) is the probe. No sleeping: an earlier connection would be queued ahead of it.
    pub(crate) async fn assert_never_connected(listener: &TcpListener) {
        let probe = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, probe.local_addr().unwrap(), "the refused request reached the listener");
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Reply, assert_never_connected, serve, silent};
    use super::*;

    fn outbound(allow_loopback: bool) -> Outbound {
        Outbound::new(Policy { allow_loopback, ..Policy::default() })
    }

    fn get(url: &str) -> OutboundRequest {
        OutboundRequest { url: url.to_owned(), ..OutboundRequest::default() }
    }

    #[test]
    fn forbidden_table() {
        let forbidden = [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "169.254.0.1",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "::8.8.8.8",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:101::1",
            "2001::1",
            "2001:db8::1",
            "3fff::1",
            "100::1",
            "4000::1",
        ];
        for addr in forbidden {
            let ip: IpAddr = addr.parse().unwrap();
            assert!(is_forbidden(ip, false), "{addr} should be forbidden");
        }
        let allowed = [
            "93.184.215.14",
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.255.255",
            "192.169.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:93.184.215.14",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:4860:4860::8888",
        ];
        for addr in allowed {
            let ip: IpAddr = addr.parse().unwrap();
            assert!(!is_forbidden(ip, false), "{addr} should be allowed");
        }
    }

    #[test]
    fn allow_loopback_admits_only_loopback() {
        for addr in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(!is_forbidden(addr.parse().unwrap(), true), "{addr}");
        }
        // Loopback embedded in NAT64/6to4 is not this host's loopback; everything else stays refused.
        for addr in
            ["64:ff9b::7f00:1", "2002:7f00:1::", "169.254.169.254", "10.0.0.1", "fd00:ec2::254", "0.0.0.0", "::"]
        {
            assert!(is_forbidden(addr.parse().unwrap(), true), "{addr}");
        }
    }

    #[test]
    fn check_url_refusals() {
        let out = outbound(false);
        for url in ["ftp://example.com/", "file:///etc/passwd", "gopher://example.com/", "javascript:alert(1)"] {
            assert!(matches!(out.check_url(url), Err(OutboundError::SchemeNotAllowed { .. })), "{url}");
        }
        for url in ["not a url", "http://", "http://user:pw@example.com/", "https://user@example.com/"] {
            assert!(matches!(out.check_url(url), Err(OutboundError::InvalidUrl(_))), "{url}");
        }
        // Every spelling the URL parser normalises to a forbidden literal, and the metadata names.
        for url in [
            "http://127.1/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://[::ffff:7f00:1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://METADATA.google.internal./",
            "http://metadata/",
        ] {
            let err = out.check_url(url).unwrap_err();
            assert!(matches!(err, OutboundError::ForbiddenAddress { .. }), "{url}: {err}");
            assert!(err.is_refused_by_policy());
        }
        assert!(out.check_url("https://example.com:8443/path?q=1").is_ok());
        assert!(out.check_url("http://93.184.215.14/").is_ok());
    }

    #[test]
    fn messages_are_actionable_and_hide_paths() {
        let err = outbound(false).check_url("http://169.254.169.254/secret?token=abc").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("169.254.169.254") && message.contains("metadata"), "{message}");
        assert!(!message.contains("token=abc"), "{message}");
        assert!(!OutboundError::Timeout { after: Duration::from_secs(1) }.is_refused_by_policy());
    }

    #[test]
    fn refused_headers() {
        for name in ["Host", "content-length", "Transfer-Encoding", "Connection", "upgrade"] {
            assert!(matches!(check_header(name, "x"), Err(OutboundError::InvalidHeader { .. })), "{name}");
        }
        assert!(check_header("x-ok", "a\r\nInjected: 1").is_err());
        assert!(check_header("bad name", "x").is_err());
        assert!(check_header("Authorization", "Bearer t").is_ok());
    }

    #[tokio::test]
    async fn loopback_literals_are_refused_without_connecting() {
        let out = outbound(false);
        let v4 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = v4.local_addr().unwrap().port();
        let err = out.send(get(&format!("http://127.0.0.1:{port}/"))).await.unwrap_err();
        assert!(matches!(err, OutboundError::ForbiddenAddress { addr: Some(_), .. }), "{err}");
        assert_never_connected(&v4).await;

        let v6 = tokio::net::TcpListener::bind("[::1]:0").await.unwrap();
        let port = v6.local_addr().unwrap().port();
        let err = out.send(get(&format!("http://[::1]:{port}/"))).await.unwrap_err();
        assert!(matches!(err, OutboundError::ForbiddenAddress { .. }), "{err}");
        assert_never_connected(&v6).await;
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_without_connecting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let err = outbound(false).send(get(&format!("http://localhost:{port}/"))).await.unwrap_err();
        match &err {
            OutboundError::ForbiddenAddress { host, addr: Some(addr), .. } => {
                assert_eq!(host, "localhost");
                assert!(addr.is_loopback());
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // The message names the rule, never what the name resolved to.
        let message = err.to_string();
        assert!(message.contains("localhost (it resolves to a loopback address)"), "{message}");
        for leaked in ["127.0.0.1", "::1", "127.0.0.0/8"] {
            assert!(!message.contains(leaked), "the refusal reveals {leaked}: {message}");
        }
        assert_never_connected(&listener).await;
    }

    #[tokio::test]
    async fn the_resolver_refuses_any_forbidden_answer() {
        assert!(matches!(resolve_checked("localhost", false).await, Err(OutboundError::ForbiddenAddress { .. })));
        let addrs = resolve_checked("localhost", true).await.unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
        assert!(matches!(
            resolve_checked("metadata.google.internal", true).await,
            Err(OutboundError::ForbiddenAddress { addr: None, .. })
        ));
        // Through the trait reqwest calls.
        let resolving = CheckedResolver { allow_loopback: false }.resolve("localhost".parse().unwrap());
        let err = resolving.await.err().expect("refused");
        assert!(matches!(err.downcast_ref::<OutboundError>(), Some(OutboundError::ForbiddenAddress { .. })));
    }

    #[tokio::test]
    async fn metadata_targets_are_refused() {
        let out = outbound(true);
        let started = Instant::now();
        let err = out.send(get("http://169.254.169.254/latest/meta-data/")).await.unwrap_err();
        assert!(
            matches!(err, OutboundError::ForbiddenAddress { addr: Some(IpAddr::V4(a)), .. } if a == Ipv4Addr::new(169, 254, 169, 254))
        );
        let err = out.send(get("http://metadata.google.internal/")).await.unwrap_err();
        assert!(matches!(err, OutboundError::ForbiddenAddress { addr: None, .. }));
        // Refused up front, not after a connect attempt timed out.
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn redirects_to_forbidden_targets_are_refused() {
        let addr = serve(|seen| match seen.path.as_str() {
            "/metadata" => Reply::redirect("http://169.254.169.254/latest/meta-data/"),
            "/private" => Reply::redirect("http://10.0.0.1/"),
            "/mapped" => Reply::redirect("http://[::ffff:a9fe:a9fe]/"),
            "/named" => Reply::redirect("http://metadata.google.internal/computeMetadata/v1/"),
            "/ftp" => Reply::redirect("ftp://example.com/"),
            "/creds" => Reply::redirect("http://user:pw@example.com/"),
            _ => Reply::new(404, ""),
        })
        .await;
        let out = outbound(true);
        for path in ["/metadata", "/private", "/mapped", "/named"] {
            let err = out.send(get(&format!("http://{addr}{path}"))).await.unwrap_err();
            assert!(matches!(err, OutboundError::ForbiddenAddress { .. }), "{path}: {err}");
        }
        let err = out.send(get(&format!("http://{addr}/ftp"))).await.unwrap_err();
        assert!(matches!(err, OutboundError::SchemeNotAllowed { .. }), "{err}");
        let err = out.send(get(&format!("http://{addr}/creds"))).await.unwrap_err();
        assert!(matches!(err, OutboundError::InvalidUrl(_)), "{err}");
    }

    #[tokio::test]
    async fn redirect_limit() {
        // /hop/N redirects to /hop/N-1; /hop/0 answers.
        let addr = serve(|seen| match seen.path.strip_prefix("/hop/").and_then(|n| n.parse::<u32>().ok()) {
            Some(0) => Reply::new(200, "arrived"),
            Some(n) => Reply::redirect(&format!("/hop/{}", n - 1)),
            None => Reply::new(404, ""),
        })
        .await;
        let out = Outbound::new(Policy { allow_loopback: true, max_redirects: 3, ..Policy::default() });
        let ok = out.send(get(&format!("http://{addr}/hop/3"))).await.unwrap();
        assert_eq!((ok.status, &ok.body[..]), (200, &b"arrived"[..]));
        assert_eq!(ok.final_url, format!("http://{addr}/hop/0"));
        let err = out.send(get(&format!("http://{addr}/hop/4"))).await.unwrap_err();
        assert_eq!(err, OutboundError::TooManyRedirects { max: 3 });
    }

    #[tokio::test]
    async fn answers_and_sends_what_was_asked() {
        let addr = serve(|seen| {
            let echo = format!(
                "{} {} {} {}",
                seen.method,
                seen.path,
                seen.header("x-token").unwrap_or("-"),
                String::from_utf8_lossy(&seen.body)
            );
            Reply::new(201, echo).header("content-type", "text/plain")
        })
        .await;
        let response = outbound(true)
            .send(OutboundRequest {
                method: http::Method::PUT,
                url: format!("http://{addr}/thing?x=1"),
                headers: vec![("X-Token".into(), "abc".into())],
                body: Some(Bytes::from_static(b"payload")),
                timeout: None,
            })
            .await
            .unwrap();
        assert_eq!(response.status, 201);
        assert_eq!(&response.body[..], b"PUT /thing?x=1 abc payload");
        assert_eq!(response.content_type.as_deref(), Some("text/plain"));
        assert!(!response.truncated);
    }

    #[tokio::test]
    async fn the_body_is_capped() {
        let addr = serve(|_| Reply::new(200, vec![b'x'; 10 * 1024])).await;
        let out = Outbound::new(Policy { allow_loopback: true, max_response_bytes: 1024, ..Policy::default() });
        let capped = out.send(get(&format!("http://{addr}/"))).await.unwrap();
        assert_eq!((capped.body.len(), capped.truncated), (1024, true));
        let smaller = out.send_limited(get(&format!("http://{addr}/")), 100).await.unwrap();
        assert_eq!((smaller.body.len(), smaller.truncated), (100, true));
        // A per-call limit cannot raise the policy's.
        let larger = out.send_limited(get(&format!("http://{addr}/")), 1 << 30).await.unwrap();
        assert_eq!(larger.body.len(), 1024);

        let small = serve(|_| Reply::new(200, "short")).await;
        let whole = out.send(get(&format!("http://{small}/"))).await.unwrap();
        assert_eq!((&whole.body[..], whole.truncated), (&b"short"[..], false));
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let addr = silent().await;
        let policy = Policy { allow_loopback: true, timeout: Duration::from_millis(200), ..Policy::default() };
        let out = Outbound::try_new(policy).unwrap();
        let err = out.send(get(&format!("http://{addr}/"))).await.unwrap_err();
        assert!(matches!(err, OutboundError::Timeout { .. }), "{err}");
        // A longer per-request timeout is capped at the policy's.
        let started = Instant::now();
        let slow = OutboundRequest { timeout: Some(Duration::from_secs(30)), ..get(&format!("http://{addr}/")) };
        let err = out.send(slow).await.unwrap_err();
        assert_eq!(err, OutboundError::Timeout { after: Duration::from_millis(200) });
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = outbound(true).send(get(&format!("http://{addr}/"))).await.unwrap_err();
        assert!(matches!(err, OutboundError::Connect { .. }), "{err}");
        assert!(!err.is_refused_by_policy());
    }

    #[tokio::test]
    async fn refused_headers_are_not_sent() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let request = OutboundRequest { headers: vec![("Host".into(), "internal.example".into())], ..get(&url) };
        let err = outbound(true).send(request).await.unwrap_err();
        assert!(matches!(err, OutboundError::InvalidHeader { .. }), "{err}");
        assert_never_connected(&listener).await;
    }
}
