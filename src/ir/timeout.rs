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
    /// The longest duration any setting accepts (30 days): larger values are configuration
    /// errors, so no timer arithmetic can overflow and no `u64` of milliseconds can wrap.
    pub const MAX: Duration = Duration::from_secs(30 * 24 * 3600);

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

    /// Parses `30s`, `5m`, `1h30m`, `250ms`; `0s` = off; at most [`Timeout::MAX`].
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "0" {
            return Ok(Timeout::Off);
        }
        parse_bounded(text).map(Timeout::from_duration)
    }
}

/// Parses a duration (`30s`, `5m`, `1h30m`, `250ms`) of at most [`Timeout::MAX`], with an error
/// that names the value and the bound.
pub fn parse_bounded(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration {text:?} ({e}); expected e.g. 30s, 5m, 1h"))?;
    if d > Timeout::MAX {
        return Err(format!(
            "duration {text:?} exceeds the maximum of 30 days (720h)"
        ));
    }
    Ok(d)
}

impl Timeout {}

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
    fn durations_are_bounded() {
        assert_eq!(Timeout::parse("720h"), Ok(Timeout::After(Timeout::MAX)));
        for big in ["721h", "500000000000y", "18446744073709551615ms", "31d"] {
            let e = Timeout::parse(big).unwrap_err();
            assert!(
                e.contains(big) && (e.contains("maximum") || e.contains("invalid")),
                "{e}"
            );
        }
    }

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
