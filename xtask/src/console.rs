//! Printing that never fails. `println!` panics when its pipe's reader is
//! gone (`cargo xtask run | tee lab.log`, then Ctrl-C stops tee too): in the
//! lab that panic unwound into the harness's own printing drops, the second
//! panic aborted, and the teardown never ran. Here a failed write, or a
//! stdout or stderr found broken, sends both to /dev/null for good: nothing
//! printed can reach anyone any more, and nothing printed later (the
//! harness's `eprintln!`s included) can fail.

use std::{
    fmt,
    io::Write as _,
    os::fd::AsRawFd as _,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
};

/// A line on stderr that cannot fail: `say!("lab: {what}")`.
macro_rules! say {
    ($($arg:tt)*) => { $crate::console::line($crate::console::Stream::Err, format_args!($($arg)*)) };
}

/// A line on stdout that cannot fail.
macro_rules! show {
    ($($arg:tt)*) => { $crate::console::line($crate::console::Stream::Out, format_args!($($arg)*)) };
}

pub(crate) use {say, show};

#[derive(Clone, Copy)]
pub enum Stream {
    Out,
    Err,
}

static SILENCED: AtomicBool = AtomicBool::new(false);

/// Writes `args` and a newline; on failure, silences both streams.
pub fn line(stream: Stream, args: fmt::Arguments<'_>) {
    let written = match stream {
        Stream::Out => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{args}").and_then(|()| out.flush())
        }
        Stream::Err => writeln!(std::io::stderr().lock(), "{args}"),
    };
    if written.is_err() {
        silence();
    }
}

/// Silences stdout and stderr if either can no longer be written: a pipe
/// whose reader is gone (POLLERR), a terminal that hung up (POLLHUP).
/// Cheap; call it where a print could come next.
pub fn check() {
    if SILENCED.load(Ordering::Relaxed) {
        return;
    }
    let mut fds = [1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: fds is a valid array of pollfd, its length passed with it;
    // a zero timeout only reports the current state.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
    if ready > 0
        && fds
            .iter()
            .any(|p| p.revents & (libc::POLLERR | libc::POLLHUP) != 0)
    {
        silence();
    }
}

/// Points stdout and stderr at /dev/null, once.
fn silence() {
    if SILENCED.swap(true, Ordering::SeqCst) {
        return;
    }
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
        return;
    };
    for fd in [1, 2] {
        // SAFETY: dup2 onto the standard descriptors, from a descriptor we
        // own; Rust's stdout and stderr keep using fds 1 and 2.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
}

/// What the main thread last panicked with, for [`take_panic`].
static MAIN_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Makes a panic one line (its message, where it happened), never a
/// backtrace, whatever RUST_BACKTRACE says, and never a failed print: for
/// the lab, whose harness panics with context by design (a command that
/// cannot start, a step that fails). The main thread's is kept for
/// [`take_panic`] (the lab turns it into its error); another thread's is
/// printed.
pub fn one_line_panics() {
    std::panic::set_hook(Box::new(|info| {
        check();
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panicked".to_owned());
        let location = info
            .location()
            .map(|l| format!(" (at {}:{})", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        match thread.name() {
            Some("main") => {
                *MAIN_PANIC.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(format!("{message}{location}"));
            }
            name => say!("xtask: thread {}: {message}{location}", name.unwrap_or("?")),
        }
    }));
}

/// The message and place of the main thread's last panic.
pub fn take_panic() -> String {
    MAIN_PANIC
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .unwrap_or_else(|| "panicked".to_owned())
}
