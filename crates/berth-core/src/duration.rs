//! Human durations in manifests: `500ms`, `30s`, `10m`, `1h`, `1h30m`.

use std::time::Duration;

/// Longest duration any manifest field may hold: 30 days. Each field has a
/// tighter bound of its own (see `manifest`); this one keeps parsing itself
/// free of overflow, whatever the digits say.
pub const DURATION_S_MAX: u64 = 30 * 24 * 3600;

/// Parse a human duration. Units: `ms`, `s`, `m`, `h`; components may be
/// chained (`1m30s`). A bare number is rejected: the unit is never guessed.
/// A duration longer than [`DURATION_S_MAX`] is rejected, and no
/// arithmetic here can overflow (every step is checked).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let max_ms = DURATION_S_MAX * 1000;
    let too_long = || {
        format!(
            "bad duration {text:?}: longer than the maximum of {}",
            format_duration(Duration::from_secs(DURATION_S_MAX))
        )
    };
    let mut total_ms: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format!(
                "bad duration {text:?}: expected a number, e.g. \"30s\""
            ));
        }
        let number = &rest[..digits];
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => {
                return Err(format!(
                    "bad duration {text:?}: missing unit (use ms, s, m or h)"
                ));
            }
            other => {
                return Err(format!(
                    "bad duration {text:?}: unknown unit {other:?} (use ms, s, m or h)"
                ));
            }
        };
        // Too many digits for a u64 is too long as well.
        let value: u64 = number.parse().map_err(|_| too_long())?;
        total_ms = value
            .checked_mul(unit_ms)
            .and_then(|part| total_ms.checked_add(part))
            .filter(|total| *total <= max_ms)
            .ok_or_else(too_long)?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Render a duration the way users write it (`90s` → `1m30s`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in ["", "30", "s", "10x", "ten seconds", "-5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn huge_durations_are_refused_without_overflow() {
        for huge in [
            "18446744073709551615h",
            "18446744073709551616ms",
            "99999999999999999999999s",
            "720h1ms",
            "30000000m",
            "720h720h",
        ] {
            let err = parse_duration(huge).unwrap_err();
            assert!(
                err.contains("longer than the maximum of 720h"),
                "{huge}: {err}"
            );
        }
        assert_eq!(
            parse_duration("720h"),
            Ok(Duration::from_secs(DURATION_S_MAX))
        );
        assert_eq!(
            parse_duration("719h59m59s1000ms"),
            Ok(Duration::from_secs(DURATION_S_MAX))
        );
    }

    #[test]
    fn formats_round_trip() {
        for s in ["500ms", "30s", "1m30s", "2h"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
