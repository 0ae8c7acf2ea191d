//! Sets up tracing for the agent; the `log` records of aya-log (the XDP
//! program's own lines) are bridged into it by tracing-subscriber.

use std::{
    io::{IsTerminal as _, Write},
    sync::{Mutex, OnceLock},
    time::Duration,
};

use tracing_subscriber::{EnvFilter, fmt::MakeWriter};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Installs the global subscriber: RUST_LOG if set, else `info`.
pub fn init(format: LogFormat) {
    let _ = FORMAT.set(format);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter);
    std::thread::Builder::new()
        .name("log-flush".into())
        .spawn(|| {
            loop {
                std::thread::sleep(ACCESS_LOG_FLUSH);
                flush();
            }
        })
        .expect("start the log flusher");
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Access-log lines (one per HTTP request) are written in batches at
/// least this often, by a thread of their own; every other line is
/// written at once (with the batch before it, so the order holds).
const ACCESS_LOG_FLUSH: Duration = Duration::from_millis(10);
const ACCESS_TARGET: &str = "halb::access";
/// Access-log bytes held at most; beyond, lines are dropped and counted
/// (as haproxy drops log lines rather than stall traffic).
const ACCESS_LOG_CAP: usize = 8 << 20;

struct Pending {
    bytes: Vec<u8>,
    dropped: u64,
}

fn pending() -> &'static Mutex<Pending> {
    static PENDING: OnceLock<Mutex<Pending>> = OnceLock::new();
    PENDING.get_or_init(|| {
        Mutex::new(Pending {
            bytes: Vec::with_capacity(64 * 1024),
            dropped: 0,
        })
    })
}

/// Writes what is held; the flusher calls it, and the agent before exiting.
pub fn flush() {
    let (bytes, dropped) = {
        let Ok(mut p) = pending().lock() else { return };
        let bytes = std::mem::replace(&mut p.bytes, Vec::with_capacity(64 * 1024));
        (bytes, std::mem::take(&mut p.dropped))
    };
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(&bytes);
    if dropped > 0 {
        let _ = writeln!(
            err,
            "halb: {dropped} access-log lines dropped: stderr is not read fast enough"
        );
    }
    let _ = err.flush();
}

/// stderr through one queue: access-log lines wait for the flusher (a
/// worker never blocks on a slow log reader); others are written at once.
struct LogWriter;

struct Line {
    access: bool,
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut p = pending().lock().map_err(|_| std::io::ErrorKind::Other)?;
        if self.access {
            if p.bytes.len() + bytes.len() > ACCESS_LOG_CAP {
                p.dropped += 1;
            } else {
                p.bytes.extend_from_slice(bytes);
            }
            return Ok(bytes.len());
        }
        // Rare lines: write through, after what is held, under the lock.
        let mut err = std::io::stderr().lock();
        err.write_all(&p.bytes)?;
        p.bytes.clear();
        err.write_all(bytes)?;
        err.flush()?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { access: false }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line {
        Line {
            access: meta.target() == ACCESS_TARGET,
        }
    }
}

/// Writes one access-log line, as tracing would print an event with this
/// message at INFO under `halb::access`, without tracing's per-event
/// formatting (a line per HTTP request; the proxy's hottest write).
pub fn access(line: &str) {
    if !tracing::enabled!(target: "halb::access", tracing::Level::INFO) {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (year, month, day) = civil_date(now.as_secs() / 86_400);
    let secs = now.as_secs() % 86_400;
    let stamp = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        now.subsec_micros()
    );
    let text = match FORMAT.get() {
        Some(LogFormat::Json) => format!(
            "{{\"timestamp\":\"{stamp}\",\"level\":\"INFO\",\"fields\":{{\"message\":{}}},\"target\":\"{ACCESS_TARGET}\"}}\n",
            serde_json::Value::from(line)
        ),
        _ => format!("{stamp}  INFO {ACCESS_TARGET}: {line}\n"),
    };
    let Ok(mut p) = pending().lock() else { return };
    if p.bytes.len() + text.len() > ACCESS_LOG_CAP {
        p.dropped += 1;
    } else {
        p.bytes.extend_from_slice(text.as_bytes());
    }
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
pub fn civil_date(days: u64) -> (i64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}
