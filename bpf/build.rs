use std::env;
use std::fs;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

/// Every program's sources: netatop.bpf.c and the headers it includes, the
/// feature probe, the shared records and kernel types. Cargo watches a
/// directory's files recursively, so a header added there is watched too.
/// (The benchmark's own programs are built with it: tests/build.rs.)
const SRC_DIR: &str = "src/bpf";
const SRC: &str = "src/bpf/netatop.bpf.c";
/// The feature probe netatopd loads at start (src/probe.rs).
const PROBE: &str = "src/bpf/probe.bpf.c";
const SHARED: &str = "src/bpf/netatop.h";

/// The architecture the programs are built for, the target's (cargo's
/// CARGO_CFG_TARGET_ARCH), as libbpf's headers name it: bpf_tracing.h's
/// kprobe argument macros and vmlinux.h's struct pt_regs depend on it.
fn target_arch() -> String {
    let arch =
        env::var("CARGO_CFG_TARGET_ARCH").expect("CARGO_CFG_TARGET_ARCH must be set by cargo");
    let bpf = match arch.as_str() {
        "x86_64" => "x86",
        "aarch64" => "arm64",
        other => panic!(
            "netatopd's BPF programs are built for x86_64 and aarch64, not {other}: \
             build with --target x86_64-unknown-linux-gnu or aarch64-unknown-linux-gnu"
        ),
    };
    format!("-D__TARGET_ARCH_{bpf}")
}

/// FNV-1a, 64 bits: a stable fingerprint, the same on every build host.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn main() {
    let dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR must be set by cargo"));
    let out = dir.join("netatop.skel.rs");
    let obj = dir.join("netatop.bpf.o");
    let arch = target_arch();
    SkeletonBuilder::new()
        .source(SRC)
        .obj(&obj)
        .clang_args(["-Wall", "-Werror", "-mcpu=v3", "-Isrc/bpf", &arch])
        .build_and_generate(&out)
        .unwrap_or_else(|e| panic!("building {SRC} (needs clang >= 14): {e:#}"));
    SkeletonBuilder::new()
        .source(PROBE)
        .obj(dir.join("probe.bpf.o"))
        .clang_args(["-Wall", "-Werror", "-mcpu=v3", "-Isrc/bpf", &arch])
        .build_and_generate(dir.join("probe.skel.rs"))
        .unwrap_or_else(|e| panic!("building {PROBE}: {e:#}"));
    // Pinned state is adopted only by a netatopd whose shared records are
    // the same (layout) and whose programs are the same (build).
    let layout = fnv1a(&fs::read(SHARED).expect("reading netatop.h"));
    let build = fnv1a(&fs::read(&obj).expect("reading the BPF object"));
    fs::write(
        dir.join("fingerprint.rs"),
        format!("const LAYOUT: u64 = {layout:#018x};\nconst BUILD: u64 = {build:#018x};\n"),
    )
    .expect("writing fingerprint.rs");
    println!("cargo:rerun-if-changed={SRC_DIR}");
}
