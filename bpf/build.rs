use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "src/bpf/netatop.bpf.c";
const HEADERS: [&str; 2] = ["src/bpf/netatop.h", "src/bpf/vmlinux.h"];

fn main() {
    let dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR must be set by cargo"));
    let out = dir.join("netatop.skel.rs");
    SkeletonBuilder::new()
        .source(SRC)
        .obj(dir.join("netatop.bpf.o"))
        .clang_args(["-Wall", "-Werror", "-mcpu=v3", "-Isrc/bpf"])
        .build_and_generate(&out)
        .unwrap_or_else(|e| panic!("building {SRC} (needs clang >= 14): {e:#}"));
    println!("cargo:rerun-if-changed={SRC}");
    for h in HEADERS {
        println!("cargo:rerun-if-changed={h}");
    }
}
