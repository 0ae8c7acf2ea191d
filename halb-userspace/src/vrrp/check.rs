//! What a router checks on each received message before the state machine
//! sees it (RFC 9568 §7.1, RFC 3768 §7.1), and the counters of what was
//! refused, one per reason.

use std::{collections::BTreeMap, net::IpAddr};

use super::{
    io::Received,
    packet::{self, Advert, ChecksumMode, DecodeError, REQUIRED_TTL, Version},
};

/// Why a received message was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reject {
    /// TTL / hop limit was not 255: it crossed a router.
    Ttl,
    Truncated,
    Version,
    Type,
    Checksum,
    /// The address count does not fit the message.
    AddressCount,
    /// An authentication type other than none or simple password.
    AuthType,
    /// Another virtual router's advert on the same link.
    Vrid,
    /// v2: the password differs from `auth_pass`.
    Auth,
    /// v2: the advert interval differs from ours (RFC 3768 §7.1); v3: an
    /// interval of zero, which would make a backup's master-down
    /// interval zero.
    Interval,
    /// Unicast mode: not from a configured peer.
    Peer,
    /// Its virtual addresses differ from ours (and it is not the owner).
    Addresses,
}

impl Reject {
    pub const ALL: [Reject; 12] = [
        Reject::Ttl,
        Reject::Truncated,
        Reject::Version,
        Reject::Type,
        Reject::Checksum,
        Reject::AddressCount,
        Reject::AuthType,
        Reject::Vrid,
        Reject::Auth,
        Reject::Interval,
        Reject::Peer,
        Reject::Addresses,
    ];

    /// Its name in `halb status` and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Reject::Ttl => "ttl",
            Reject::Truncated => "truncated",
            Reject::Version => "version",
            Reject::Type => "type",
            Reject::Checksum => "checksum",
            Reject::AddressCount => "address_count",
            Reject::AuthType => "auth_type",
            Reject::Vrid => "vrid",
            Reject::Auth => "auth",
            Reject::Interval => "interval",
            Reject::Peer => "peer",
            Reject::Addresses => "addresses",
        }
    }
}

impl From<DecodeError> for Reject {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Truncated { .. } => Reject::Truncated,
            DecodeError::Version(..) => Reject::Version,
            DecodeError::Type(_) => Reject::Type,
            DecodeError::Checksum => Reject::Checksum,
            DecodeError::AddressCount { .. } => Reject::AddressCount,
            DecodeError::AuthType(_) => Reject::AuthType,
        }
    }
}

/// What a received advert must match.
#[derive(Debug, Clone)]
pub struct Expect {
    pub version: Version,
    pub checksum: ChecksumMode,
    pub vrid: u8,
    pub advert_interval: std::time::Duration,
    pub password: Option<[u8; 8]>,
    pub unicast_peers: Vec<IpAddr>,
    pub addresses: Vec<IpAddr>,
}

impl Expect {
    /// The advert in `received`, or why it must be ignored.
    pub fn check(&self, received: &Received) -> Result<Advert, Reject> {
        if received.ttl != REQUIRED_TTL {
            return Err(Reject::Ttl);
        }
        let advert = packet::decode(
            &received.payload,
            received.src,
            received.dst,
            self.version,
            self.checksum,
        )?;
        if advert.vrid != self.vrid {
            return Err(Reject::Vrid);
        }
        if self.version == Version::V2 {
            if advert.password != self.password {
                return Err(Reject::Auth);
            }
            if advert.interval != self.advert_interval {
                return Err(Reject::Interval);
            }
        } else if advert.interval.is_zero() {
            // RFC 9568 §5.2.7 leaves 0 undefined; honoured, a backup would
            // declare the master down at once after every advert.
            return Err(Reject::Interval);
        }
        if !self.unicast_peers.is_empty() && !self.unicast_peers.contains(&received.src) {
            return Err(Reject::Peer);
        }
        let mut theirs = advert.addresses.clone();
        let mut ours = self.addresses.clone();
        theirs.sort();
        ours.sort();
        // RFC 9568 §7.1: a mismatch is a misconfiguration; only the
        // address owner's advert is still heeded.
        if theirs != ours && advert.priority != super::fsm::OWNER_PRIORITY {
            return Err(Reject::Addresses);
        }
        Ok(advert)
    }
}

/// Counts of refused messages by reason.
#[derive(Debug, Clone, Default)]
pub struct Rejected(BTreeMap<Reject, u64>);

impl Rejected {
    pub fn count(&mut self, reason: Reject) {
        *self.0.entry(reason).or_default() += 1;
    }

    /// Every reason with its count, zeros included.
    pub fn by_name(&self) -> BTreeMap<String, u64> {
        Reject::ALL
            .iter()
            .map(|r| (r.name().to_owned(), self.0.get(r).copied().unwrap_or(0)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn expect() -> Expect {
        Expect {
            version: Version::V2,
            checksum: ChecksumMode::Rfc,
            vrid: 51,
            advert_interval: Duration::from_secs(1),
            password: Some(*b"secret\0\0"),
            unicast_peers: vec![],
            addresses: vec!["198.18.0.100".parse().unwrap()],
        }
    }

    fn received(advert: &Advert, ttl: u8) -> Received {
        let src: IpAddr = "198.18.0.3".parse().unwrap();
        let dst: IpAddr = "224.0.0.18".parse().unwrap();
        Received {
            src,
            dst,
            ttl,
            payload: packet::encode(advert, src, dst, ChecksumMode::Rfc),
        }
    }

    fn advert() -> Advert {
        Advert {
            version: Version::V2,
            vrid: 51,
            priority: 100,
            interval: Duration::from_secs(1),
            addresses: vec!["198.18.0.100".parse().unwrap()],
            password: Some(*b"secret\0\0"),
        }
    }

    #[test]
    fn each_mismatch_has_its_reason() {
        let e = expect();
        assert!(e.check(&received(&advert(), 255)).is_ok());
        assert_eq!(e.check(&received(&advert(), 254)), Err(Reject::Ttl));
        type Change = fn(&mut Advert);
        let cases: [(Change, Reject); 4] = [
            (|a| a.vrid = 52, Reject::Vrid),
            (|a| a.password = Some(*b"wrong\0\0\0"), Reject::Auth),
            (|a| a.interval = Duration::from_secs(2), Reject::Interval),
            (
                |a| a.addresses = vec!["198.18.0.101".parse().unwrap()],
                Reject::Addresses,
            ),
        ];
        for (change, reason) in cases {
            let mut a = advert();
            change(&mut a);
            assert_eq!(e.check(&received(&a, 255)), Err(reason));
        }
        let mut wrong_peer = expect();
        wrong_peer.unicast_peers = vec!["198.18.0.9".parse().unwrap()];
        assert_eq!(
            wrong_peer.check(&received(&advert(), 255)),
            Err(Reject::Peer)
        );
    }

    #[test]
    fn a_v3_advert_with_interval_zero_is_refused() {
        let mut e = expect();
        e.version = Version::V3;
        e.password = None;
        let mut a = advert();
        a.version = Version::V3;
        a.password = None;
        assert!(e.check(&received(&a, 255)).is_ok());
        a.interval = Duration::ZERO;
        assert_eq!(e.check(&received(&a, 255)), Err(Reject::Interval));
    }
}
