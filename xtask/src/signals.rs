//! Ctrl-C reaches every process in the terminal's foreground group: xtask,
//! and the privileged child it waits for (the lab, or halb). The child tears
//! down on that signal; xtask must outlive it, or the terminal (or tmux pane)
//! would go away mid-teardown and SIGHUP the child.

use std::sync::atomic::{AtomicBool, Ordering};

/// The signals that mean "stop" from a terminal or a supervisor.
pub const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn record_stop(_signal: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Makes the stop signals set a flag instead of killing this process.
/// Handlers reset to the default on exec, so children keep their own.
pub fn catch_stop() {
    for signal in STOP_SIGNALS {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, record_stop as *const () as libc::sighandler_t) };
    }
}

/// Whether a stop signal arrived since [`catch_stop`].
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Asks for a stop from inside the process (e.g. a child died).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}
