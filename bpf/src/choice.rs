//! Choosing one of several ways of doing something (attaching, taking
//! snapshots, keeping threads' counters), written once: the way asked for
//! when the kernel takes it, else the best one it takes, else why none.

/// Why no way was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The way asked for (its name) cannot be used: why.
    Forced(&'static str, String),
    /// No way can be used: each one's name and reason, "name: why; ...".
    NoneUsable(String),
}

/// The first of `ways` (best first, each called `name`) that
/// `unavailable` (why a way cannot be used; None: it can) lets through;
/// Err lists each way's reason.
pub(crate) fn first_usable<T: Copy>(
    ways: &[T],
    name: fn(T) -> &'static str,
    unavailable: impl Fn(T) -> Option<String>,
) -> Result<T, String> {
    let mut why = Vec::new();
    for &way in ways {
        match unavailable(way) {
            None => return Ok(way),
            Some(w) => {
                log::debug!("{} passed over: {w}", name(way));
                why.push(format!("{}: {w}", name(way)));
            }
        }
    }
    Err(why.join("; "))
}

/// `forced` when it is given and can be used, else the first usable of
/// `ways` when it is not given (see [`first_usable`]); else why not.
pub(crate) fn choose<T: Copy>(
    forced: Option<T>,
    ways: &[T],
    name: fn(T) -> &'static str,
    unavailable: impl Fn(T) -> Option<String>,
) -> Result<T, Refused> {
    match forced {
        Some(way) => match unavailable(way) {
            None => Ok(way),
            Some(why) => Err(Refused::Forced(name(way), why)),
        },
        None => first_usable(ways, name, unavailable).map_err(Refused::NoneUsable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Road {
        Fast,
        Slow,
    }

    const ROADS: [Road; 2] = [Road::Fast, Road::Slow];

    fn name(road: Road) -> &'static str {
        match road {
            Road::Fast => "fast",
            Road::Slow => "slow",
        }
    }

    /// Chooses a road where `closed` ones cannot be taken.
    fn road(forced: Option<Road>, closed: &[Road]) -> Result<Road, Refused> {
        choose(forced, &ROADS, name, |r| {
            closed
                .contains(&r)
                .then(|| format!("{} is closed", name(r)))
        })
    }

    #[test]
    fn auto_takes_the_best_way_the_kernel_takes() {
        assert_eq!(road(None, &[]), Ok(Road::Fast));
        assert_eq!(road(None, &[Road::Fast]), Ok(Road::Slow));
    }

    #[test]
    fn auto_without_a_way_lists_each_reason_in_order() {
        assert_eq!(
            road(None, &ROADS),
            Err(Refused::NoneUsable(
                "fast: fast is closed; slow: slow is closed".into()
            ))
        );
    }

    #[test]
    fn a_forced_way_is_taken_or_refused_never_replaced() {
        assert_eq!(road(Some(Road::Slow), &[Road::Fast]), Ok(Road::Slow));
        assert_eq!(
            road(Some(Road::Fast), &[Road::Fast]),
            Err(Refused::Forced("fast", "fast is closed".into()))
        );
    }

    #[test]
    fn a_forced_way_asks_only_about_itself() {
        let asked = std::cell::RefCell::new(Vec::new());
        let unavailable = |r: Road| {
            asked.borrow_mut().push(r);
            None
        };
        assert_eq!(
            choose(Some(Road::Slow), &ROADS, name, unavailable),
            Ok(Road::Slow)
        );
        assert_eq!(*asked.borrow(), [Road::Slow]);
    }
}
