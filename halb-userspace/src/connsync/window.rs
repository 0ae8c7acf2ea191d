//! Replay protection: a nonce is accepted once, and only if it is not far
//! older than the newest one seen (IPsec's sliding window, RFC 4303 §3.4.3).

/// Nonces this far behind the newest may still arrive (reordered).
const WIDTH: u64 = 64;

#[derive(Debug, Default, Clone)]
pub struct ReplayWindow {
    /// The newest nonce accepted (0: none yet).
    newest: u64,
    /// Bit i: nonce `newest - i` was accepted.
    seen: u64,
}

impl ReplayWindow {
    /// Accepts `nonce` if it is new; false for a replay (or one too old to tell).
    pub fn accept(&mut self, nonce: u64) -> bool {
        if nonce == 0 {
            return false;
        }
        if nonce > self.newest {
            let shift = nonce - self.newest;
            self.seen = if shift >= WIDTH {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.newest = nonce;
            return true;
        }
        let behind = self.newest - nonce;
        if behind >= WIDTH || self.seen & (1 << behind) != 0 {
            return false;
        }
        self.seen |= 1 << behind;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::ReplayWindow;

    #[test]
    fn each_nonce_is_accepted_once_even_out_of_order() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(5));
        assert!(w.accept(3));
        assert!(!w.accept(3));
        assert!(!w.accept(5));
        assert!(w.accept(4));
        assert!(w.accept(200));
        // Older than the window: cannot tell, so refused.
        assert!(!w.accept(100));
        assert!(w.accept(199));
        assert!(!w.accept(0));
    }
}
