#![allow(clippy::all)]
include!(concat!(env!("OUT_DIR"), "/netatop.skel.rs"));
