//! Harness for netatopd's integration tests: starts the real daemon, runs
//! the traffic generator, reads counters the way atop does, and looks into
//! the daemon's kernel maps.
//!
//! These tests need root and a kernel with BTF. They never skip: on a
//! machine that cannot load BPF they fail, saying why.
//!
//! One module a concern. Everything a test uses is named at the crate's
//! root (`use netatopd_tests::{Daemon, Gen, ...}`), but for the network
//! namespaces, which keep their module ([`netns`]).

mod affinity;
mod atop;
mod cgroup2;
mod command;
mod daemon;
mod generator;
mod machine;
mod maps;
pub mod netns;
mod process;
mod query;
mod report;
mod rng;
mod usage;
mod users;

pub use affinity::Affinity;
pub use atop::{assert_atop_btime, atop_binary, parse_prn};
pub use command::{fails, json, json_counters, netatopctl, ok, one_line_error, run};
pub use daemon::{forced_ways, pin_dir_for, private_args, Daemon, DaemonBuilder};
pub use generator::{run_lingering, run_to_exit, Gen};
pub use machine::{bin, require_bpf_machine, scratch_dir, test_binary, test_binary_in, unit_path};
pub use maps::thread_value;
pub use process::{set_nofile, signal, wait_exit, wait_until, wait_while_alive, waited};
pub use query::{expect_closed, expect_eof, query_on, record_for, records_for, response_on};
pub use report::{Proto, Report, ThreadReport, Truth};
pub use rng::{seed, Rng};
pub use usage::listed_names;
pub use users::{as_user, connect_as_nobody, NOBODY};
