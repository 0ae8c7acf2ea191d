//! The VRRP state machine of RFC 9568 §6.4 (which VRRPv2, RFC 3768 §6.4,
//! follows but for the advertisement interval, never learned in v2): a
//! pure function from (state, event) to (state, actions), unit-tested
//! without sockets or clocks. The instance carries the actions out.

use std::{net::IpAddr, time::Duration};

use super::packet::Version;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Initialize,
    Backup,
    Master,
}

/// What the machine reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Startup,
    Shutdown,
    MasterDownTimerFired,
    AdverTimerFired,
    /// An advertisement that passed validation.
    Advert {
        priority: u8,
        /// Its Max Adver Interval (v3; ignored in v2).
        interval: Duration,
        /// Its IP source address.
        from: IpAddr,
    },
}

/// What the instance must do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    SendAdvert {
        priority: u8,
    },
    /// Add the virtual addresses and send gratuitous ARP / unsolicited NA.
    TakeAddresses,
    /// Remove the virtual addresses.
    ReleaseAddresses,
    StartAdverTimer(Duration),
    StartMasterDownTimer(Duration),
    StopTimers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub version: Version,
    pub priority: u8,
    pub preempt: bool,
    pub advert_interval: Duration,
    /// This router's address on the link: breaks priority ties.
    pub primary_address: IpAddr,
}

#[derive(Debug, Clone)]
pub struct Fsm {
    params: Params,
    state: State,
    master_adver_interval: Duration,
}

/// RFC 9568 §6.1: the address owner's priority.
pub const OWNER_PRIORITY: u8 = 255;
/// RFC 9568 §6.1: a master leaving.
pub const LEAVING_PRIORITY: u8 = 0;

impl Fsm {
    pub fn new(params: Params) -> Self {
        Self {
            params,
            state: State::Initialize,
            master_adver_interval: params.advert_interval,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The priority adverts carry now (tracking changes it).
    pub fn priority(&self) -> u8 {
        self.params.priority
    }

    /// A new priority, used from the next advert and timer on.
    pub fn set_priority(&mut self, priority: u8) {
        self.params.priority = priority;
    }

    /// Turns preemption on or off (off while a preempt delay runs).
    pub fn set_preempt(&mut self, preempt: bool) {
        self.params.preempt = preempt;
    }

    /// The Master_Adver_Interval in use (learned from the master in v3).
    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }

    /// RFC 9568 §6.1 Skew_Time: ((256 - Priority) * Master_Adver_Interval) / 256;
    /// RFC 3768 §6.1: (256 - Priority) / 256 seconds.
    pub fn skew_time(&self) -> Duration {
        let factor = (256 - self.params.priority as u32) as f64 / 256.0;
        match self.params.version {
            Version::V3 => self.master_adver_interval.mul_f64(factor),
            Version::V2 => Duration::from_secs_f64(factor),
        }
    }

    /// RFC 9568 §6.1 Master_Down_Interval: 3 * Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver_interval * 3 + self.skew_time()
    }

    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let p = self.params;
        match (self.state, event) {
            // RFC 9568 §6.4.1: the address owner goes straight to Master.
            (State::Initialize, Event::Startup) if p.priority == OWNER_PRIORITY => {
                self.become_master()
            }
            // RFC 9568 §6.4.1: everyone else starts as Backup.
            (State::Initialize, Event::Startup) => {
                self.master_adver_interval = p.advert_interval;
                self.state = State::Backup;
                vec![Action::StartMasterDownTimer(self.master_down_interval())]
            }
            // RFC 9568 §6.4.2: Backup shutdown.
            (State::Backup, Event::Shutdown) => {
                self.state = State::Initialize;
                vec![Action::StopTimers]
            }
            // RFC 9568 §6.4.2: no master heard for Master_Down_Interval.
            (State::Backup, Event::MasterDownTimerFired) => self.become_master(),
            // RFC 9568 §6.4.2: a master leaving: take over after Skew_Time.
            (
                State::Backup,
                Event::Advert {
                    priority: LEAVING_PRIORITY,
                    ..
                },
            ) => {
                vec![Action::StartMasterDownTimer(self.skew_time())]
            }
            (
                State::Backup,
                Event::Advert {
                    priority, interval, ..
                },
            ) => {
                if !p.preempt || priority >= p.priority {
                    // RFC 9568 §6.4.2: accept the master and learn its
                    // interval (v3 only), then wait for it again.
                    if p.version == Version::V3 {
                        self.master_adver_interval = interval;
                    }
                    vec![Action::StartMasterDownTimer(self.master_down_interval())]
                } else {
                    // RFC 9568 §6.4.2: preempt a lower priority: discard,
                    // and let the Master_Down_Timer expire.
                    vec![]
                }
            }
            // RFC 9568 §6.4.3: Master shutdown: priority 0 so backups take over at once.
            (State::Master, Event::Shutdown) => {
                self.state = State::Initialize;
                vec![
                    Action::StopTimers,
                    Action::SendAdvert {
                        priority: LEAVING_PRIORITY,
                    },
                    Action::ReleaseAddresses,
                ]
            }
            // RFC 9568 §6.4.3: advertise every Advertisement_Interval.
            (State::Master, Event::AdverTimerFired) => vec![
                Action::SendAdvert {
                    priority: p.priority,
                },
                Action::StartAdverTimer(p.advert_interval),
            ],
            // RFC 9568 §6.4.3: a backup's master left; answer at once.
            (
                State::Master,
                Event::Advert {
                    priority: LEAVING_PRIORITY,
                    ..
                },
            ) => vec![
                Action::SendAdvert {
                    priority: p.priority,
                },
                Action::StartAdverTimer(p.advert_interval),
            ],
            (
                State::Master,
                Event::Advert {
                    priority,
                    interval,
                    from,
                },
            ) => {
                let higher =
                    priority > p.priority || (priority == p.priority && from > p.primary_address);
                if higher {
                    // RFC 9568 §6.4.3: a better master: step down.
                    if p.version == Version::V3 {
                        self.master_adver_interval = interval;
                    }
                    self.state = State::Backup;
                    vec![
                        Action::StopTimers,
                        Action::ReleaseAddresses,
                        Action::StartMasterDownTimer(self.master_down_interval()),
                    ]
                } else {
                    // RFC 9568 §6.4.3: a lower priority: discard.
                    vec![]
                }
            }
            // Anything else (events for another state, timers racing a
            // transition) changes nothing.
            _ => vec![],
        }
    }

    fn become_master(&mut self) -> Vec<Action> {
        self.state = State::Master;
        vec![
            Action::StopTimers,
            Action::SendAdvert {
                priority: self.params.priority,
            },
            Action::TakeAddresses,
            Action::StartAdverTimer(self.params.advert_interval),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(priority: u8, preempt: bool) -> Params {
        Params {
            version: Version::V3,
            priority,
            preempt,
            advert_interval: Duration::from_secs(1),
            primary_address: "198.18.0.2".parse().unwrap(),
        }
    }

    fn advert(priority: u8, from: &str) -> Event {
        Event::Advert {
            priority,
            interval: Duration::from_secs(1),
            from: from.parse().unwrap(),
        }
    }

    #[test]
    fn timers_follow_the_rfc_formulas() {
        let fsm = Fsm::new(params(100, true));
        // (256 - 100) / 256 * 1 s = 0.609375 s; 3 s + that.
        assert_eq!(fsm.skew_time(), Duration::from_micros(609_375));
        assert_eq!(fsm.master_down_interval(), Duration::from_micros(3_609_375));
    }

    #[test]
    fn a_backup_takes_over_when_the_master_is_silent() {
        let mut fsm = Fsm::new(params(100, true));
        assert_eq!(
            fsm.handle(Event::Startup),
            vec![Action::StartMasterDownTimer(Duration::from_micros(
                3_609_375
            ))]
        );
        assert_eq!(fsm.state(), State::Backup);
        let actions = fsm.handle(Event::MasterDownTimerFired);
        assert_eq!(fsm.state(), State::Master);
        assert!(actions.contains(&Action::TakeAddresses));
        assert!(actions.contains(&Action::SendAdvert { priority: 100 }));
    }

    #[test]
    fn the_owner_starts_as_master() {
        let mut fsm = Fsm::new(params(OWNER_PRIORITY, true));
        fsm.handle(Event::Startup);
        assert_eq!(fsm.state(), State::Master);
    }

    #[test]
    fn a_master_steps_down_for_higher_priority_or_a_tie_with_a_higher_address() {
        for (priority, from) in [(150, "198.18.0.1"), (100, "198.18.0.3")] {
            let mut fsm = Fsm::new(params(100, true));
            fsm.handle(Event::Startup);
            fsm.handle(Event::MasterDownTimerFired);
            let actions = fsm.handle(advert(priority, from));
            assert_eq!(fsm.state(), State::Backup, "{priority} from {from}");
            assert!(actions.contains(&Action::ReleaseAddresses));
        }
        let mut fsm = Fsm::new(params(100, true));
        fsm.handle(Event::Startup);
        fsm.handle(Event::MasterDownTimerFired);
        assert_eq!(fsm.handle(advert(100, "198.18.0.1")), vec![]);
        assert_eq!(fsm.state(), State::Master);
    }

    #[test]
    fn preemption_decides_whether_a_backup_waits_out_a_lower_master() {
        // With preemption, a lower master's adverts are discarded: the
        // timer runs out and the backup takes over.
        let mut fsm = Fsm::new(params(150, true));
        fsm.handle(Event::Startup);
        assert_eq!(fsm.handle(advert(100, "198.18.0.3")), vec![]);
        // Without, the lower master is accepted and the timer restarted.
        let mut fsm = Fsm::new(params(150, false));
        fsm.handle(Event::Startup);
        assert!(matches!(
            fsm.handle(advert(100, "198.18.0.3"))[..],
            [Action::StartMasterDownTimer(_)]
        ));
    }

    #[test]
    fn a_leaving_master_hands_over_after_skew_time() {
        let mut master = Fsm::new(params(150, true));
        master.handle(Event::Startup);
        master.handle(Event::MasterDownTimerFired);
        let actions = master.handle(Event::Shutdown);
        assert_eq!(actions[1], Action::SendAdvert { priority: 0 });
        assert_eq!(master.state(), State::Initialize);

        let mut backup = Fsm::new(params(100, true));
        backup.handle(Event::Startup);
        assert_eq!(
            backup.handle(advert(0, "198.18.0.3")),
            vec![Action::StartMasterDownTimer(backup.skew_time())]
        );
    }

    #[test]
    fn v3_backups_learn_the_masters_interval_v2_ones_do_not() {
        let mut fsm = Fsm::new(params(100, false));
        fsm.handle(Event::Startup);
        fsm.handle(Event::Advert {
            priority: 150,
            interval: Duration::from_millis(200),
            from: "198.18.0.3".parse().unwrap(),
        });
        assert_eq!(
            fsm.master_down_interval(),
            Duration::from_millis(600) + fsm.skew_time()
        );
        let mut v2 = Fsm::new(Params {
            version: Version::V2,
            ..params(100, false)
        });
        v2.handle(Event::Startup);
        let before = v2.master_down_interval();
        v2.handle(Event::Advert {
            priority: 150,
            interval: Duration::from_millis(200),
            from: "198.18.0.3".parse().unwrap(),
        });
        assert_eq!(v2.master_down_interval(), before);
    }
}
