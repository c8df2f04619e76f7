//! Resource limits and exhaustion, shared by both daemons (`bangerd` and
//! `bangerd-root`): raising `RLIMIT_NOFILE` at start, and the back-off and
//! log rate limit of an accept loop that hits a limit anyway.

use std::time::{Duration, Instant};

/// The open-files limit before and after [`raise_nofile_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// Soft limit found at start.
    pub before: u64,
    /// Soft limit now.
    pub soft: u64,
    /// Hard limit (the ceiling the soft one was raised to).
    pub hard: u64,
}

/// Raise the soft `RLIMIT_NOFILE` of this process to its hard limit (the
/// most an unprivileged process may use; a unit's `LimitNOFILE=` sets both).
/// A hard limit of "unlimited" is read as the kernel's `fs.nr_open`.
pub fn raise_nofile_limit() -> std::io::Result<NofileLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    let mut hard = lim.rlim_max;
    if hard == libc::RLIM_INFINITY {
        hard = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20);
    }
    if before != libc::RLIM_INFINITY && before < hard {
        let raised = libc::rlimit {
            rlim_cur: hard,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit from a struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        return Ok(NofileLimit {
            before,
            soft: hard,
            hard,
        });
    }
    Ok(NofileLimit {
        before,
        soft: before,
        hard,
    })
}

/// [`raise_nofile_limit`], then log the outcome: the limits at `info`, or
/// why it could not be raised at `warn` (the process goes on with the limit
/// it has). Both daemons call this once at start: every VM costs each a few
/// descriptors (sockets, pidfds, log files, connections), so they use all
/// their unit (or the shell) allows.
pub fn raise_and_log_nofile_limit() {
    match raise_nofile_limit() {
        Ok(l) => tracing::info!(
            soft = l.soft,
            hard = l.hard,
            before = l.before,
            "open-files limit (RLIMIT_NOFILE)"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit (RLIMIT_NOFILE)"),
    }
}

/// Whether an `accept` error means a resource is exhausted (file
/// descriptors of the process or the system, kernel buffers, memory), so
/// that retrying at once would spin.
pub fn is_exhaustion(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// First pause after a failed `accept`.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause after repeated failures.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one log line about failing `accept` per this interval.
pub const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(5);

/// Back-off and log rate limit for one accept loop. A pending connection
/// stays in the listen queue while `accept` fails (out of file descriptors,
/// say), so the listener stays readable and a loop that retries at once
/// spins a core and floods the log. After each failure the loop pauses
/// ([`AcceptFailure::pause`]: 10 ms, doubling up to 1 s, back to the start
/// after a success) and logs only when [`AcceptFailure::log`] says so: the
/// first failure, then at most once per [`ACCEPT_LOG_EVERY`] with the count
/// of failures not logged.
#[derive(Debug, Clone)]
pub struct AcceptBackoff {
    next: Duration,
    last_log: Option<Instant>,
    unlogged: u64,
}

/// What to do about one failed `accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptFailure {
    /// Sleep this long before accepting again.
    pub pause: Duration,
    /// Log this failure: `Some(n)` with `n` earlier failures that were not
    /// logged; `None`: stay quiet (it is counted for the next line).
    pub log: Option<u64>,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self::new()
    }
}

impl AcceptBackoff {
    /// No failure seen yet.
    pub fn new() -> Self {
        AcceptBackoff {
            next: ACCEPT_BACKOFF_MIN,
            last_log: None,
            unlogged: 0,
        }
    }

    /// Record a failure at `now`.
    pub fn failure(&mut self, now: Instant) -> AcceptFailure {
        let pause = self.next;
        self.next = (self.next * 2).min(ACCEPT_BACKOFF_MAX);
        let due = self
            .last_log
            .is_none_or(|t| now.saturating_duration_since(t) >= ACCEPT_LOG_EVERY);
        let log = if due {
            self.last_log = Some(now);
            Some(std::mem::take(&mut self.unlogged))
        } else {
            self.unlogged += 1;
            None
        };
        AcceptFailure { pause, log }
    }

    /// Record a successful `accept`: the next failure pauses briefly again.
    /// Returns the failures that were never logged, when there were any,
    /// for one closing line.
    pub fn success(&mut self) -> Option<u64> {
        self.next = ACCEPT_BACKOFF_MIN;
        match std::mem::take(&mut self.unlogged) {
            0 => None,
            n => Some(n),
        }
    }
}

/// At most one log line per interval; counts the ones it held back.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// One line per `interval`.
    pub fn new(interval: Duration) -> LogLimiter {
        LogLimiter {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line may be logged at `now` (`n` lines were held
    /// back since the last one), `None` when this one is held back.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limiter_allows_one_line_per_interval_and_counts_the_rest() {
        let mut l = LogLimiter::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(l.allow(t0), Some(0));
        for i in 1..=500 {
            assert_eq!(l.allow(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(l.allow(t0 + Duration::from_millis(1000)), Some(500));
        assert_eq!(l.allow(t0 + Duration::from_millis(1001)), None);
        assert_eq!(l.allow(t0 + Duration::from_millis(2500)), Some(1));
    }

    #[test]
    fn pauses_double_up_to_the_cap_and_reset_on_success() {
        let mut b = AcceptBackoff::new();
        let t = Instant::now();
        let pauses: Vec<u64> = (0..10)
            .map(|_| b.failure(t).pause.as_millis() as u64)
            .collect();
        assert_eq!(
            pauses,
            [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000],
            "exponential, capped at 1 s"
        );
        b.success();
        assert_eq!(b.failure(t).pause, ACCEPT_BACKOFF_MIN);
    }

    #[test]
    fn logs_the_first_failure_then_once_per_interval_with_a_count() {
        let mut b = AcceptBackoff::new();
        let t0 = Instant::now();
        assert_eq!(b.failure(t0).log, Some(0), "the first failure is logged");
        for i in 1..=99 {
            let at = t0 + Duration::from_millis(i * 10);
            assert_eq!(b.failure(at).log, None, "failure {i} is rate limited");
        }
        let later = t0 + ACCEPT_LOG_EVERY;
        assert_eq!(b.failure(later).log, Some(99), "one line counts the rest");
        assert_eq!(b.failure(later).log, None);
        assert_eq!(b.success(), Some(1), "the unlogged one is reported");
        assert_eq!(b.success(), None);
    }

    #[test]
    fn exhaustion_errors_are_recognised() {
        for e in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(is_exhaustion(&std::io::Error::from_raw_os_error(e)));
        }
        assert!(!is_exhaustion(&std::io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }

    #[test]
    fn soft_nofile_limit_is_raised_to_the_hard_limit() {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in raise_nofile_limit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        // Just below the hard limit: other tests of this binary run
        // meanwhile and must not run out of descriptors.
        let lowered = libc::rlimit {
            rlim_cur: lim.rlim_max - 1,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as in raise_nofile_limit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        let got = raise_nofile_limit().unwrap();
        assert_eq!(got.before, lowered.rlim_cur);
        assert_eq!(got.soft, got.hard);
        // SAFETY: as in raise_nofile_limit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, got.hard, "the process limit really changed");
        // A second call has nothing left to raise.
        let again = raise_nofile_limit().unwrap();
        assert_eq!((again.before, again.soft), (got.hard, got.hard));
    }
}
