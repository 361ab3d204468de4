//! The usage texts of this crate's binaries, read back by their unit
//! tests: the names a block of one lists, to hold them against the
//! binary's own table.

/// The names that start the lines of `usage` (two spaces in) from its
/// line that starts with `from` to its line that starts with `to`; a line
/// may start with several, separated by ", ", and ends them at two
/// spaces. Deeper lines go on the line before.
pub fn listed_names<'a>(usage: &'a str, from: &str, to: &str) -> Vec<&'a str> {
    let start = usage
        .find(&format!("\n{from}"))
        .unwrap_or_else(|| panic!("no line {from:?}"));
    let end = usage[start..]
        .find(&format!("\n{to}"))
        .unwrap_or_else(|| panic!("no line {to:?} after {from:?}"));
    usage[start..start + end]
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter(|l| !l.starts_with(' '))
        .flat_map(|l| l.split("  ").next().unwrap_or("").split(", "))
        .collect()
}
