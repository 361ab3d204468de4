//! Two network namespaces joined by a veth pair, made by a test and removed
//! when it drops: a wire whose interface counters count only the test's
//! own traffic.
//!
//! Nothing but the test's packets crosses it: IPv6 is off on both ends
//! before they come up (no router or neighbour solicitations, no MLD),
//! the neighbours are static (no ARP), and segmentation offloads are off
//! (the interface counts packets as a real wire would carry them).
//!
//! [`Wire`] makes them; [`start_across`] and its kin run the generator
//! across them; [`reckon`] and [`Before`] add up what netatopd counted
//! against what the wire carried.

mod across;
mod reckon;
mod wire;

pub use across::{across, spawn_across, start_across};
pub use reckon::{netns_inode, reckon, reckon_with, unattributed, Before, Flow, Reckoning};
pub use wire::{End, IfCounters, Wire, ETHERNET_HEADER};
