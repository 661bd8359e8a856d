use std::io::{IsTerminal, Write};

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Logs to stderr; `RUST_LOG` overrides the default level.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colours = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours && format == LogFormat::Text)
        .with_writer(move || OneLine {
            inner: std::io::stderr(),
            keep_escape: colours,
        });
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// A text log is one event per line: a newline or another control
/// character inside a message or a field (a description someone typed) is
/// written escaped, so it cannot forge a line of its own. The formatter
/// writes each event at once, its own newline last.
struct OneLine<W: Write> {
    inner: W,
    /// The terminal's colours are the formatter's own escape sequences.
    keep_escape: bool,
}

impl<W: Write> Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let last = buf.len().saturating_sub(1);
        let mut line = Vec::with_capacity(buf.len());
        for (index, &byte) in buf.iter().enumerate() {
            match byte {
                b'\n' if index == last => line.push(b'\n'),
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                b'\t' => line.push(b'\t'),
                0x1b if self.keep_escape => line.push(byte),
                0..=0x1f | 0x7f => line.extend_from_slice(format!("\\x{byte:02x}").as_bytes()),
                _ => line.push(byte),
            }
        }
        self.inner.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(text: &str, keep_escape: bool) -> String {
        let mut line = OneLine {
            inner: Vec::new(),
            keep_escape,
        };
        line.write_all(text.as_bytes()).unwrap();
        String::from_utf8(line.inner).unwrap()
    }

    #[test]
    fn what_a_user_typed_cannot_start_a_line_of_its_own() {
        let forged = "INFO promoted reason=\"ok\nERROR admin signed in\r\x07\"\n";
        assert_eq!(
            written(forged, false),
            "INFO promoted reason=\"ok\\nERROR admin signed in\\r\\x07\"\n"
        );
        assert_eq!(written("\x1b[2mé\tß\n", false), "\\x1b[2mé\tß\n");
        assert_eq!(written("\x1b[2mé\n", true), "\x1b[2mé\n");
    }
}
