//! Incremental Internet checksum updates (RFC 1624, eqn. 3:
//! HC' = ~(~HC + ~m + m')).
//!
//! All values are raw memory words, exactly as in the packet: one's
//! complement sums are byte-order independent as long as every operand is
//! taken the same way.

#[inline(always)]
fn add(sum: u32, value: u32) -> u32 {
    let (s, carry) = sum.overflowing_add(value);
    s + carry as u32
}

#[inline(always)]
fn fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    ((s & 0xffff) + (s >> 16)) as u16
}

/// A running update of one checksum field.
pub struct Update(u32);

impl Update {
    #[inline(always)]
    pub fn new(check: u16) -> Self {
        Self(!check as u32)
    }

    /// Replaces a 32-bit word.
    #[inline(always)]
    pub fn word(self, old: u32, new: u32) -> Self {
        Self(add(add(self.0, !old), new))
    }

    /// Replaces a 16-bit word.
    #[inline(always)]
    pub fn half(self, old: u16, new: u16) -> Self {
        Self(add(add(self.0, (!old) as u32), new as u32))
    }

    /// Replaces four 32-bit words (an IPv6 address, or an IPv4 one in word 0).
    #[inline(always)]
    pub fn addr(self, old: &[u32; 4], new: &[u32; 4]) -> Self {
        self.word(old[0], new[0])
            .word(old[1], new[1])
            .word(old[2], new[2])
            .word(old[3], new[3])
    }

    #[inline(always)]
    pub fn finish(self) -> u16 {
        !fold(self.0)
    }
}
