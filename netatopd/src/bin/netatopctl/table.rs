//! Aligned text tables and human-readable numbers.

use std::borrow::Cow;
use std::io::{self, Write};

/// A column: its header and whether its cells are text (left-aligned) or
/// numbers (right-aligned).
#[derive(Clone)]
pub struct Column {
    pub header: Cow<'static, str>,
    pub text: bool,
}

pub fn text(header: impl Into<Cow<'static, str>>) -> Column {
    Column {
        header: header.into(),
        text: true,
    }
}

pub fn num(header: impl Into<Cow<'static, str>>) -> Column {
    Column {
        header: header.into(),
        text: false,
    }
}

/// Writes the header and the rows, columns two spaces apart.
pub fn write(out: &mut impl Write, columns: &[Column], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.header.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        cells
            .zip(columns.iter().zip(&widths))
            .map(|(cell, (col, &w))| {
                if col.text {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    writeln!(out, "{}", line(&mut columns.iter().map(|c| &*c.header)))?;
    for row in rows {
        writeln!(out, "{}", line(&mut row.iter().map(String::as_str)))?;
    }
    Ok(())
}

/// Bytes with binary prefixes: `999B`, `1.5KiB`, `20.0MiB`.
pub fn bytes(n: f64) -> String {
    scaled(n, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"])
}

/// Counts with decimal prefixes: `999`, `1.5k`, `20.0M`.
pub fn count(n: f64) -> String {
    scaled(n, 1000.0, &["", "k", "M", "G", "T", "P", "E"])
}

/// A counter's value (or rate) in human units: [`bytes`] for a counter of
/// bytes, else a [`count`].
pub fn amount(bytes: bool, n: f64) -> String {
    if bytes {
        self::bytes(n)
    } else {
        count(n)
    }
}

fn scaled(n: f64, base: f64, units: &[&str]) -> String {
    // An empty f64 sum is -0.0: show it as 0.
    let mut n = if n > 0.0 { n } else { 0.0 };
    let mut unit = 0;
    while n >= base && unit + 1 < units.len() {
        n /= base;
        unit += 1;
    }
    if unit == 0 {
        // Whole units below the first prefix (rates may be fractional).
        format!("{}{}", n.round(), units[0])
    } else {
        format!("{n:.1}{}", units[unit])
    }
}

/// Local date and time of an epoch second, `YYYY-MM-DD HH:MM:SS`.
pub fn local_time(epoch: u64) -> String {
    let t = epoch as libc::time_t;
    // SAFETY: an all-zero `tm` is a valid value to be overwritten.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is re-entrant.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return epoch.to_string();
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_scaled_with_one_decimal() {
        assert_eq!(bytes(0.0), "0B");
        assert_eq!(bytes(-0.0), "0B");
        assert_eq!(bytes(1023.0), "1023B");
        assert_eq!(bytes(1536.0), "1.5KiB");
        assert_eq!(bytes(20.0 * 1024.0 * 1024.0), "20.0MiB");
        assert_eq!(count(999.4), "999");
        assert_eq!(count(1500.0), "1.5k");
        assert_eq!(count(2.5e9), "2.5G");
    }

    #[test]
    fn text_aligns_left_and_numbers_right() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["1".to_owned(), "a".to_owned()],
            vec!["100".to_owned(), "bcd".to_owned()],
        ];
        write(&mut out, &[num("PID"), text("CMD")], &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "PID  CMD\n  1  a\n100  bcd\n"
        );
    }
}
