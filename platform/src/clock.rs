//! The wall clock every component reads: Unix time, in seconds or
//! milliseconds as each record keeps it. Before 1970 reads as 0.

use std::time::{SystemTime, UNIX_EPOCH};

/// A reading of the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnixTime {
    millis: i64,
}

/// Now.
pub fn now() -> UnixTime {
    UnixTime {
        millis: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
    }
}

impl UnixTime {
    /// Whole seconds since 1970.
    pub fn secs(self) -> i64 {
        self.millis.div_euclid(1000)
    }

    /// Milliseconds since 1970.
    pub fn millis(self) -> i64 {
        self.millis
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn seconds_and_milliseconds_agree() {
        let t = super::now();
        assert!(t.secs() > 1_700_000_000, "after November 2023");
        assert_eq!(t.secs(), t.millis() / 1000);
    }
}
