//! One access-log line per request, with haproxy's `option httplog`
//! fields, written when the response body is done (so the byte count and
//! total time are true):
//!
//! ```text
//! client:port [accept date] frontend backend/server TR/Tw/Tc/Tr/Ta status bytes - - term fc/bc/sc/rc sq/bq "request line"
//! 198.18.0.10:41234 [30/Nov/2026:05:22:16.123] web static/198.18.0.11:80 0/0/1/2/3 200 6 - - ---- 1/1/1/0 0/0 "GET /static/a.css HTTP/1.1"
//! ```
//!
//! Times are milliseconds, -1 for a step never reached; the termination
//! state is haproxy's two letters (who ended it: C client, S server, s
//! server timeout, c client timeout; in which phase: R request, Q queue,
//! C connect, H headers) padded with `--`.

use std::{
    net::SocketAddr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

pub struct Record {
    pub client: SocketAddr,
    pub at: SystemTime,
    pub started: Instant,
    pub frontend: String,
    /// "pool/server", or "pool/<NOSRV>" when no server was reached.
    pub backend: String,
    /// Time to receive the request head (first request of a connection
    /// only: later ones are not timed from their first byte).
    pub t_request: Option<Duration>,
    pub t_queue: Option<Duration>,
    pub t_connect: Option<Duration>,
    pub t_response: Option<Duration>,
    pub status: u16,
    pub bytes: u64,
    pub termination: &'static str,
    /// Connections open on the frontend, requests on the backend pool and
    /// on the server, and retries for this request.
    pub frontend_conns: usize,
    pub backend_active: usize,
    pub server_active: usize,
    pub retries: u32,
    pub queue_waiting: usize,
    pub request_line: String,
}

/// A request line as a log shows it: quotes, backslashes and control
/// characters escaped (the usual line needs none, and is copied whole).
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plain = |c: char| c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ';
        if self.0.chars().all(plain) {
            f.write_str(self.0)
        } else {
            write!(f, "{}", self.0.escape_debug())
        }
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-1".to_owned(), |d| d.as_millis().to_string())
}

impl Record {
    /// A request from `client` to `frontend` (with `frontend_conns` open)
    /// bound for `pool`, no server reached yet, started now.
    pub fn new(
        client: SocketAddr,
        frontend: &str,
        frontend_conns: usize,
        pool: &str,
        request_line: String,
    ) -> Self {
        Self {
            client,
            at: SystemTime::now(),
            started: Instant::now(),
            frontend: frontend.to_owned(),
            backend: format!("{pool}/<NOSRV>"),
            t_request: None,
            t_queue: None,
            t_connect: None,
            t_response: None,
            status: 0,
            bytes: 0,
            termination: "----",
            frontend_conns,
            backend_active: 0,
            server_active: 0,
            retries: 0,
            queue_waiting: 0,
            request_line,
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{} [{}] {} {} {}/{}/{}/{}/{} {} {} - - {} {}/{}/{}/{} {}/0 \"{}\"",
            self.client,
            date(self.at),
            self.frontend,
            self.backend,
            ms(self.t_request),
            ms(self.t_queue),
            ms(self.t_connect),
            ms(self.t_response),
            self.started.elapsed().as_millis(),
            self.status,
            self.bytes,
            self.termination,
            self.frontend_conns,
            self.backend_active,
            self.server_active,
            self.retries,
            self.queue_waiting,
            Escaped(&self.request_line),
        )
    }

    /// Writes the line to the log (target `halb::access`).
    pub fn emit(&self) {
        crate::logging::access(&self.line());
    }
}

/// haproxy's accept date: `30/Nov/2026:05:22:16.123`, UTC.
fn date(at: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let rest = secs % 86_400;
    let (year, month, day) = crate::logging::civil_date(secs / 86_400);
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02}.{:03}",
        MONTHS[(month - 1) as usize],
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_haproxys() {
        // 2009-02-06 12:14:14.655 UTC, haproxy's documentation example.
        let at = UNIX_EPOCH + Duration::from_millis(1_233_922_454_655);
        assert_eq!(date(at), "06/Feb/2009:12:14:14.655");
        assert_eq!(date(UNIX_EPOCH), "01/Jan/1970:00:00:00.000");
    }
}
