//! The `--version` text of netatopd and netatopctl: version, git revision,
//! and for netatopd what the running kernel offers (probed only when
//! asked).

/// The git revision this was built from ("unknown" outside a checkout).
pub const GIT_REVISION: &str = env!("NETATOPD_GIT_REVISION");

/// "0.1.0 (git 0123456789ab)", then `more` (if any) on the next lines.
pub fn long_version(more: Option<String>) -> String {
    let first = format!("{} (git {GIT_REVISION})", env!("CARGO_PKG_VERSION"));
    match more {
        Some(more) => format!("{first}\n{more}"),
        None => first,
    }
}

/// Whether the command line asks for the version, so that the kernel is
/// probed only then.
pub fn asked() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--version" || a == "-V")
}

/// Parses the command line of `P`, with the long version text when it is
/// asked for: the version, and what `more` says (called only then).
pub fn parse<P: clap::Parser>(more: impl FnOnce() -> Option<String>) -> P {
    let mut cmd = P::command();
    if asked() {
        let v = long_version(more());
        cmd = cmd.version(v.clone()).long_version(v);
    }
    let mut matches = cmd.get_matches();
    P::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.exit())
}
