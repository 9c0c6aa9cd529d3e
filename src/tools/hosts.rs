//! The host policy of `fetch_url`: which hosts and addresses a fetch may reach. Pure: it
//! classifies addresses and matches names; resolving and connecting are `fetch`'s.
//!
//! By default every public address may be fetched and no private, loopback, link-local,
//! unique-local, CGNAT, unspecified, multicast or reserved one may (so a model cannot reach
//! the person's router, intranet or cloud metadata service). A host the person allowed
//! (`--allow-host`, `[tools] allow_hosts`) may be any of those; a denied one
//! (`[tools] deny_hosts`) is refused whatever it resolves to, and deny beats allow. The checks
//! run on the addresses a name resolved to, not on the name, so a public name pointing at a
//! private address is refused too.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Loopback,
    Private,
    LinkLocal,
    UniqueLocal,
    /// 100.64.0.0/10, carrier-grade NAT.
    SharedCgnat,
    Unspecified,
    Multicast,
    Broadcast,
    /// Ranges not meant for hosts on the internet (240.0.0.0/4, benchmarking, IETF).
    Reserved,
}

impl AddressClass {
    /// "a loopback address", for refusals.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Loopback => "a loopback address",
            Self::Private => "a private address",
            Self::LinkLocal => "a link-local address",
            Self::UniqueLocal => "a unique-local address",
            Self::SharedCgnat => "a carrier-grade NAT (shared) address",
            Self::Unspecified => "an unspecified address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "a broadcast address",
            Self::Reserved => "a reserved address",
        }
    }
}

/// What kind of non-public address `ip` is; `None` for a public one.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    let [a, b, c, _] = ip.octets();
    let class = match (a, b) {
        (0, _) => AddressClass::Unspecified,
        (127, _) => AddressClass::Loopback,
        (10, _) | (172, 16..=31) | (192, 168) => AddressClass::Private,
        (100, 64..=127) => AddressClass::SharedCgnat,
        (169, 254) => AddressClass::LinkLocal,
        (224..=239, _) => AddressClass::Multicast,
        _ if ip == Ipv4Addr::BROADCAST => AddressClass::Broadcast,
        (240..=255, _) | (198, 18..=19) => AddressClass::Reserved,
        (192, 0) if c == 0 => AddressClass::Reserved,
        _ => return None,
    };
    Some(class)
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    if ip.is_unspecified() {
        return Some(AddressClass::Unspecified);
    }
    if ip.is_loopback() {
        return Some(AddressClass::Loopback);
    }
    // Addresses that carry an IPv4 address reach that address: judge it instead, so
    // `::ffff:127.0.0.1` is as loopback as `127.0.0.1`.
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let s = ip.segments();
    let class = match s[0] {
        x if x & 0xfe00 == 0xfc00 => AddressClass::UniqueLocal,
        x if x & 0xffc0 == 0xfe80 => AddressClass::LinkLocal,
        // Site-local (deprecated, but still routed inside some networks).
        x if x & 0xffc0 == 0xfec0 => AddressClass::Private,
        x if x & 0xff00 == 0xff00 => AddressClass::Multicast,
        _ => return None,
    };
    Some(class)
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`),
/// NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:aabb:ccdd::`) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let last =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] => Some(last(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(last(hi, lo)),
        [0x2002, hi, lo, ..] => Some(last(hi, lo)),
        _ => None,
    }
}

/// One entry of `allow_hosts` / `deny_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `*`: every host.
    Any,
    /// `example.com`: that name only.
    Name(String),
    /// `*.example.com`: every name below `example.com` (not `example.com` itself).
    Below(String),
    /// `127.0.0.1`, `::1`, `[::1]`: that address, whether written in the URL or resolved.
    Address(IpAddr),
}

impl HostPattern {
    /// Reads an entry as a person writes it; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t == "*" {
            return Ok(Self::Any);
        }
        let unbracketed = t
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(t);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(Self::Address(ip));
        }
        let (below, name) = match t.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let name = normalise_name(name);
        let valid = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !valid {
            return Err(format!(
                "{text:?} is not a host name, an IP address, `*.domain` or `*` (no scheme, port \
                 or path)"
            ));
        }
        Ok(if below {
            Self::Below(name)
        } else {
            Self::Name(name)
        })
    }

    fn matches_name(&self, name: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Name(n) => n == name,
            Self::Below(n) => name
                .strip_suffix(n.as_str())
                .is_some_and(|head| head.ends_with('.') && head.len() > 1),
            Self::Address(_) => false,
        }
    }

    fn matches_address(&self, ip: IpAddr) -> bool {
        match self {
            Self::Any => true,
            Self::Address(a) => canonical_ip(*a) == canonical_ip(ip),
            Self::Name(_) | Self::Below(_) => false,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Name(n) => f.write_str(n),
            Self::Below(n) => write!(f, "*.{n}"),
            Self::Address(a) => write!(f, "{a}"),
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is, so an entry `127.0.0.1` matches
/// `::ffff:127.0.0.1`.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Lowercase, without the trailing dot of a fully qualified name.
fn normalise_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A host as it stands in a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlHost {
    Name(String),
    Address(IpAddr),
}

impl UrlHost {
    /// From `url::Host` parts: a domain (lowercased, trailing dot dropped) or an IP literal.
    pub fn name(name: &str) -> Self {
        Self::Name(normalise_name(name))
    }

    /// How `--allow-host` would name it.
    fn flag_value(&self) -> String {
        match self {
            Self::Name(n) => n.clone(),
            Self::Address(a) => a.to_string(),
        }
    }
}

impl fmt::Display for UrlHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Address(a) => write!(f, "{a}"),
        }
    }
}

/// Why a fetch was refused before anything was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The name or an address it resolved to is in `deny_hosts`.
    Denied { what: String, pattern: String },
    /// An address is not public and the host was not allowed.
    NotPublic {
        host: UrlHost,
        address: IpAddr,
        class: AddressClass,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Denied { what, pattern } => write!(
                f,
                "refused: {what} is denied by the host policy ([tools] deny_hosts entry \
                 {pattern:?}; deny wins over allow)"
            ),
            Self::NotPublic {
                host,
                address,
                class,
            } => {
                let via = match host {
                    UrlHost::Name(n) => format!(" ({n} resolves to it)"),
                    UrlHost::Address(_) => String::new(),
                };
                write!(
                    f,
                    "refused: {address} is {}{via}; allow it with --allow-host {} \
                     or [tools] allow_hosts",
                    class.describe(),
                    host.flag_value()
                )
            }
        }
    }
}

/// The allow and deny lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPolicy {
    pub allow: Vec<HostPattern>,
    pub deny: Vec<HostPattern>,
}

impl HostPolicy {
    /// Checks `host` and every address it resolved to (for an IP literal, the address
    /// itself). Every address must pass: a name with one private address among public ones
    /// is refused, since the connection could go to any of them.
    pub fn check(&self, host: &UrlHost, addresses: &[IpAddr]) -> Result<(), Refusal> {
        let name_matches = |p: &HostPattern| match host {
            UrlHost::Name(n) => p.matches_name(n),
            UrlHost::Address(a) => p.matches_address(*a),
        };
        if let Some(p) = self.deny.iter().find(|p| name_matches(p)) {
            return Err(Refusal::Denied {
                what: host.to_string(),
                pattern: p.to_string(),
            });
        }
        for &address in addresses {
            if let Some(p) = self.deny.iter().find(|p| p.matches_address(address)) {
                return Err(Refusal::Denied {
                    what: match host {
                        UrlHost::Address(_) => address.to_string(),
                        UrlHost::Name(n) => format!("{address} (which {n} resolves to)"),
                    },
                    pattern: p.to_string(),
                });
            }
        }
        let host_allowed = self.allow.iter().any(name_matches);
        for &address in addresses {
            if host_allowed || self.allow.iter().any(|p| p.matches_address(address)) {
                continue;
            }
            if let Some(class) = classify(address) {
                return Err(Refusal::NotPublic {
                    host: host.clone(),
                    address,
                    class,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn non_public_addresses_are_classified() {
        let cases = [
            ("127.0.0.1", AddressClass::Loopback),
            ("127.255.0.9", AddressClass::Loopback),
            ("10.1.2.3", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.31.255.255", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("169.254.169.254", AddressClass::LinkLocal),
            ("100.64.0.1", AddressClass::SharedCgnat),
            ("100.127.255.255", AddressClass::SharedCgnat),
            ("0.0.0.0", AddressClass::Unspecified),
            ("0.1.2.3", AddressClass::Unspecified),
            ("224.0.0.1", AddressClass::Multicast),
            ("255.255.255.255", AddressClass::Broadcast),
            ("240.0.0.1", AddressClass::Reserved),
            ("::", AddressClass::Unspecified),
            ("::1", AddressClass::Loopback),
            ("fc00::1", AddressClass::UniqueLocal),
            ("fd12:3456::1", AddressClass::UniqueLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("ff02::1", AddressClass::Multicast),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:10.0.0.1", AddressClass::Private),
            ("64:ff9b::a9fe:a9fe", AddressClass::LinkLocal),
            ("2002:c0a8:0101::1", AddressClass::Private),
        ];
        for (text, class) in cases {
            assert_eq!(classify(ip(text)), Some(class), "{text}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for text in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:93.184.216.34",
        ] {
            assert_eq!(classify(ip(text)), None, "{text}");
        }
    }

    #[test]
    fn patterns_parse_names_wildcards_and_addresses() {
        assert_eq!(
            HostPattern::parse("Example.COM."),
            Ok(HostPattern::Name("example.com".into()))
        );
        assert_eq!(
            HostPattern::parse("*.example.com"),
            Ok(HostPattern::Below("example.com".into()))
        );
        assert_eq!(
            HostPattern::parse("[::1]"),
            Ok(HostPattern::Address(ip("::1")))
        );
        assert_eq!(HostPattern::parse("*"), Ok(HostPattern::Any));
        for bad in [
            "",
            "http://example.com",
            "example.com:8080",
            "exa mple.com",
            "a..b",
            "*example.com",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_wildcard_matches_subdomains_only() {
        let p = HostPattern::parse("*.example.com").expect("valid");
        assert!(p.matches_name("wiki.example.com"));
        assert!(p.matches_name("a.b.example.com"));
        assert!(!p.matches_name("example.com"));
        assert!(!p.matches_name("badexample.com"));
    }

    fn policy(allow: &[&str], deny: &[&str]) -> HostPolicy {
        let parse = |list: &[&str]| {
            list.iter()
                .map(|s| HostPattern::parse(s).expect("valid"))
                .collect()
        };
        HostPolicy {
            allow: parse(allow),
            deny: parse(deny),
        }
    }

    #[test]
    fn loopback_is_refused_by_default_with_the_flag_to_allow_it() {
        let err = policy(&[], &[])
            .check(&UrlHost::name("localhost"), &[ip("127.0.0.1")])
            .expect_err("loopback");
        assert_eq!(
            err.to_string(),
            "refused: 127.0.0.1 is a loopback address (localhost resolves to it); allow it \
             with --allow-host localhost or [tools] allow_hosts"
        );
    }

    #[test]
    fn a_public_name_resolving_to_a_private_address_is_refused() {
        let err = policy(&[], &[])
            .check(
                &UrlHost::name("rebind.example"),
                &[ip("93.184.216.34"), ip("10.0.0.5")],
            )
            .expect_err("one private address");
        assert!(
            matches!(
                err,
                Refusal::NotPublic {
                    class: AddressClass::Private,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn an_allowed_name_or_address_may_be_private() {
        let p = policy(&["localhost", "10.0.0.5"], &[]);
        assert_eq!(
            p.check(&UrlHost::name("localhost"), &[ip("127.0.0.1")]),
            Ok(())
        );
        assert_eq!(
            p.check(&UrlHost::name("wiki.corp"), &[ip("10.0.0.5")]),
            Ok(())
        );
        assert!(
            p.check(&UrlHost::name("wiki.corp"), &[ip("10.0.0.6")])
                .is_err()
        );
        assert_eq!(
            p.check(&UrlHost::Address(ip("10.0.0.5")), &[ip("10.0.0.5")]),
            Ok(())
        );
    }

    #[test]
    fn deny_beats_allow_by_name_and_by_address() {
        let p = policy(&["localhost", "*.corp"], &["localhost", "10.0.0.9"]);
        let err = p
            .check(&UrlHost::name("localhost"), &[ip("127.0.0.1")])
            .expect_err("denied");
        assert!(matches!(err, Refusal::Denied { .. }), "{err}");
        let err = p
            .check(&UrlHost::name("wiki.corp"), &[ip("10.0.0.9")])
            .expect_err("denied by address");
        assert!(
            err.to_string()
                .contains("10.0.0.9 (which wiki.corp resolves to)"),
            "{err}"
        );
        let err = policy(&[], &["example.com"])
            .check(&UrlHost::name("example.com"), &[ip("93.184.216.34")])
            .expect_err("public but denied");
        assert!(err.to_string().contains("deny_hosts"), "{err}");
    }

    #[test]
    fn public_hosts_pass_without_any_list() {
        assert_eq!(
            policy(&[], &[]).check(&UrlHost::name("example.com"), &[ip("93.184.216.34")]),
            Ok(())
        );
    }
}
