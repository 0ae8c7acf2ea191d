//! Rise and fall, as haproxy and keepalived count them: an up backend goes
//! down after `fall` failed checks in a row, a down one comes up after
//! `rise` good checks in a row. Pure: no clock, no sockets.

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Up,
    Down,
}

impl Health {
    /// As `halb status` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

#[derive(Debug, Clone)]
pub struct HealthState {
    health: Health,
    /// Consecutive results that disagree with `health`.
    streak: u32,
}

impl Default for HealthState {
    /// Backends start up, as haproxy's servers do, so a fresh agent serves
    /// at once; a dead backend is out after `fall` checks.
    fn default() -> Self {
        Self {
            health: Health::Up,
            streak: 0,
        }
    }
}

impl HealthState {
    /// Starts from a known health (a check restarted by a reload).
    pub fn starting(health: Health) -> Self {
        Self { health, streak: 0 }
    }

    pub fn health(&self) -> Health {
        self.health
    }

    /// Records one check result; returns the new health when it changed.
    pub fn observe(&mut self, ok: bool, rise: u32, fall: u32) -> Option<Health> {
        let agrees = matches!(
            (self.health, ok),
            (Health::Up, true) | (Health::Down, false)
        );
        if agrees {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = match self.health {
            Health::Up => fall,
            Health::Down => rise,
        };
        if self.streak < needed {
            return None;
        }
        self.streak = 0;
        self.health = match self.health {
            Health::Up => Health::Down,
            Health::Down => Health::Up,
        };
        Some(self.health)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_after_fall_failures_in_a_row() {
        let mut s = HealthState::default();
        assert_eq!(s.observe(false, 2, 3), None);
        assert_eq!(s.observe(false, 2, 3), None);
        assert_eq!(s.observe(false, 2, 3), Some(Health::Down));
        assert_eq!(s.health(), Health::Down);
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let mut s = HealthState::default();
        for _ in 0..10 {
            assert_eq!(s.observe(false, 2, 3), None);
            assert_eq!(s.observe(false, 2, 3), None);
            assert_eq!(s.observe(true, 2, 3), None);
        }
        assert_eq!(s.health(), Health::Up);
    }

    #[test]
    fn rises_after_rise_successes_in_a_row() {
        let mut s = HealthState::default();
        s.observe(false, 2, 1);
        assert_eq!(s.health(), Health::Down);
        assert_eq!(s.observe(true, 2, 1), None);
        assert_eq!(s.observe(false, 2, 1), None);
        assert_eq!(s.observe(true, 2, 1), None);
        assert_eq!(s.observe(true, 2, 1), Some(Health::Up));
    }
}
