//! BIRD's control socket, spoken directly (what `birdc` does): one command
//! per connection, each reply line `CODE-text` (more follow), ` text` (the
//! same code goes on) or `CODE text` (the last). Codes 8xxx are run-time
//! errors, 9xxx parse errors. Every exchange has a deadline, so a BIRD that
//! hangs cannot hold up the announcer.

use std::{path::Path, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::UnixStream,
};

/// How long one command may take, connecting included.
pub const DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum BirdError {
    #[error("BIRD is not reachable at {socket}: {source} (is bird running?)")]
    Unreachable {
        socket: String,
        #[source]
        source: std::io::Error,
    },
    #[error("BIRD did not answer within {DEADLINE:?}")]
    Timeout,
    #[error("BIRD closed the control connection mid-reply")]
    Closed,
    #[error("BIRD refused {command:?}: {message}")]
    Refused { command: String, message: String },
}

/// One line of a reply: its code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub code: u16,
    pub text: String,
}

/// A whole reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub lines: Vec<Line>,
}

impl Reply {
    /// The lines of a code (table rows, say).
    pub fn with_code(&self, code: u16) -> impl Iterator<Item = &str> {
        self.lines
            .iter()
            .filter(move |l| l.code == code)
            .map(|l| l.text.as_str())
    }

    /// The first error's text, if the reply has one.
    fn error(&self) -> Option<String> {
        let errors: Vec<&str> = self
            .lines
            .iter()
            .filter(|l| l.code >= 8000)
            .map(|l| l.text.as_str())
            .collect();
        (!errors.is_empty()).then(|| errors.join("; "))
    }
}

/// Reads reply lines until the last; returns the reply.
pub(crate) fn parse(lines: &[String]) -> Option<Reply> {
    let mut reply = Vec::new();
    let mut code = 0;
    for raw in lines {
        if let Some(rest) = raw.strip_prefix(' ') {
            reply.push(Line {
                code,
                text: rest.to_owned(),
            });
            continue;
        }
        let digits = raw.get(..4)?;
        code = digits.parse().ok()?;
        let text = raw.get(5..).unwrap_or_default().to_owned();
        reply.push(Line { code, text });
        if raw.as_bytes().get(4) != Some(&b'-') {
            return Some(Reply { lines: reply });
        }
    }
    None
}

/// Sends `command` and returns BIRD's reply; an 8xxx or 9xxx line is an error.
pub async fn command(socket: &Path, command: &str) -> Result<Reply, BirdError> {
    tokio::time::timeout(DEADLINE, exchange(socket, command))
        .await
        .map_err(|_| BirdError::Timeout)?
}

async fn exchange(socket: &Path, command: &str) -> Result<Reply, BirdError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| BirdError::Unreachable {
            socket: socket.display().to_string(),
            source,
        })?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read).lines();
    // The greeting: `0001 BIRD 2.0.12 ready.`
    read_reply(&mut read).await?;
    write
        .write_all(format!("{command}\n").as_bytes())
        .await
        .map_err(|_| BirdError::Closed)?;
    let reply = read_reply(&mut read).await?;
    match reply.error() {
        Some(message) => Err(BirdError::Refused {
            command: command.to_owned(),
            message,
        }),
        None => Ok(reply),
    }
}

async fn read_reply(
    read: &mut tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
) -> Result<Reply, BirdError> {
    let mut lines = Vec::new();
    loop {
        let line = read
            .next_line()
            .await
            .map_err(|_| BirdError::Closed)?
            .ok_or(BirdError::Closed)?;
        lines.push(line);
        if let Some(reply) = parse(&lines) {
            return Ok(reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn a_reply_ends_at_the_first_line_without_a_dash() {
        let reply = parse(&lines(
            "0002-Reading configuration from /etc/bird/bird.conf\n0003 Reconfigured",
        ))
        .unwrap();
        assert_eq!(reply.lines.len(), 2);
        assert_eq!(reply.lines[1].code, 3);
        assert_eq!(reply.error(), None);
        assert_eq!(parse(&lines("0002-Reading configuration")), None);
    }

    #[test]
    fn continuation_lines_keep_their_code_and_errors_are_found() {
        let reply = parse(&lines(
            "2002-Name       Proto      Table      State  Since         Info\n1002-halb_r1     BGP        ---        up     14:02:11.123  Established\n halb_vips4 Static master4 up 14:02:10.000\n0000 ",
        ))
        .unwrap();
        let rows: Vec<&str> = reply.with_code(1002).collect();
        assert_eq!(rows.len(), 2, "{reply:?}");
        let refused = parse(&lines(
            "0002-Reading configuration from /etc/bird/bird.conf\n8002 /etc/bird/halb.conf:3:1 syntax error",
        ))
        .unwrap();
        assert_eq!(
            refused.error().as_deref(),
            Some("/etc/bird/halb.conf:3:1 syntax error")
        );
    }
}
