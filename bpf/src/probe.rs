//! Programs that do nothing, on the tracepoints netatopd uses: the
//! benchmarks' floor for the cost of any tp_btf program, and `--version`'s
//! check that such programs load at all.

use std::mem::MaybeUninit;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::OpenObject;

use crate::kernel::Kernel;
use crate::skel::empty;
use crate::{libbpf, LoadError};

/// The do-nothing programs, attached; detached when dropped, never pinned.
pub struct EmptyProbe {
    _skel: empty::EmptySkel<'static>,
}

impl EmptyProbe {
    /// Whether the do-nothing programs load (pass the verifier), without
    /// attaching them: tells whether this kernel runs tp_btf programs on
    /// the socket tracepoints at all.
    pub fn loads() -> bool {
        let mut object = MaybeUninit::uninit();
        let Ok(open) = empty::EmptySkelBuilder::default().open(&mut object) else {
            return false;
        };
        let loaded = open.load().is_ok();
        loaded
    }

    pub fn attach() -> Result<Self, LoadError> {
        Kernel::probe().check()?;
        // Leaked: the skeleton borrows its object for as long as it lives.
        let object: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let open = empty::EmptySkelBuilder::default()
            .open(object)
            .map_err(libbpf("opening"))?;
        let mut skel = open.load().map_err(libbpf("loading"))?;
        skel.attach().map_err(libbpf("attaching"))?;
        Ok(Self { _skel: skel })
    }
}
