//! Wall-clock time as the daemon records it in what outlives it or leaves the machine (the
//! upstream book, the fleet's entries): Unix milliseconds, comparable across restarts and
//! nodes. The kernel's monotonic clock, which the XDP program stamps, is
//! [`crate::maps::monotonic_now_ns`].

/// Now, in Unix milliseconds; 0 if the clock is before 1970.
#[must_use]
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
