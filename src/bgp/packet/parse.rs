//! nom primitives shared by the decoders. The error type is `()`: every layer
//! maps "ran out of bytes" to its own typed error, so nom's error detail would
//! be thrown away anyway, and `()` keeps the hot path cheap.

use nom::Parser;

pub(crate) type Res<'a, T> = nom::IResult<&'a [u8], T, ()>;

pub(crate) fn u8(input: &[u8]) -> Res<'_, u8> {
    nom::number::complete::be_u8(input)
}

pub(crate) fn u16(input: &[u8]) -> Res<'_, u16> {
    nom::number::complete::be_u16(input)
}

pub(crate) fn u32(input: &[u8]) -> Res<'_, u32> {
    nom::number::complete::be_u32(input)
}

pub(crate) fn take(input: &[u8], count: usize) -> Res<'_, &[u8]> {
    nom::bytes::complete::take(count).parse(input)
}

pub(crate) fn ipv4(input: &[u8]) -> Res<'_, std::net::Ipv4Addr> {
    nom::combinator::map(nom::number::complete::be_u32, std::net::Ipv4Addr::from).parse(input)
}

/// A one-octet length followed by that many octets.
pub(crate) fn u8_length_data(input: &[u8]) -> Res<'_, &[u8]> {
    nom::multi::length_data(nom::number::complete::be_u8).parse(input)
}

/// Turns a nom result into an Option, for `.ok_or(TypedError)?` at layer boundaries.
pub(crate) fn ok<T>(result: Res<'_, T>) -> Option<(&[u8], T)> {
    result.ok()
}
