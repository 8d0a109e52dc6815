//! The BFD Control packet (RFC 5880 section 4.1) and the reception checks
//! that do not depend on a session (section 6.8.6, first paragraphs).
//!
//! Authentication is not implemented: a packet with the A bit set is parsed
//! as far as its Authentication Section header and refused with
//! [`DecodeError::Authentication`], which is what RFC 5880 asks of a system
//! that uses no authentication.

use nom::Parser;
use thiserror::Error;

/// The protocol version this codec speaks (RFC 5880 section 4.1).
pub const VERSION: u8 = 1;
/// The mandatory section: the whole packet when the A bit is clear.
pub const MANDATORY_LEN: usize = 24;
/// The mandatory section plus the Authentication Section's type and length.
pub const MIN_AUTHENTICATED_LEN: usize = MANDATORY_LEN + 2;

/// The session states as they are carried in the Sta field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SessionState {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl SessionState {
    fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0 => SessionState::AdminDown,
            1 => SessionState::Down,
            2 => SessionState::Init,
            _ => SessionState::Up,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SessionState::AdminDown => "AdminDown",
            SessionState::Down => "Down",
            SessionState::Init => "Init",
            SessionState::Up => "Up",
        }
    }
}

/// The Diag field (RFC 5880 section 4.1); values the RFC does not define are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diagnostic {
    None,
    ControlDetectionTimeExpired,
    EchoFunctionFailed,
    NeighborSignaledSessionDown,
    ForwardingPlaneReset,
    PathDown,
    ConcatenatedPathDown,
    AdministrativelyDown,
    ReverseConcatenatedPathDown,
    Unassigned(u8),
}

impl Diagnostic {
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Diagnostic::None,
            1 => Diagnostic::ControlDetectionTimeExpired,
            2 => Diagnostic::EchoFunctionFailed,
            3 => Diagnostic::NeighborSignaledSessionDown,
            4 => Diagnostic::ForwardingPlaneReset,
            5 => Diagnostic::PathDown,
            6 => Diagnostic::ConcatenatedPathDown,
            7 => Diagnostic::AdministrativelyDown,
            8 => Diagnostic::ReverseConcatenatedPathDown,
            other => Diagnostic::Unassigned(other & 0x1f),
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Diagnostic::None => 0,
            Diagnostic::ControlDetectionTimeExpired => 1,
            Diagnostic::EchoFunctionFailed => 2,
            Diagnostic::NeighborSignaledSessionDown => 3,
            Diagnostic::ForwardingPlaneReset => 4,
            Diagnostic::PathDown => 5,
            Diagnostic::ConcatenatedPathDown => 6,
            Diagnostic::AdministrativelyDown => 7,
            Diagnostic::ReverseConcatenatedPathDown => 8,
            Diagnostic::Unassigned(code) => code & 0x1f,
        }
    }

    /// The RFC's name, for status and logs.
    pub fn name(self) -> &'static str {
        match self {
            Diagnostic::None => "no diagnostic",
            Diagnostic::ControlDetectionTimeExpired => "control detection time expired",
            Diagnostic::EchoFunctionFailed => "echo function failed",
            Diagnostic::NeighborSignaledSessionDown => "neighbor signaled session down",
            Diagnostic::ForwardingPlaneReset => "forwarding plane reset",
            Diagnostic::PathDown => "path down",
            Diagnostic::ConcatenatedPathDown => "concatenated path down",
            Diagnostic::AdministrativelyDown => "administratively down",
            Diagnostic::ReverseConcatenatedPathDown => "reverse concatenated path down",
            Diagnostic::Unassigned(_) => "unassigned",
        }
    }
}

/// One BFD Control packet without authentication. Intervals are in
/// microseconds, as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPacket {
    pub diagnostic: Diagnostic,
    pub state: SessionState,
    /// P: the sender asks for a packet with F set (a Poll Sequence).
    pub poll: bool,
    /// F: the answer to a packet with P set.
    pub final_: bool,
    /// C: the sender's BFD does not share fate with its control plane.
    pub control_plane_independent: bool,
    /// D: the sender wishes to run Demand mode.
    pub demand: bool,
    pub detect_mult: u8,
    pub my_discriminator: u32,
    pub your_discriminator: u32,
    pub desired_min_tx_us: u32,
    pub required_min_rx_us: u32,
    pub required_min_echo_rx_us: u32,
}

/// Why a received packet is discarded (RFC 5880 section 6.8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("{len} octets: shorter than the {MANDATORY_LEN}-octet mandatory section")]
    Truncated { len: usize },
    #[error("version {0}, only {VERSION} is known")]
    Version(u8),
    #[error("Length field {field} outside {min}..={available} (the octets received)")]
    Length { field: u8, min: usize, available: usize },
    #[error("Detect Mult is zero")]
    DetectMultZero,
    #[error("the M (Multipoint) bit is set")]
    Multipoint,
    #[error("My Discriminator is zero")]
    MyDiscriminatorZero,
    #[error("Your Discriminator is zero in state {}", .0.name())]
    YourDiscriminatorZero(SessionState),
    #[error("authentication type {auth_type} ({}) is not supported", auth_type_name(*.auth_type))]
    Authentication { auth_type: u8 },
    #[error("the Authentication Section's length {auth_len} does not fit the packet")]
    AuthenticationLength { auth_len: u8 },
}

/// RFC 5880 section 4.1's Auth Types.
pub fn auth_type_name(auth_type: u8) -> &'static str {
    match auth_type {
        1 => "Simple Password",
        2 => "Keyed MD5",
        3 => "Meticulous Keyed MD5",
        4 => "Keyed SHA1",
        5 => "Meticulous Keyed SHA1",
        _ => "reserved",
    }
}

type Res<'a, T> = nom::IResult<&'a [u8], T, ()>;

const FLAG_POLL: u8 = 0x20;
const FLAG_FINAL: u8 = 0x10;
const FLAG_CPI: u8 = 0x08;
const FLAG_AUTH: u8 = 0x04;
const FLAG_DEMAND: u8 = 0x02;
const FLAG_MULTIPOINT: u8 = 0x01;

/// The header fields as read, before any check.
struct Raw {
    vers_diag: u8,
    flags: u8,
    detect_mult: u8,
    length: u8,
    my: u32,
    your: u32,
    tx: u32,
    rx: u32,
    echo: u32,
}

fn raw(input: &[u8]) -> Res<'_, Raw> {
    use nom::number::complete::{be_u8, be_u32};
    (be_u8, be_u8, be_u8, be_u8, be_u32, be_u32, be_u32, be_u32, be_u32)
        .map(|(vers_diag, flags, detect_mult, length, my, your, tx, rx, echo)| Raw {
            vers_diag,
            flags,
            detect_mult,
            length,
            my,
            your,
            tx,
            rx,
            echo,
        })
        .parse(input)
}

impl ControlPacket {
    /// Decodes `bytes` (a UDP payload) and applies the session-independent
    /// reception checks in the RFC's order.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (_, r) = raw(bytes).map_err(|_| DecodeError::Truncated { len: bytes.len() })?;
        let version = r.vers_diag >> 5;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let authenticated = r.flags & FLAG_AUTH != 0;
        let min = if authenticated { MIN_AUTHENTICATED_LEN } else { MANDATORY_LEN };
        let length = usize::from(r.length);
        if length < min || length > bytes.len() {
            return Err(DecodeError::Length { field: r.length, min, available: bytes.len() });
        }
        if r.detect_mult == 0 {
            return Err(DecodeError::DetectMultZero);
        }
        if r.flags & FLAG_MULTIPOINT != 0 {
            return Err(DecodeError::Multipoint);
        }
        if r.my == 0 {
            return Err(DecodeError::MyDiscriminatorZero);
        }
        let state = SessionState::from_bits(r.flags >> 6);
        if r.your == 0 && !matches!(state, SessionState::Down | SessionState::AdminDown) {
            return Err(DecodeError::YourDiscriminatorZero(state));
        }
        if authenticated {
            let auth_type = bytes[MANDATORY_LEN];
            let auth_len = bytes[MANDATORY_LEN + 1];
            if usize::from(auth_len) < 2 || MANDATORY_LEN + usize::from(auth_len) > length {
                return Err(DecodeError::AuthenticationLength { auth_len });
            }
            return Err(DecodeError::Authentication { auth_type });
        }
        Ok(ControlPacket {
            diagnostic: Diagnostic::from_code(r.vers_diag & 0x1f),
            state,
            poll: r.flags & FLAG_POLL != 0,
            final_: r.flags & FLAG_FINAL != 0,
            control_plane_independent: r.flags & FLAG_CPI != 0,
            demand: r.flags & FLAG_DEMAND != 0,
            detect_mult: r.detect_mult,
            my_discriminator: r.my,
            your_discriminator: r.your,
            desired_min_tx_us: r.tx,
            required_min_rx_us: r.rx,
            required_min_echo_rx_us: r.echo,
        })
    }

    /// The packet's 24 octets (never with the A or M bit).
    pub fn encode(&self) -> [u8; MANDATORY_LEN] {
        let mut flags = (self.state as u8) << 6;
        for (set, bit) in [
            (self.poll, FLAG_POLL),
            (self.final_, FLAG_FINAL),
            (self.control_plane_independent, FLAG_CPI),
            (self.demand, FLAG_DEMAND),
        ] {
            if set {
                flags |= bit;
            }
        }
        let mut out = [0u8; MANDATORY_LEN];
        out[0] = (VERSION << 5) | self.diagnostic.code();
        out[1] = flags;
        out[2] = self.detect_mult;
        out[3] = MANDATORY_LEN as u8;
        for (i, word) in [
            self.my_discriminator,
            self.your_discriminator,
            self.desired_min_tx_us,
            self.required_min_rx_us,
            self.required_min_echo_rx_us,
        ]
        .into_iter()
        .enumerate()
        {
            out[4 + 4 * i..8 + 4 * i].copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ControlPacket {
        ControlPacket {
            diagnostic: Diagnostic::ControlDetectionTimeExpired,
            state: SessionState::Up,
            poll: true,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discriminator: 0x0102_0304,
            your_discriminator: 0x0a0b_0c0d,
            desired_min_tx_us: 300_000,
            required_min_rx_us: 300_000,
            required_min_echo_rx_us: 0,
        }
    }

    #[test]
    fn encodes_the_rfc_layout() {
        let bytes = sample().encode();
        // Vers 1, Diag 1; Sta 3 (Up), P set; Detect Mult 3; Length 24.
        assert_eq!(&bytes[..4], &[0x21, 0xe0, 3, 24]);
        assert_eq!(&bytes[4..8], &[1, 2, 3, 4]);
        assert_eq!(&bytes[8..12], &[0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(&bytes[12..16], &300_000u32.to_be_bytes());
        assert_eq!(ControlPacket::decode(&bytes), Ok(sample()));
    }

    #[test]
    fn decodes_an_frr_down_packet() {
        // FRR bfdd's first packet: Down, Your Discriminator 0, 1 s slow timers.
        let bytes = hex::decode("204003180000000100000000000f4240000f42400000c350").unwrap();
        let p = ControlPacket::decode(&bytes).unwrap();
        assert_eq!(p.state, SessionState::Down);
        assert_eq!(p.your_discriminator, 0);
        assert_eq!(p.desired_min_tx_us, 1_000_000);
        assert_eq!(p.required_min_echo_rx_us, 50_000);
    }

    #[test]
    fn refuses_what_section_6_8_6_discards() {
        let good = sample().encode();
        let with = |i: usize, v: u8| {
            let mut b = good;
            b[i] = v;
            b
        };
        assert_eq!(ControlPacket::decode(&good[..23]), Err(DecodeError::Truncated { len: 23 }));
        assert_eq!(ControlPacket::decode(&with(0, 0x41)), Err(DecodeError::Version(2)));
        assert!(matches!(ControlPacket::decode(&with(3, 23)), Err(DecodeError::Length { field: 23, .. })));
        assert!(matches!(ControlPacket::decode(&with(3, 25)), Err(DecodeError::Length { field: 25, .. })));
        assert_eq!(ControlPacket::decode(&with(2, 0)), Err(DecodeError::DetectMultZero));
        assert_eq!(ControlPacket::decode(&with(1, 0xc1)), Err(DecodeError::Multipoint));
        let mut no_my = good;
        no_my[4..8].fill(0);
        assert_eq!(ControlPacket::decode(&no_my), Err(DecodeError::MyDiscriminatorZero));
        let mut no_your = good;
        no_your[8..12].fill(0);
        assert_eq!(ControlPacket::decode(&no_your), Err(DecodeError::YourDiscriminatorZero(SessionState::Up)));
        // Down with Your Discriminator 0 is how every session starts.
        no_your[1] = 0x40;
        assert_eq!(ControlPacket::decode(&no_your).unwrap().state, SessionState::Down);
    }

    #[test]
    fn a_longer_payload_than_the_length_field_is_read_up_to_the_length() {
        let mut bytes = sample().encode().to_vec();
        bytes.extend_from_slice(&[0xff; 8]);
        assert_eq!(ControlPacket::decode(&bytes), Ok(sample()));
    }

    #[test]
    fn authentication_is_parsed_and_refused() {
        // Keyed SHA1 (type 4): 28-octet Authentication Section.
        let mut bytes = sample().encode().to_vec();
        bytes[1] |= FLAG_AUTH;
        bytes[3] = 24 + 28;
        bytes.extend_from_slice(&[4, 28, 1, 0]);
        bytes.extend_from_slice(&[0; 24]);
        let err = ControlPacket::decode(&bytes).unwrap_err();
        assert_eq!(err, DecodeError::Authentication { auth_type: 4 });
        assert_eq!(err.to_string(), "authentication type 4 (Keyed SHA1) is not supported");
        // A section longer than the packet is refused, never read past the end.
        bytes[25] = 200;
        assert_eq!(ControlPacket::decode(&bytes), Err(DecodeError::AuthenticationLength { auth_len: 200 }));
        // The A bit with only the mandatory section.
        let mut short = sample().encode();
        short[1] |= FLAG_AUTH;
        assert!(matches!(ControlPacket::decode(&short), Err(DecodeError::Length { min: 26, .. })));
    }

    #[test]
    fn every_diagnostic_code_round_trips() {
        for code in 0..32u8 {
            assert_eq!(Diagnostic::from_code(code).code(), code);
        }
    }
}
