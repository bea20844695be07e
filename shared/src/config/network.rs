//! Network rules from configuration: IP allow and deny lists (CIDR, IPv4 and IPv6) and country allow and deny
//! lists (ISO 3166-1 alpha-2). Each deployment sets its own, so they are per environment.

use std::net::IpAddr;

use super::{ConfigError, Lookup};

/// An address block: `203.0.113.0/24`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (addr, prefix) = if let Some((a, p)) = text.split_once('/') {
            (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?)
        } else {
            let a = text.parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        };
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then(|| Self { network: mask(addr, prefix), prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// Where the service runs, as far as finding the client goes: the platform, and whether CloudFront is in front
/// (only then is `CloudFront-Viewer-Country` the platform's word rather than the client's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vantage {
    pub platform: super::Platform,
    /// `CLOUD_AGENT_BEHIND_CLOUDFRONT=true`: requests reach the function only through a CloudFront distribution
    /// that sets the viewer-country header (and overwrites a client's).
    pub behind_cloudfront: bool,
}

impl Vantage {
    /// The header that carries a country the platform vouches for, if there is one here.
    pub fn country_header(self) -> Option<&'static str> {
        match self.platform {
            super::Platform::Vercel => Some("x-vercel-ip-country"),
            super::Platform::Lambda if self.behind_cloudfront => Some("cloudfront-viewer-country"),
            super::Platform::Lambda | super::Platform::Local => None,
        }
    }
}

/// Why a client was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Address,
    Country,
}

/// Browser origins allowed to call the API (CORS), exact `scheme://host[:port]` each; none by default.
pub fn cors_origins(env: Lookup<'_>) -> Result<Vec<String>, ConfigError> {
    let var = "CLOUD_AGENT_CORS_ORIGINS";
    env(var)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|origin| {
            let (scheme, rest) = origin.split_once("://").unwrap_or(("", ""));
            let ok = matches!(scheme, "https" | "http")
                && !rest.is_empty()
                && !rest.contains(['/', '*', ' ', '?', '#'])
                && http::HeaderValue::from_str(origin).is_ok();
            if ok {
                Ok(origin.to_owned())
            } else {
                Err(ConfigError::Invalid {
                    var,
                    problem: format!("{origin:?}: list exact origins like https://app.example.com (no paths, no *)"),
                })
            }
        })
        .collect()
}

#[derive(Debug, Clone, Default)]
pub struct NetworkRules {
    pub ip_allow: Vec<Cidr>,
    pub ip_deny: Vec<Cidr>,
    pub country_allow: Vec<String>,
    pub country_deny: Vec<String>,
}

impl NetworkRules {
    pub fn is_empty(&self) -> bool {
        self.ip_allow.is_empty()
            && self.ip_deny.is_empty()
            && self.country_allow.is_empty()
            && self.country_deny.is_empty()
    }

    /// Deny wins over allow; with an allow list, a client whose address (or country) the platform did not tell is
    /// refused — an allow list fails closed.
    pub fn check(&self, ip: Option<IpAddr>, country: Option<&str>) -> Result<(), Refusal> {
        if let Some(ip) = ip
            && self.ip_deny.iter().any(|c| c.contains(ip))
        {
            return Err(Refusal::Address);
        }
        if !self.ip_allow.is_empty() && !ip.is_some_and(|ip| self.ip_allow.iter().any(|c| c.contains(ip))) {
            return Err(Refusal::Address);
        }
        if let Some(country) = country
            && self.country_deny.iter().any(|c| c.eq_ignore_ascii_case(country))
        {
            return Err(Refusal::Country);
        }
        if !self.country_allow.is_empty()
            && !country.is_some_and(|country| self.country_allow.iter().any(|c| c.eq_ignore_ascii_case(country)))
        {
            return Err(Refusal::Country);
        }
        Ok(())
    }

    /// Country rules need a country the platform vouches for: refused at start where there is none, rather than
    /// judging requests by a header any client can set.
    pub fn check_trust(&self, vantage: Vantage) -> Result<(), ConfigError> {
        if (self.country_allow.is_empty() && self.country_deny.is_empty()) || vantage.country_header().is_some() {
            return Ok(());
        }
        let var = if self.country_allow.is_empty() { "CLOUD_AGENT_COUNTRY_DENY" } else { "CLOUD_AGENT_COUNTRY_ALLOW" };
        let problem = match vantage.platform {
            super::Platform::Lambda => {
                "country rules need a country the platform sets: on AWS that is CloudFront's \
                 CloudFront-Viewer-Country, so put a CloudFront distribution in front of the API and set \
                 CLOUD_AGENT_BEHIND_CLOUDFRONT=true (without CloudFront a client sets that header itself)"
            }
            _ => {
                "country rules need a country the platform sets (Vercel's X-Vercel-IP-Country, or CloudFront's \
                  with CLOUD_AGENT_BEHIND_CLOUDFRONT=true on AWS); the local server has none"
            }
        };
        Err(ConfigError::Invalid { var, problem: problem.to_owned() })
    }

    pub(super) fn from_lookup(env: Lookup<'_>) -> Result<Self, ConfigError> {
        let cidrs = |var: &'static str| -> Result<Vec<Cidr>, ConfigError> {
            env(var)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| {
                    Cidr::parse(t).ok_or_else(|| ConfigError::Invalid {
                        var,
                        problem: format!("{t:?} is not an address or CIDR block (203.0.113.0/24, 2001:db8::/32)"),
                    })
                })
                .collect()
        };
        let countries = |var: &'static str| -> Result<Vec<String>, ConfigError> {
            env(var)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| {
                    if t.len() == 2 && t.bytes().all(|b| b.is_ascii_alphabetic()) {
                        Ok(t.to_ascii_uppercase())
                    } else {
                        Err(ConfigError::Invalid { var, problem: format!("{t:?} is not a two-letter country code") })
                    }
                })
                .collect()
        };
        Ok(Self {
            ip_allow: cidrs("CLOUD_AGENT_IP_ALLOW")?,
            ip_deny: cidrs("CLOUD_AGENT_IP_DENY")?,
            country_allow: countries("CLOUD_AGENT_COUNTRY_ALLOW")?,
            country_deny: countries("CLOUD_AGENT_COUNTRY_DENY")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_contain_their_addresses_in_both_families() {
        let v4 = Cidr::parse("203.0.113.0/24").unwrap();
        assert!(v4.contains("203.0.113.77".parse().unwrap()));
        assert!(!v4.contains("203.0.114.1".parse().unwrap()));
        // An IPv4 client seen through an IPv6 socket is still that IPv4 client.
        assert!(v4.contains("::ffff:203.0.113.9".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8:bad::/48").unwrap();
        assert!(v6.contains("2001:db8:bad:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db8:good::1".parse().unwrap_or("2001:db8:1::1".parse().unwrap())));
        assert!(Cidr::parse("10.0.0.1").unwrap().contains("10.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none() && Cidr::parse("nonsense").is_none());
    }

    #[test]
    fn deny_wins_and_an_allow_list_fails_closed() {
        let rules = NetworkRules {
            ip_allow: vec![Cidr::parse("10.0.0.0/8").unwrap()],
            ip_deny: vec![Cidr::parse("10.6.6.0/24").unwrap()],
            country_allow: vec![],
            country_deny: vec!["KP".into()],
        };
        assert_eq!(rules.check(Some("10.1.2.3".parse().unwrap()), Some("DE")), Ok(()));
        assert_eq!(rules.check(Some("10.6.6.6".parse().unwrap()), None), Err(Refusal::Address));
        assert_eq!(rules.check(Some("192.0.2.1".parse().unwrap()), None), Err(Refusal::Address));
        assert_eq!(rules.check(None, None), Err(Refusal::Address), "unknown address, allow list: refused");
        assert_eq!(rules.check(Some("10.1.2.3".parse().unwrap()), Some("kp")), Err(Refusal::Country));
    }
}
