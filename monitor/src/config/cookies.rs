//! `[syn_cookies]`: SYN cookies answered from XDP for the listed TCP
//! ports (`SynCookies`), and the checks of the section. An absent section
//! turns the feature off.

use std::{collections::HashMap, time::Duration};

use monitor_common::syncookie::CookieParams;
use serde::Deserialize;
use toml::Spanned;

use super::located::{Checker, ConfigError};

/// When the XDP program answers SYNs with cookies.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum CookieMode {
    /// From the start.
    Always,
    /// While the host-wide SYN-flood detector's limit is in force;
    /// watching otherwise (SYNs go to the socket as usual).
    #[default]
    UnderAttack,
}

impl CookieMode {
    /// As the config writes it (and status and metrics say it).
    pub fn name(self) -> &'static str {
        match self {
            CookieMode::Always => "always",
            CookieMode::UnderAttack => "under_attack",
        }
    }
}

/// `[syn_cookies]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SynCookiesFile {
    ports: Option<Spanned<Vec<Spanned<i64>>>>,
    mode: Option<CookieMode>,
    mss: Option<Spanned<i64>>,
    mss6: Option<Spanned<i64>>,
    wscale: Option<Spanned<i64>>,
    verified_ttl: Option<Spanned<String>>,
    ttl: Option<Spanned<i64>>,
}

/// SYN cookies for `ports`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynCookies {
    /// The protected TCP ports, in the order written, none twice.
    pub ports: Vec<u16>,
    pub mode: CookieMode,
    /// MSS advertised to IPv4 and IPv6 clients (should match the server's).
    pub mss4: u16,
    pub mss6: u16,
    /// Window scale advertised (should match the server's).
    pub wscale: u8,
    /// How long a source that returned a valid cookie stays verified.
    pub verified_ttl: Duration,
    /// TTL / hop limit of the SYN-ACKs sent from XDP.
    pub ttl: u8,
}

impl SynCookies {
    /// The kernel's settings in cookie mode `mode` (`cookie_mode::*`).
    /// The kernel's settings for `mode`, which last turned on at
    /// `on_since_ns` (coarse clock; 0 if never).
    pub fn params(&self, mode: u32, on_since_ns: u64) -> CookieParams {
        CookieParams {
            mode,
            on_since_ns,
            verified_ttl_s: self.verified_ttl.as_secs().min(u32::MAX as u64) as u32,
            mss4: self.mss4,
            mss6: self.mss6,
            wscale: self.wscale,
            ttl: self.ttl,
            _pad: [0; 2],
        }
    }
}

/// `verified_ttl` bounds: a second is the coarsest the kernel keeps; past
/// 30 days a source's address has likely changed hands.
const VERIFIED_TTL: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(30 * 86_400));

/// The `[syn_cookies]` section, checked; `None` when absent.
pub(super) fn syn_cookies(
    c: &Checker,
    f: Option<&Spanned<SynCookiesFile>>,
) -> Result<Option<SynCookies>, ConfigError> {
    let Some(f) = f else { return Ok(None) };
    let s = f.get_ref();
    let in_range =
        |v: &Option<Spanned<i64>>, key: &str, default: i64, (lo, hi): (i64, i64), why| {
            c.number(v, &format!("syn_cookies.{key}"), default, |x| {
                if (lo..=hi).contains(&x) {
                    Ok(())
                } else {
                    Err(format!(
                        "{x} is out of range; between {lo} and {hi} ({why})"
                    ))
                }
            })
        };
    let verified_ttl = c.duration(
        s.verified_ttl.as_ref(),
        "syn_cookies.verified_ttl",
        VERIFIED_TTL,
        "between 1s and 30d",
        Duration::from_secs(3600),
    )?;
    Ok(Some(SynCookies {
        ports: ports(c, f)?,
        mode: s.mode.unwrap_or_default(),
        mss4: in_range(
            &s.mss,
            "mss",
            1460,
            (536, 9000),
            "the IPv4 minimum MSS to a jumbo frame's",
        )? as u16,
        mss6: in_range(
            &s.mss6,
            "mss6",
            1440,
            (1220, 9000),
            "the IPv6 minimum MSS to a jumbo frame's",
        )? as u16,
        wscale: in_range(
            &s.wscale,
            "wscale",
            7,
            (0, 14),
            "RFC 7323 allows at most 14",
        )? as u8,
        verified_ttl,
        ttl: in_range(&s.ttl, "ttl", 64, (1, 255), "a TTL or hop limit")? as u8,
    }))
}

/// `syn_cookies.ports`: at least one, each a TCP port, none twice.
fn ports(c: &Checker, f: &Spanned<SynCookiesFile>) -> Result<Vec<u16>, ConfigError> {
    let Some(list) = &f.get_ref().ports else {
        return Err(c.err(
            f.span(),
            "syn_cookies.ports",
            "missing; list the TCP ports to protect, e.g. ports = [443]",
        ));
    };
    if list.get_ref().is_empty() {
        return Err(c.err(
            list.span(),
            "syn_cookies.ports",
            "lists no port; name at least one, e.g. ports = [443], or remove [syn_cookies]",
        ));
    }
    let mut seen: HashMap<u16, usize> = HashMap::new();
    let mut out = Vec::with_capacity(list.get_ref().len());
    for (i, p) in list.get_ref().iter().enumerate() {
        let key = format!("syn_cookies.ports[{}]", i + 1);
        let port = u16::try_from(*p.get_ref())
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                c.err(
                    p.span(),
                    &key,
                    format!("{} is not a TCP port; between 1 and 65535", p.get_ref()),
                )
            })?;
        if let Some(first) = seen.insert(port, i + 1) {
            return Err(c.err(
                p.span(),
                key,
                format!("port {port} is listed twice (also ports[{first}]); list it once"),
            ));
        }
        out.push(port);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use monitor_common::syncookie::cookie_mode;

    use super::*;

    fn check(section: &str) -> Result<Option<SynCookies>, String> {
        let text = format!("interfaces = [\"lo\"]\n{section}");
        super::super::parse(Path::new("t.toml"), &text, false)
            .map(|c| c.syn_cookies)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn absent_section_is_off() {
        assert_eq!(check(""), Ok(None));
    }

    #[test]
    fn defaults() {
        let c = check("[syn_cookies]\nports = [443, 80]\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            c,
            SynCookies {
                ports: vec![443, 80],
                mode: CookieMode::UnderAttack,
                mss4: 1460,
                mss6: 1440,
                wscale: 7,
                verified_ttl: Duration::from_secs(3600),
                ttl: 64,
            }
        );
        let p = c.params(cookie_mode::WATCH, 0);
        assert_eq!(
            (p.mode, p.verified_ttl_s, p.mss4, p.mss6),
            (1, 3600, 1460, 1440)
        );
        assert_eq!((p.wscale, p.ttl), (7, 64));
    }

    #[test]
    fn every_key() {
        let c = check(
            "[syn_cookies]\nports = [8443]\nmode = \"always\"\nmss = 536\nmss6 = 9000\nwscale = 0\nverified_ttl = \"30d\"\nttl = 255\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.mode, CookieMode::Always);
        assert_eq!((c.mss4, c.mss6, c.wscale, c.ttl), (536, 9000, 0, 255));
        assert_eq!(c.verified_ttl, Duration::from_secs(30 * 86_400));
    }

    /// Each broken section, with the exact error an operator sees.
    const BROKEN: &[(&str, &str)] = &[
        (
            "[syn_cookies]\nmode = \"always\"\n",
            "t.toml:2: syn_cookies.ports: missing; list the TCP ports to protect, e.g. ports = [443]",
        ),
        (
            "[syn_cookies]\nports = []\n",
            "t.toml:3: syn_cookies.ports: lists no port; name at least one, e.g. ports = [443], or remove [syn_cookies]",
        ),
        (
            "[syn_cookies]\nports = [443, 0]\n",
            "t.toml:3: syn_cookies.ports[2]: 0 is not a TCP port; between 1 and 65535",
        ),
        (
            "[syn_cookies]\nports = [70000]\n",
            "t.toml:3: syn_cookies.ports[1]: 70000 is not a TCP port; between 1 and 65535",
        ),
        (
            "[syn_cookies]\nports = [443,\n80,\n443]\n",
            "t.toml:5: syn_cookies.ports[3]: port 443 is listed twice (also ports[1]); list it once",
        ),
        (
            "[syn_cookies]\nports = [443]\nmode = \"sometimes\"\n",
            "t.toml:4: syn_cookies.mode: unknown variant `sometimes`, expected `always` or `under_attack`",
        ),
        (
            "[syn_cookies]\nports = [443]\nmss = 100\n",
            "t.toml:4: syn_cookies.mss: 100 is out of range; between 536 and 9000 (the IPv4 minimum MSS to a jumbo frame's)",
        ),
        (
            "[syn_cookies]\nports = [443]\nmss6 = 1219\n",
            "t.toml:4: syn_cookies.mss6: 1219 is out of range; between 1220 and 9000 (the IPv6 minimum MSS to a jumbo frame's)",
        ),
        (
            "[syn_cookies]\nports = [443]\nwscale = 15\n",
            "t.toml:4: syn_cookies.wscale: 15 is out of range; between 0 and 14 (RFC 7323 allows at most 14)",
        ),
        (
            "[syn_cookies]\nports = [443]\nttl = 0\n",
            "t.toml:4: syn_cookies.ttl: 0 is out of range; between 1 and 255 (a TTL or hop limit)",
        ),
        (
            "[syn_cookies]\nports = [443]\nverified_ttl = \"31d\"\n",
            "t.toml:4: syn_cookies.verified_ttl: between 1s and 30d",
        ),
        (
            "[syn_cookies]\nports = [443]\nverified_ttl = \"forever\"\n",
            "t.toml:4: syn_cookies.verified_ttl: `forever` is not a duration; write a number with ms, s, m, h or d (e.g. `30s`, `10m`)",
        ),
        (
            "[syn_cookies]\nports = [443]\nport = 80\n",
            "t.toml:4: syn_cookies.port: unknown field `port`, expected one of `ports`, `mode`, `mss`, `mss6`, `wscale`, `verified_ttl`, `ttl`",
        ),
    ];

    #[test]
    fn broken_sections_are_refused_with_the_place_and_the_fix() {
        for (section, want) in BROKEN {
            assert_eq!(check(section).unwrap_err(), *want, "for:\n{section}");
        }
    }
}
