//! The man pages in `man/` against the binaries: every long option of each
//! `--help` is documented where it belongs, every option a page names
//! exists, `mandoc -T lint` finds nothing and `man -l` renders each page.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use netatopd_tests::{bin, ok};

/// Options of other programs that the pages name in examples.
const FOREIGN: [&str; 2] = ["now", "collector.textfile.directory"];
const PAGES: [&str; 3] = ["netatopd.8", "netatopctl.8", "netatop-protocol.5"];

fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../man")
}

fn page(name: &str) -> String {
    let path = man_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The long options a `--help` text defines (not those it merely names):
/// lines starting, after a short indent, with `-x, --long` or `--long`.
fn help_options(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter(|l| l.len() - l.trim_start().len() <= 6)
        .filter_map(|l| {
            let l = l.trim_start();
            let l = match l.as_bytes() {
                [b'-', c, b',', b' ', ..] if c.is_ascii_alphabetic() => &l[4..],
                _ => l,
            };
            let name: String = l
                .strip_prefix("--")?
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

fn help(binary: &str, args: &[&str]) -> BTreeSet<String> {
    let text = ok(Command::new(bin(binary)).args(args).arg("--help"));
    let opts = help_options(&text);
    assert!(opts.contains("help"), "no options parsed from {text}");
    opts
}

/// The subcommands a `--help` lists (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// Every `\-\-option` written in roff text.
fn roff_options(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("\\-\\-") {
        rest = &rest[i + 4..];
        let mut name = String::new();
        loop {
            if let Some(r) = rest.strip_prefix("\\-") {
                name.push('-');
                rest = r;
            } else if let Some(c) = rest
                .chars()
                .next()
                .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.')
            {
                name.push(c);
                rest = &rest[1..];
            } else {
                break;
            }
        }
        let name = name.trim_end_matches(['.', '-']);
        if !name.is_empty() {
            found.insert(name.to_owned());
        }
    }
    found
}

/// A page's parts: (".SH title", ".SS title" or "", lines).
fn parts(text: &str) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<(String, String, Vec<String>)> = vec![];
    for line in text.lines() {
        let title = |p: &str| line.strip_prefix(p).map(|t| t.trim_matches('"').to_owned());
        if let Some(sh) = title(".SH ") {
            out.push((sh, String::new(), vec![]));
        } else if let Some(ss) = title(".SS ") {
            let sh = out.last().map(|p| p.0.clone()).unwrap_or_default();
            out.push((sh, ss, vec![]));
        } else if let Some(p) = out.last_mut() {
            p.2.push(line.to_owned());
        }
    }
    out
}

/// The options a part defines: those in the tags of its `.TP` paragraphs.
fn defined(text: &str, sh: &str, ss: &str) -> BTreeSet<String> {
    let mut opts = BTreeSet::new();
    for (h, s, lines) in parts(text) {
        if h == sh && s == ss {
            for pair in lines.windows(2) {
                if pair[0] == ".TP" {
                    opts.extend(roff_options(&pair[1]));
                }
            }
        }
    }
    opts
}

fn assert_same(what: &str, help: &BTreeSet<String>, page: &BTreeSet<String>) {
    let missing: Vec<_> = help.difference(page).collect();
    let extra: Vec<_> = page.difference(help).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: in --help but not documented: {missing:?}; documented but not in --help: {extra:?}"
    );
}

fn assert_known(name: &str, known: &BTreeSet<String>) {
    let unknown: Vec<_> = roff_options(&page(name))
        .into_iter()
        .filter(|o| !known.contains(o) && !FOREIGN.contains(&o.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "{name} names options that do not exist: {unknown:?}"
    );
}

#[test]
fn netatopd_page_documents_every_option() {
    let opts = help("netatopd", &[]);
    let text = page("netatopd.8");
    assert_same("netatopd.8 OPTIONS", &opts, &defined(&text, "OPTIONS", ""));
    assert_known("netatopd.8", &opts);
}

#[test]
fn netatopctl_page_documents_every_option() {
    let text = page("netatopctl.8");
    let top = ok(Command::new(bin("netatopctl")).arg("--help"));
    let globals = help_options(&top);
    assert_same(
        "netatopctl.8 GLOBAL OPTIONS",
        &globals,
        &defined(&text, "GLOBAL OPTIONS", ""),
    );
    let mut known = globals.clone();
    let subs = subcommands(&top);
    assert!(subs.len() >= 5, "subcommands parsed from {top}");
    for sub in &subs {
        let own: BTreeSet<String> = help("netatopctl", &[sub])
            .difference(&globals)
            .cloned()
            .collect();
        assert_same(
            &format!("netatopctl.8 COMMANDS/{sub}"),
            &own,
            &defined(&text, "COMMANDS", sub),
        );
        known.extend(own);
    }
    // The page refers to netatopd's options too.
    known.extend(help("netatopd", &[]));
    assert_known("netatopctl.8", &known);
    for sub in &subs {
        assert!(
            parts(&text)
                .iter()
                .any(|(sh, ss, _)| sh == "FIELDS" && ss == sub)
                || !["dump", "top", "stats", "export"].contains(&sub.as_str()),
            "netatopctl.8 FIELDS has no part for {sub}"
        );
    }
}

#[test]
fn protocol_page_names_only_real_options() {
    assert_known("netatop-protocol.5", &help("netatopd", &[]));
}

#[test]
fn pages_carry_the_version() {
    let want = format!("\"netatopd {}\"", env!("CARGO_PKG_VERSION"));
    for name in PAGES {
        let th = page(name)
            .lines()
            .find(|l| l.starts_with(".TH "))
            .map(str::to_owned);
        let th = th.unwrap_or_else(|| panic!("{name} has no .TH line"));
        assert!(th.contains(&want), "{name}: {th} does not say {want}");
    }
}

#[test]
fn mandoc_lint_is_silent() {
    for name in PAGES {
        let path = man_dir().join(name);
        let out = Command::new("mandoc")
            .args(["-T", "lint", "-W", "all"])
            .arg(&path)
            .output()
            .expect("cannot run mandoc (Debian package mandoc; make test installs it)");
        let report = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && report.trim().is_empty(),
            "mandoc -T lint {name}: {report}"
        );
    }
}

#[test]
fn man_renders_each_page() {
    for name in PAGES {
        let path = man_dir().join(name);
        let out = Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .expect("cannot run man (Debian package man-db; make test installs it)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "man -l {name}: {stderr}"
        );
        for heading in ["NAME", "DESCRIPTION", "SEE ALSO"] {
            assert!(
                text.lines().any(|l| l == heading),
                "man -l {name}: no {heading} heading in\n{text}"
            );
        }
        let title = name.split('.').next().unwrap().to_uppercase();
        assert!(
            text.starts_with(&title),
            "man -l {name} starts with {:?}",
            &text[..40.min(text.len())]
        );
    }
}

#[test]
fn roff_options_are_parsed() {
    let found = roff_options(".BI \\-\\-pin\\-dir \" DIR\"\n\\-\\-max\\-threads.\n\\-\\-x\\- \\-V");
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["max-threads", "pin-dir", "x"]
    );
    let help =
        "Options:\n      --socket <PATH>  text --not-this\n  -v, --verbose\n          --nor-this\n";
    assert_eq!(
        help_options(help).into_iter().collect::<Vec<_>>(),
        ["socket", "verbose"]
    );
}
