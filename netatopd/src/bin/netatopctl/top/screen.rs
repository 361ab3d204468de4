//! Where `netatopctl top` shows its samples: JSON lines, tables one under
//! the other, or on a terminal a table redrawn in place on the alternate
//! screen, as many rows as fit.

use std::io::{self, Write};

use serde::Serialize;

use crate::table::Column;

/// How samples are shown.
pub struct Output {
    /// One JSON object a line.
    pub json: bool,
    /// TCP and UDP in columns of their own (for the views).
    pub split: bool,
    /// Redrawn in place on a terminal.
    pub tty: bool,
    /// The counters count the wire: a line under the header says so.
    pub wire: bool,
}

impl Output {
    /// One sample: a JSON line, or a table under its header.
    pub fn emit(
        &self,
        sample: &impl Serialize,
        header: String,
        columns: &[Column],
        rows: Vec<Vec<String>>,
    ) -> io::Result<()> {
        let text = if self.json {
            let mut line = serde_json::to_vec(sample)?;
            line.push(b'\n');
            line
        } else {
            let fit = if self.tty { terminal_rows() } else { None };
            self.table(&header, columns, rows, fit)?
        };
        let mut out = io::stdout().lock();
        out.write_all(&text)?;
        out.flush()
    }

    /// The text of a table under its header: on a terminal (of `fit`
    /// rows, where known) after clearing it, as many rows as fit;
    /// otherwise followed by an empty line.
    fn table(
        &self,
        header: &str,
        columns: &[Column],
        mut rows: Vec<Vec<String>>,
        fit: Option<usize>,
    ) -> io::Result<Vec<u8>> {
        let mut text = Vec::new();
        if self.tty {
            text.extend_from_slice(b"\x1b[H\x1b[2J");
            if let Some(n) = fit {
                // The header line(s), the column line, and a last line
                // kept free.
                rows.truncate(n.saturating_sub(3 + usize::from(self.wire)));
            }
        }
        writeln!(text, "{header}")?;
        crate::write_table(&mut text, self.wire, columns, &rows)?;
        if !self.tty {
            writeln!(text)?;
        }
        Ok(text)
    }
}

/// The terminal's rows, if stdout is one.
fn terminal_rows() -> Option<usize> {
    // SAFETY: an all-zero winsize is valid to be overwritten.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize through a valid pointer.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0).then_some(ws.ws_row as usize)
}

/// The alternate screen with the cursor hidden, restored when dropped
/// (at the end, on Ctrl-C and on errors alike).
pub struct Screen;

impl Screen {
    pub fn enter() -> io::Result<Screen> {
        let mut out = io::stdout().lock();
        out.write_all(b"\x1b[?1049h\x1b[?25l")?;
        out.flush()?;
        Ok(Screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let mut out = io::stdout().lock();
        let _ = out.write_all(b"\x1b[?25h\x1b[?1049l");
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::num;

    fn table(tty: bool, wire: bool, fit: Option<usize>) -> String {
        let out = Output {
            json: false,
            split: false,
            tty,
            wire,
        };
        let rows = (1..=5).map(|i| vec![i.to_string()]).collect();
        let text = out.table("head", &[num("N")], rows, fit).unwrap();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn a_terminal_is_redrawn_with_the_rows_that_fit() {
        assert_eq!(table(false, false, None), "head\nN\n1\n2\n3\n4\n5\n\n");
        assert_eq!(
            table(true, false, Some(6)),
            "\x1b[H\x1b[2Jhead\nN\n1\n2\n3\n"
        );
        assert_eq!(
            table(true, true, Some(6)),
            format!("\x1b[H\x1b[2Jhead\n{}\nN\n1\n2\n", crate::WIRE_NOTE)
        );
        assert_eq!(table(true, false, Some(2)), "\x1b[H\x1b[2Jhead\nN\n");
        assert_eq!(
            table(true, false, None),
            "\x1b[H\x1b[2Jhead\nN\n1\n2\n3\n4\n5\n"
        );
    }
}
