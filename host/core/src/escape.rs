//! Client-controlled text made safe to log: a target name, a request line,
//! a header, a user name or a plugin's message may carry newlines (a
//! forged log line), ESC (terminal control), NUL (grep calls the log
//! binary) or bidirectional overrides (text that reads differently than
//! it is). Every such value goes through [`esc`] (or [`esc_bytes`] for raw
//! bytes) before it reaches a log line or an error message, and the log
//! writer runs [`LineGuard`] over each finished line as a last line of
//! defence for anything a call site missed.
//!
//! The escapes are Rust's (`\n`, `\t`, `\\`, `\u{1b}`, `\xff` for a byte
//! that is not UTF-8), so an operator reads the value as the client sent it.

use std::fmt::{self, Display, Write};
use std::io;

/// Whether `c` must not reach a log as it is: controls (C0, DEL, C1),
/// the line and paragraph separators, and bidirectional formatting marks.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
        )
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Writes `c` as its escape, or as itself when it is safe.
fn write_char(out: &mut impl Write, c: char) -> fmt::Result {
    match c {
        '\\' => out.write_str("\\\\"),
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        '\0' => out.write_str("\\0"),
        c if is_unsafe(c) => write!(out, "\\u{{{:x}}}", c as u32),
        c => out.write_char(c),
    }
}

/// Escapes what its inner `Display` writes, as it writes it.
pub struct Escaped<T>(pub T);

/// Wraps any displayable client-controlled value for a log field or an
/// error message.
pub fn esc<T: Display>(value: T) -> Escaped<T> {
    Escaped(value)
}

struct Escaper<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl Write for Escaper<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Runs of safe text go through in one piece.
        let mut start = 0;
        for (i, c) in s.char_indices() {
            if c == '\\' || is_unsafe(c) {
                self.0.write_str(&s[start..i])?;
                write_char(self.0, c)?;
                start = i + c.len_utf8();
            }
        }
        self.0.write_str(&s[start..])
    }
}

impl<T: Display> Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(Escaper(f), "{}", self.0)
    }
}

impl<T: Display> fmt::Debug for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Display::fmt(self, f)
    }
}

/// Raw bytes from the wire, which may not be UTF-8.
pub struct EscapedBytes<'a>(pub &'a [u8]);

/// Wraps client bytes (a header value, a request line) for a log field or
/// an error message; a byte that is not UTF-8 shows as `\xNN`.
pub fn esc_bytes(value: &[u8]) -> EscapedBytes<'_> {
    EscapedBytes(value)
}

impl Display for EscapedBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            Escaper(f).write_str(chunk.valid())?;
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for EscapedBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Display::fmt(self, f)
    }
}

/// The log writer's guard: a line is written in one call (tracing's
/// formatter and the named loggers both build the whole line first), and
/// every unsafe character in it except the final newline is escaped.
/// Backslashes are left alone here, so the JSON format's own escapes stay
/// valid; unsafe characters become `\u00XX`/`\uXXXX`, which reads the same
/// in text and is a valid JSON escape inside a string (where the JSON
/// format puts every value).
pub struct LineGuard<W>(pub W);

impl<W: io::Write> io::Write for LineGuard<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, newline) = match buf.strip_suffix(b"\n") {
            Some(b) => (b, true),
            None => (buf, false),
        };
        let text = String::from_utf8_lossy(body);
        if !text.chars().any(is_unsafe) && !matches!(text, std::borrow::Cow::Owned(_)) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = String::with_capacity(text.len() + 16);
        for c in text.chars() {
            if is_unsafe(c) {
                let _ = write!(out, "\\u{:04x}", c as u32);
            } else {
                out.push(c);
            }
        }
        if newline {
            out.push('\n');
        }
        self.0.write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn controls_newlines_and_bidi_marks_are_escaped_readably() {
        let hostile = "x\n2026-12-07T00:00:00Z  INFO FAKE\r\x1b[31m\0\u{202e}\u{85}\\ok";
        assert_eq!(
            esc(hostile).to_string(),
            "x\\n2026-12-07T00:00:00Z  INFO FAKE\\r\\u{1b}[31m\\0\\u{202e}\\u{85}\\\\ok"
        );
        assert_eq!(esc("example.com:443").to_string(), "example.com:443");
        assert_eq!(format!("{:?}", esc("a\tb")), "a\\tb");
    }

    #[test]
    fn bytes_that_are_not_utf8_show_as_hex() {
        assert_eq!(
            esc_bytes(b"GET /\xff\xfe HTTP/1.1\r\n").to_string(),
            "GET /\\xff\\xfe HTTP/1.1\\r\\n"
        );
    }

    #[test]
    fn the_line_guard_keeps_one_line_and_valid_json() {
        let mut out = Vec::new();
        let mut g = LineGuard(&mut out);
        g.write_all(b"a\nb\x1b\x00c\n").unwrap();
        let line = "{\"m\":\"x\u{9b}\u{2028}y\"}\n";
        g.write_all(line.as_bytes()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "a\\u000ab\\u001b\\u0000c\n{\"m\":\"x\\u009b\\u2028y\"}\n"
        );
        let json: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(json["m"], "x\u{9b}\u{2028}y");
    }
}
