//! `netatopctl top`: bandwidth per process, or per group with --by, every
//! interval. This module owns the options and the loop: a reading each
//! interval, its rates from the model (`rates`), shown by the process view
//! or the group view (`process_view`, `group_view`, sharing `view`) on the
//! output (`screen`).

use std::io::{self, IsTerminal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};

use crate::conns::SocketCounts;
use crate::groups::{self, Group};
use crate::{output, Args, Source};
use rates::Rates;
use screen::{Output, Screen};

mod group_view;
mod process_view;
mod rates;
mod screen;
mod view;

#[derive(clap::Args, Debug)]
pub struct Opts {
    /// Seconds between refreshes (fractions allowed).
    #[arg(short = 'i', long, value_name = "SECONDS", default_value_t = 1.0)]
    interval: f64,
    /// Stop after COUNT intervals.
    #[arg(short = 'n', long, value_name = "COUNT")]
    count: Option<u64>,
    /// One JSON object per interval, one per line.
    #[arg(long)]
    json: bool,
    /// TCP and UDP in separate columns.
    #[arg(long)]
    split: bool,
    /// Per cgroup v2, or summed per systemd unit, container or pod,
    /// instead of per process (needs netatopd).
    #[arg(long, value_enum, value_name = "GROUP")]
    by: Option<Group>,
}

/// Sleeps until `deadline`; false if a stop was requested meanwhile.
fn sleep_until(deadline: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

pub fn run(args: &Args, o: &Opts) -> Result<()> {
    if !(o.interval.is_finite() && o.interval > 0.0) {
        bail!("-i needs a number of seconds > 0");
    }
    let interval = Duration::from_secs_f64(o.interval);
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| anyhow!("cannot handle signals: {e}"))?;
    }
    let mut source = Source::open(args, o.by.map(|_| "--by"))?;
    let wire = source.wire()?.is_some();
    let tty = !o.json && io::stdout().is_terminal();
    let _screen = if tty {
        Some(Screen::enter().map_err(|e| anyhow!("cannot set up the terminal: {e}"))?)
    } else {
        None
    };
    let out = Output {
        json: o.json,
        split: o.split,
        tty,
        wire,
    };
    if let Some(by) = o.by {
        // Removed cgroups are asked for from the first request on, so that
        // each comes once, in the interval of its removal.
        let fetch = |source: &mut Source| Ok(groups::rows(&groups::fetch(source, true)?, by));
        let mut model = Rates::new(&fetch(&mut source)?);
        return every_interval(
            o,
            interval,
            &stop,
            || fetch(&mut source),
            |rows, time, secs| {
                let rates = model.next(&rows, secs);
                output(group_view::show(&out, &rates, time, secs))
            },
        );
    }
    let mut model = Rates::new(&source.processes(false, true)?);
    every_interval(
        o,
        interval,
        &stop,
        || source.processes(false, true),
        |procs, time, secs| {
            let rates = model.next(&procs, secs);
            // The open sockets, read only for rows to show them in.
            let conns = if rates.is_empty() {
                None
            } else {
                Some(SocketCounts::read().map_err(|e| anyhow!("cannot read /proc: {e}"))?)
            };
            let connections = |pid| conns.as_ref().map_or(0, |c| c.get(pid));
            output(process_view::show(&out, &rates, connections, time, secs))
        },
    )
}

/// Every interval until -n intervals were shown or a stop was requested:
/// `fetch`es a reading, then `show`s it with the time (seconds since the
/// epoch) and the interval's real length in seconds. The first reading is
/// the caller's, just before.
fn every_interval<T>(
    o: &Opts,
    interval: Duration,
    stop: &AtomicBool,
    mut fetch: impl FnMut() -> Result<T>,
    mut show: impl FnMut(T, f64, f64) -> Result<()>,
) -> Result<()> {
    let mut then = Instant::now();
    let mut deadline = then + interval;
    let mut shown = 0u64;
    while o.count.is_none_or(|n| shown < n) && sleep_until(deadline, stop) {
        let reading = fetch()?;
        let now = Instant::now();
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        show(reading, time, (now - then).as_secs_f64())?;
        then = now;
        deadline = (deadline + interval).max(now);
        shown += 1;
    }
    Ok(())
}
