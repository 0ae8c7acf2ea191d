//! The flow hash that picks a Maglev slot. Shared so userspace (tests,
//! tools) can predict which backend a flow gets.

use crate::addr::AddrBe;

/// Murmur3's 32-bit finaliser step, applied word by word.
#[inline(always)]
fn mix(h: u32, word: u32) -> u32 {
    let mut k = word.wrapping_mul(0xcc9e_2d51);
    k = k.rotate_left(15).wrapping_mul(0x1b87_3593);
    let h = (h ^ k).rotate_left(13);
    h.wrapping_mul(5).wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn finish(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Hash of a 5-tuple (values exactly as in the packet).
#[inline(always)]
pub fn five_tuple(src: &AddrBe, dst: &AddrBe, sport_be: u16, dport_be: u16, proto: u8) -> u32 {
    let mut h = 0x2f1a_9c3bu32 ^ proto as u32;
    h = mix(h, src[0]);
    h = mix(h, src[1]);
    h = mix(h, src[2]);
    h = mix(h, src[3]);
    h = mix(h, dst[0]);
    h = mix(h, dst[1]);
    h = mix(h, dst[2]);
    h = mix(h, dst[3]);
    h = mix(h, ((sport_be as u32) << 16) | dport_be as u32);
    finish(h)
}

/// Hash of a source address alone (source-IP affinity).
#[inline(always)]
pub fn source(src: &AddrBe) -> u32 {
    let mut h = 0x5bd1_e995u32;
    h = mix(h, src[0]);
    h = mix(h, src[1]);
    h = mix(h, src[2]);
    h = mix(h, src[3]);
    finish(h)
}
