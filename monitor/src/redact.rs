//! Addresses in logs and events: whole, cut to a prefix, or replaced by a
//! keyed hash, so logs can leave the host without personal data.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::{LogConfig, Redact};

#[derive(Clone)]
pub struct Redactor {
    mode: Redact,
    v4: u8,
    v6: u8,
    key: [u8; 32],
}

impl Redactor {
    pub fn new(cfg: &LogConfig) -> anyhow::Result<Self> {
        let mut key = [0u8; 32];
        if cfg.redact == Redact::Hash {
            let path = cfg
                .hash_key_file
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("log.redact = \"hash\" needs log.hash_key_file"))?;
            let bytes = std::fs::read(path).map_err(|e| {
                anyhow::anyhow!(
                    "reading log.hash_key_file {}: {e}; create it with `head -c32 /dev/urandom > {}`",
                    path.display(),
                    path.display()
                )
            })?;
            if bytes.len() < 16 {
                anyhow::bail!(
                    "log.hash_key_file {} holds {} bytes; use at least 16 random bytes",
                    path.display(),
                    bytes.len()
                );
            }
            key = *blake3::hash(&bytes).as_bytes();
        }
        Ok(Self {
            mode: cfg.redact,
            v4: cfg.ipv4_prefix,
            v6: cfg.ipv6_prefix,
            key,
        })
    }

    /// No redaction.
    pub fn none() -> Self {
        Self {
            mode: Redact::None,
            v4: 32,
            v6: 128,
            key: [0; 32],
        }
    }

    pub fn addr(&self, a: IpAddr) -> String {
        self.net(IpNet::from(a))
    }

    /// A prefix (a source key, a ban) as it may appear in logs.
    pub fn net(&self, n: IpNet) -> String {
        match self.mode {
            Redact::None => {
                if n.prefix_len() == n.max_prefix_len() {
                    n.addr().to_string()
                } else {
                    n.to_string()
                }
            }
            Redact::Prefix => {
                let len = match n {
                    IpNet::V4(_) => self.v4,
                    IpNet::V6(_) => self.v6,
                };
                IpNet::new(n.addr(), len.min(n.prefix_len()))
                    .map(|x| x.trunc().to_string())
                    .unwrap_or_else(|_| n.trunc().to_string())
            }
            Redact::Hash => {
                let h = blake3::keyed_hash(&self.key, n.to_string().as_bytes());
                format!("h:{}", &h.to_hex()[..16])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(redact: Redact) -> LogConfig {
        LogConfig {
            format: Default::default(),
            redact,
            ipv4_prefix: 24,
            ipv6_prefix: 48,
            hash_key_file: None,
        }
    }

    #[test]
    fn modes() {
        let a: IpAddr = "192.0.2.77".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2::9".parse().unwrap();
        let r = Redactor::new(&cfg(Redact::None)).unwrap();
        assert_eq!(r.addr(a), "192.0.2.77");
        let r = Redactor::new(&cfg(Redact::Prefix)).unwrap();
        assert_eq!(r.addr(a), "192.0.2.0/24");
        assert_eq!(r.addr(b), "2001:db8:1::/48");
        let mut r = Redactor::new(&cfg(Redact::None)).unwrap();
        r.mode = Redact::Hash;
        let h = r.addr(a);
        assert!(h.starts_with("h:") && !h.contains("192"), "{h}");
        assert_eq!(
            h,
            r.addr(a),
            "stable, so one source's lines still correlate"
        );
        r.key[0] ^= 1;
        assert_ne!(h, r.addr(a), "keyed: another key, another hash");
    }
}
