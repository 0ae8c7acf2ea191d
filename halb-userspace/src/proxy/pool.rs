//! A pool of HTTP backends and how the next request picks one: weighted
//! round robin (smooth, as nginx does it: no bursts on the heavy backend)
//! or least connections relative to weight (haproxy's leastconn). Only
//! backends that are up (health) and enabled (not drained) are picked.

use std::{
    net::SocketAddr,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
};

use crate::config::validate::{Balance, PoolConfig};

use super::upstream::Idle;

pub struct Backend {
    pub addr: SocketAddr,
    pub weight: u32,
    up: AtomicBool,
    drained: AtomicBool,
    /// Requests being forwarded to it now.
    pub active: AtomicUsize,
    /// Requests it answered, and connections that failed.
    pub served: AtomicU64,
    pub failed: AtomicU64,
    /// Kept-alive connections, ready for the next request.
    pub idle: Idle,
}

pub struct Pool {
    pub name: String,
    balance: Balance,
    pub backends: Vec<Backend>,
    /// Smooth weighted round robin: each backend's running weight.
    current: Mutex<Vec<i64>>,
}

impl Pool {
    pub fn new(config: &PoolConfig) -> Self {
        Self {
            name: config.name.clone(),
            balance: config.balance,
            backends: config
                .backends
                .iter()
                .map(|b| Backend {
                    addr: SocketAddr::new(b.address, b.port),
                    weight: b.weight,
                    up: AtomicBool::new(true),
                    drained: AtomicBool::new(false),
                    active: AtomicUsize::new(0),
                    served: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                    idle: Idle::default(),
                })
                .collect(),
            current: Mutex::new(vec![0; config.backends.len()]),
        }
    }

    pub fn balance(&self) -> Balance {
        self.balance
    }

    /// Records a backend's health; false if it is not in this pool.
    pub fn set_up(&self, addr: SocketAddr, up: bool) -> bool {
        self.find(addr)
            .map(|b| {
                b.up.store(up, Ordering::Relaxed);
                if !up {
                    b.idle.clear();
                }
            })
            .is_some()
    }

    /// Drains (or enables) a backend; false if it is not in this pool.
    pub fn set_drained(&self, addr: SocketAddr, drained: bool) -> bool {
        self.find(addr)
            .map(|b| b.drained.store(drained, Ordering::Relaxed))
            .is_some()
    }

    fn find(&self, addr: SocketAddr) -> Option<&Backend> {
        self.backends.iter().find(|b| b.addr == addr)
    }

    /// Whether the backend may take new requests.
    pub fn usable(b: &Backend) -> bool {
        b.weight > 0 && b.up.load(Ordering::Relaxed) && !b.drained.load(Ordering::Relaxed)
    }

    pub fn is_up(b: &Backend) -> bool {
        b.up.load(Ordering::Relaxed)
    }

    pub fn is_drained(b: &Backend) -> bool {
        b.drained.load(Ordering::Relaxed)
    }

    /// The backend for the next request, avoiding those in `tried` while
    /// another is usable; none when no backend is usable.
    pub fn pick(&self, tried: &[usize]) -> Option<usize> {
        let usable: Vec<usize> = (0..self.backends.len())
            .filter(|i| Self::usable(&self.backends[*i]))
            .collect();
        let fresh: Vec<usize> = usable
            .iter()
            .copied()
            .filter(|i| !tried.contains(i))
            .collect();
        let candidates = if fresh.is_empty() { usable } else { fresh };
        if candidates.is_empty() {
            return None;
        }
        match self.balance {
            Balance::LeastConn => candidates.into_iter().min_by(|a, b| {
                // active / weight, compared without division.
                let (ba, bb) = (&self.backends[*a], &self.backends[*b]);
                let load_a = ba.active.load(Ordering::Relaxed) as u64 * bb.weight as u64;
                let load_b = bb.active.load(Ordering::Relaxed) as u64 * ba.weight as u64;
                load_a.cmp(&load_b)
            }),
            Balance::RoundRobin => {
                let mut current = self.current.lock().expect("round robin lock");
                let total: i64 = candidates
                    .iter()
                    .map(|i| self.backends[*i].weight as i64)
                    .sum();
                for i in &candidates {
                    current[*i] += self.backends[*i].weight as i64;
                }
                let best = *candidates
                    .iter()
                    .max_by_key(|i| (current[**i], std::cmp::Reverse(**i)))
                    .expect("candidates is not empty");
                current[best] -= total;
                Some(best)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::BackendConfig;

    fn pool(balance: Balance, weights: &[u32]) -> Pool {
        Pool::new(&PoolConfig {
            name: "p".into(),
            balance,
            backends: weights
                .iter()
                .enumerate()
                .map(|(i, w)| BackendConfig {
                    address: format!("198.18.0.{}", 11 + i).parse().unwrap(),
                    port: 80,
                    weight: *w,
                    mac: None,
                    check: None,
                })
                .collect(),
        })
    }

    #[test]
    fn round_robin_follows_weights_smoothly() {
        let p = pool(Balance::RoundRobin, &[1, 2, 3]);
        let picks: Vec<usize> = (0..6).map(|_| p.pick(&[]).unwrap()).collect();
        let count = |i| picks.iter().filter(|p| **p == i).count();
        assert_eq!((count(0), count(1), count(2)), (1, 2, 3));
        // Smooth: the heaviest never goes three times in a row.
        assert!(
            picks
                .windows(3)
                .all(|w| !(w[0] == 2 && w[1] == 2 && w[2] == 2))
        );
    }

    #[test]
    fn least_connections_relative_to_weight() {
        let p = pool(Balance::LeastConn, &[1, 2]);
        p.backends[0].active.store(1, Ordering::Relaxed);
        p.backends[1].active.store(1, Ordering::Relaxed);
        assert_eq!(p.pick(&[]), Some(1));
        p.backends[1].active.store(3, Ordering::Relaxed);
        assert_eq!(p.pick(&[]), Some(0));
    }

    #[test]
    fn down_drained_and_tried_backends_are_avoided() {
        let p = pool(Balance::RoundRobin, &[1, 1, 1]);
        p.set_up(p.backends[0].addr, false);
        p.set_drained(p.backends[1].addr, true);
        assert_eq!(p.pick(&[]), Some(2));
        // A retry prefers another backend, but takes the same one if it
        // is the only one left.
        assert_eq!(p.pick(&[2]), Some(2));
        p.set_up(p.backends[2].addr, false);
        assert_eq!(p.pick(&[]), None);
    }
}
