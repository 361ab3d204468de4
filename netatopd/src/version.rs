//! The `--version` text of netatopd and netatopctl: version, git revision,
//! and what the running kernel offers (probed only when asked).

use netatopd_bpf::Features;

/// The git revision this was built from ("unknown" outside a checkout).
pub const GIT_REVISION: &str = env!("NETATOPD_GIT_REVISION");

/// "0.1.0 (git 0123456789ab)" and the kernel's BPF features, one per line.
pub fn long_version() -> String {
    format!(
        "{} (git {GIT_REVISION})\n{}",
        env!("CARGO_PKG_VERSION"),
        Features::probe()
    )
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
/// asked for.
pub fn parse<P: clap::Parser>() -> P {
    let mut cmd = P::command();
    if asked() {
        let v = long_version();
        cmd = cmd.version(v.clone()).long_version(v);
    }
    let mut matches = cmd.get_matches();
    P::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.exit())
}
