//! The sync protocol on the wire: one UDP datagram is one message, a fixed
//! header, flow records, and an HMAC-SHA256 tag (truncated to 16 bytes)
//! over everything before it, keyed by the shared key.
//!
//! ```text
//! 0      4   5    6      8        16      24    32     40           48    56
//! "HLBS" ver kind count  session  nonce   seq   base   ack_session  ack   records... tag(16)
//! ```
//!
//! `session` is the sender's start time (it grows across restarts), `nonce`
//! grows with every datagram sent in a session (replays are refused by
//! it), `seq` numbers the reliable messages (0: none), `base` is the
//! oldest the sender still holds for resending (what came before it, a
//! receiver that lost track must take from a table resync), and `ack` says that
//! every reliable message of the receiver's session `ack_session` up to it
//! has been received and installed. All integers are big-endian.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const MAGIC: [u8; 4] = *b"HLBS";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 56;
pub const TAG_LEN: usize = 16;
pub const RECORD_LEN: usize = 90;
/// Largest datagram sent: fits a 1500-byte MTU with IPv6 and UDP headers.
pub const MAX_DATAGRAM: usize = 1400;
/// Records that fit one datagram.
pub const MAX_RECORDS: usize = (MAX_DATAGRAM - HEADER_LEN - TAG_LEN) / RECORD_LEN;

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Flow records (reliable).
    Flows = 1,
    /// Nothing but the acknowledgement, and a sign of life (not reliable).
    Heartbeat = 2,
    /// "Send me your whole table" (reliable).
    ResyncRequest = 3,
    /// The whole table has been sent, in the messages before this one (reliable).
    ResyncDone = 4,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Kind::Flows,
            2 => Kind::Heartbeat,
            3 => Kind::ResyncRequest,
            4 => Kind::ResyncDone,
            _ => return None,
        })
    }

    /// Reliable kinds carry a sequence number and are resent until acked.
    pub fn reliable(self) -> bool {
        self != Kind::Heartbeat
    }
}

/// Why a record was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    New = 1,
    Refresh = 2,
    Closing = 3,
    /// Part of a bulk resync the receiver asked for: it replaces what the
    /// receiver has.
    Table = 4,
    /// Part of the table a starting node offers its peers (flows its
    /// datapath made while no agent ran, or whose events died with the
    /// last one): installed only where the receiver has no such flow.
    Offer = 5,
}

/// How the flow is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowMode {
    /// The backend sees `snat`; its replies come back to it.
    FullNat {
        snat: SocketAddr,
    },
    /// The backend sees the client; its replies are routed through us.
    KeepClient,
    Dsr,
}

/// One flow, in terms every node understands (addresses, not ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowRecord {
    pub kind: RecordKind,
    pub mode: FlowMode,
    pub closing: bool,
    /// IP protocol number (TCP or UDP).
    pub proto: u8,
    pub client: SocketAddr,
    pub vip: SocketAddr,
    pub backend: SocketAddr,
    /// The previous hop towards the client.
    pub client_mac: [u8; 6],
    /// Time since the flow was last seen by its sender, in milliseconds.
    pub age_ms: u32,
}

/// One message, decoded and authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: Kind,
    pub session: u64,
    pub nonce: u64,
    pub seq: u64,
    pub base: u64,
    pub ack_session: u64,
    pub ack: u64,
    pub records: Vec<FlowRecord>,
}

/// Why a datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("too short or not a halb sync message")]
    NotSync,
    #[error("unknown protocol version")]
    Version,
    #[error("authentication failed (wrong key, or altered)")]
    BadTag,
    #[error("malformed")]
    Malformed,
}

impl WireError {
    /// As counters name it.
    pub fn name(self) -> &'static str {
        match self {
            WireError::NotSync => "not_sync",
            WireError::Version => "bad_version",
            WireError::BadTag => "bad_mac",
            WireError::Malformed => "malformed",
        }
    }
}

/// The shared key, ready to sign and check messages.
#[derive(Clone)]
pub struct Key(Hmac<Sha256>);

impl Key {
    pub fn new(secret: &[u8]) -> Self {
        Self(Hmac::new_from_slice(secret).expect("HMAC takes keys of any length"))
    }

    fn tag(&self, data: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.0.clone();
        mac.update(data);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.0.clone();
        mac.update(data);
        mac.verify_truncated_left(tag).is_ok()
    }
}

/// Encodes and signs `message`; at most [`MAX_RECORDS`] records.
pub fn encode(message: &Message, key: &Key) -> Vec<u8> {
    assert!(
        message.records.len() <= MAX_RECORDS,
        "too many records for one datagram"
    );
    let mut out = Vec::with_capacity(HEADER_LEN + message.records.len() * RECORD_LEN + TAG_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(message.kind as u8);
    out.extend_from_slice(&(message.records.len() as u16).to_be_bytes());
    for v in [
        message.session,
        message.nonce,
        message.seq,
        message.base,
        message.ack_session,
        message.ack,
    ] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    for record in &message.records {
        encode_record(record, &mut out);
    }
    let tag = key.tag(&out);
    out.extend_from_slice(&tag);
    out
}

/// Authenticates and decodes one datagram. Nothing of a datagram that
/// fails is looked at beyond its header.
pub fn decode(datagram: &[u8], key: &Key) -> Result<Message, WireError> {
    if datagram.len() < HEADER_LEN + TAG_LEN || datagram[..4] != MAGIC {
        return Err(WireError::NotSync);
    }
    if datagram[4] != VERSION {
        return Err(WireError::Version);
    }
    let (signed, tag) = datagram.split_at(datagram.len() - TAG_LEN);
    if !key.verify(signed, tag) {
        return Err(WireError::BadTag);
    }
    let kind = Kind::from_u8(signed[5]).ok_or(WireError::Malformed)?;
    let count = u16::from_be_bytes([signed[6], signed[7]]) as usize;
    if signed.len() != HEADER_LEN + count * RECORD_LEN || count > MAX_RECORDS {
        return Err(WireError::Malformed);
    }
    let word = |i: usize| u64::from_be_bytes(signed[8 + i * 8..16 + i * 8].try_into().unwrap());
    let message = Message {
        kind,
        session: word(0),
        nonce: word(1),
        seq: word(2),
        base: word(3),
        ack_session: word(4),
        ack: word(5),
        records: signed[HEADER_LEN..]
            .chunks_exact(RECORD_LEN)
            .map(decode_record)
            .collect::<Result<_, _>>()?,
    };
    if kind.reliable() != (message.seq != 0) || (kind != Kind::Flows && !message.records.is_empty())
    {
        return Err(WireError::Malformed);
    }
    Ok(message)
}

const FAMILY_V4: u8 = 4;
const FAMILY_V6: u8 = 6;

fn put_ip(ip: IpAddr, out: &mut Vec<u8>) {
    match ip {
        IpAddr::V4(v4) => {
            out.extend_from_slice(&v4.octets());
            out.extend_from_slice(&[0; 12]);
        }
        IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
    }
}

fn family(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { FAMILY_V4 } else { FAMILY_V6 }
}

/// kind mode state proto client_family backend_family snat_family 0
/// client(16) vip(16) client_port vip_port backend(16) backend_port
/// snat(16) snat_port client_mac(6) age_ms(4)
fn encode_record(r: &FlowRecord, out: &mut Vec<u8>) {
    let (mode, snat) = match r.mode {
        FlowMode::FullNat { snat } => (0u8, Some(snat)),
        FlowMode::KeepClient => (1, None),
        FlowMode::Dsr => (2, None),
    };
    out.extend_from_slice(&[
        r.kind as u8,
        mode,
        r.closing as u8,
        r.proto,
        family(r.client.ip()),
        family(r.backend.ip()),
        snat.map_or(0, |s| family(s.ip())),
        0,
    ]);
    put_ip(r.client.ip(), out);
    put_ip(r.vip.ip(), out);
    out.extend_from_slice(&r.client.port().to_be_bytes());
    out.extend_from_slice(&r.vip.port().to_be_bytes());
    put_ip(r.backend.ip(), out);
    out.extend_from_slice(&r.backend.port().to_be_bytes());
    match snat {
        Some(s) => {
            put_ip(s.ip(), out);
            out.extend_from_slice(&s.port().to_be_bytes());
        }
        None => out.extend_from_slice(&[0; 18]),
    }
    out.extend_from_slice(&r.client_mac);
    out.extend_from_slice(&r.age_ms.to_be_bytes());
}

fn get_ip(family: u8, bytes: &[u8]) -> Result<IpAddr, WireError> {
    match family {
        FAMILY_V4 if bytes[4..].iter().all(|b| *b == 0) => Ok(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        FAMILY_V6 => Ok(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).expect("16 bytes"),
        ))),
        _ => Err(WireError::Malformed),
    }
}

fn decode_record(b: &[u8]) -> Result<FlowRecord, WireError> {
    let port = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let kind = match b[0] {
        1 => RecordKind::New,
        2 => RecordKind::Refresh,
        3 => RecordKind::Closing,
        4 => RecordKind::Table,
        5 => RecordKind::Offer,
        _ => return Err(WireError::Malformed),
    };
    let closing = match b[2] {
        0 => false,
        1 => true,
        _ => return Err(WireError::Malformed),
    };
    let proto = b[3];
    if proto != libc::IPPROTO_TCP as u8 && proto != libc::IPPROTO_UDP as u8 {
        return Err(WireError::Malformed);
    }
    let client_ip = get_ip(b[4], &b[8..24])?;
    let vip_ip = get_ip(b[4], &b[24..40])?;
    let client = SocketAddr::new(client_ip, port(40));
    let vip = SocketAddr::new(vip_ip, port(42));
    let backend = SocketAddr::new(get_ip(b[5], &b[44..60])?, port(60));
    let mode = match (b[1], b[6]) {
        (0, family) => FlowMode::FullNat {
            snat: SocketAddr::new(get_ip(family, &b[62..78])?, port(78)),
        },
        (1, 0) => FlowMode::KeepClient,
        (2, 0) => FlowMode::Dsr,
        _ => return Err(WireError::Malformed),
    };
    if let FlowMode::FullNat { snat } = mode
        && snat.is_ipv4() != backend.is_ipv4()
    {
        return Err(WireError::Malformed);
    }
    Ok(FlowRecord {
        kind,
        mode,
        closing,
        proto,
        client,
        vip,
        backend,
        client_mac: b[80..86].try_into().expect("6 bytes"),
        age_ms: u32::from_be_bytes(b[86..90].try_into().expect("4 bytes")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::new(b"0123456789abcdef-shared")
    }

    pub(crate) fn record(i: u16) -> FlowRecord {
        FlowRecord {
            kind: RecordKind::New,
            mode: FlowMode::FullNat {
                snat: "198.18.0.101:10007".parse().unwrap(),
            },
            closing: false,
            proto: 6,
            client: SocketAddr::new("198.18.0.10".parse().unwrap(), 40000 + i),
            vip: "198.18.0.100:80".parse().unwrap(),
            backend: "198.18.0.11:80".parse().unwrap(),
            client_mac: [2, 0, 0, 0, 0, 10],
            age_ms: 3,
        }
    }

    fn message(records: Vec<FlowRecord>) -> Message {
        Message {
            kind: Kind::Flows,
            session: 1_700_000_000_000,
            nonce: 7,
            seq: 5,
            base: 2,
            ack_session: 1_699_000_000_000,
            ack: 9,
            records,
        }
    }

    #[test]
    fn a_full_message_round_trips_and_fits_a_datagram() {
        let mut records: Vec<FlowRecord> = (0..MAX_RECORDS as u16).map(record).collect();
        records[1].mode = FlowMode::Dsr;
        records[2].mode = FlowMode::KeepClient;
        records[3].client = "[2001:db8::10]:40000".parse().unwrap();
        records[3].vip = "[2001:db8::100]:80".parse().unwrap();
        records[3].backend = "[2001:db8::11]:80".parse().unwrap();
        records[3].mode = FlowMode::FullNat {
            snat: "[2001:db8::101]:10001".parse().unwrap(),
        };
        records[4].closing = true;
        records[4].kind = RecordKind::Closing;
        records[5].kind = RecordKind::Offer;
        records[6].kind = RecordKind::Table;
        let m = message(records);
        let bytes = encode(&m, &key());
        assert!(bytes.len() <= MAX_DATAGRAM, "{} bytes", bytes.len());
        assert_eq!(decode(&bytes, &key()), Ok(m));
    }

    #[test]
    fn a_message_signed_with_another_key_or_altered_is_refused() {
        let bytes = encode(&message(vec![record(1)]), &key());
        assert_eq!(
            decode(&bytes, &Key::new(b"another key of 16+ bytes")),
            Err(WireError::BadTag)
        );
        for i in 5..bytes.len() {
            let mut altered = bytes.clone();
            altered[i] ^= 0x40;
            assert_eq!(decode(&altered, &key()), Err(WireError::BadTag), "byte {i}");
        }
        assert_eq!(
            decode(&bytes[..bytes.len() - 1], &key()),
            Err(WireError::BadTag)
        );
        assert_eq!(decode(b"HLBS", &key()), Err(WireError::NotSync));
    }

    #[test]
    fn a_signed_but_inconsistent_message_is_malformed() {
        // Signed with the right key, so only the content is at fault.
        let mut m = message(vec![record(1)]);
        m.seq = 0;
        assert_eq!(
            decode(&encode(&m, &key()), &key()),
            Err(WireError::Malformed)
        );
        let mut m = message(vec![record(1)]);
        m.kind = Kind::Heartbeat;
        m.seq = 0;
        assert_eq!(
            decode(&encode(&m, &key()), &key()),
            Err(WireError::Malformed)
        );
        let mut r = record(1);
        r.proto = 1;
        assert_eq!(
            decode(&encode(&message(vec![r]), &key()), &key()),
            Err(WireError::Malformed)
        );
    }
}
