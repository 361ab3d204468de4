//! The benchmark's own BPF programs (tests/src/bin/netatop-bench/bpf/):
//! the floors, the candidate designs of wire counting and the other way of
//! counting the wire, compiled beside the product's headers (vmlinux.h,
//! netatop.h, segments.bpf.h) into skeletons that netatop-bench includes.
//! They are not part of netatopd: its crate builds only what ships.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC_DIR: &str = "src/bin/netatop-bench/bpf";
/// The product's headers the benchmark's programs share.
const PRODUCT: &str = "-I../bpf/src/bpf";
/// For bpf_tracing.h's argument macros and the product's vmlinux.h (its
/// struct pt_regs): the target's architecture, as libbpf names it.
fn target_arch() -> &'static str {
    match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "-D__TARGET_ARCH_arm64",
        _ => "-D__TARGET_ARCH_x86",
    }
}

fn main() {
    let dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR must be set by cargo"));
    for name in ["floor", "sockfold", "tcpinfo"] {
        let src = format!("{SRC_DIR}/{name}.bpf.c");
        SkeletonBuilder::new()
            .source(&src)
            .obj(dir.join(format!("{name}.bpf.o")))
            .clang_args(["-Wall", "-Werror", "-mcpu=v3", PRODUCT, target_arch()])
            .build_and_generate(dir.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {src} (needs clang >= 14): {e:#}"));
    }
    println!("cargo:rerun-if-changed={SRC_DIR}");
    println!("cargo:rerun-if-changed=../bpf/src/bpf");
}
