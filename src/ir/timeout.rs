//! The one timeout type used everywhere: a duration or "off".

use serde::{Serialize, Serializer};
use std::time::Duration;

/// A time limit that may be switched off (`0s` in configuration means off).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Timeout {
    /// No limit.
    #[default]
    Off,
    /// Limit of this length (never zero).
    After(Duration),
}

impl Timeout {
    /// A limit of `s` seconds (`0` = off).
    pub const fn secs(s: u64) -> Self {
        if s == 0 {
            Timeout::Off
        } else {
            Timeout::After(Duration::from_secs(s))
        }
    }

    /// From a duration; zero means off.
    pub fn from_duration(d: Duration) -> Self {
        if d.is_zero() {
            Timeout::Off
        } else {
            Timeout::After(d)
        }
    }

    /// The duration, if on.
    pub fn get(self) -> Option<Duration> {
        match self {
            Timeout::Off => None,
            Timeout::After(d) => Some(d),
        }
    }

    /// Parses `30s`, `5m`, `1h30m`, `250ms`; `0s` = off.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "0" {
            return Ok(Timeout::Off);
        }
        humantime::parse_duration(text)
            .map(Timeout::from_duration)
            .map_err(|e| format!("invalid duration {text:?} ({e}); expected e.g. 30s, 5m, 1h"))
    }
}

impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Timeout::Off => f.write_str("off"),
            Timeout::After(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

impl Serialize for Timeout {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(Timeout::parse("30s"), Ok(Timeout::secs(30)));
        assert_eq!(Timeout::parse("5m"), Ok(Timeout::secs(300)));
        assert_eq!(Timeout::parse("1h30m"), Ok(Timeout::secs(5400)));
        assert_eq!(
            Timeout::parse("250ms"),
            Ok(Timeout::After(Duration::from_millis(250)))
        );
        assert_eq!(Timeout::parse("0s"), Ok(Timeout::Off));
        assert_eq!(Timeout::parse("0"), Ok(Timeout::Off));
        assert!(Timeout::parse("abc").is_err());
        assert!(Timeout::parse("10").is_err());
        assert!(Timeout::parse("-5s").is_err());
    }
}
