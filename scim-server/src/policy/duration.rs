//! Durations as policies write them (`90s`, `15m`, `24h`, `30d`, `2w`, sums like `1h30m`): parsed
//! when the policy is checked, formatted back the same way in the runbook and in mails.

use chrono::Duration;

/// Parses `90s`, `15m`, `24h`, `30d`, `2w` and sums like `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s == "0" {
        return Ok(Duration::zero());
    }
    let mut total = Duration::zero();
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: a number must come before {c:?}"))?;
        num.clear();
        let d = match c {
            's' => Duration::try_seconds(n),
            'm' => Duration::try_minutes(n),
            'h' => Duration::try_hours(n),
            'd' => Duration::try_days(n),
            'w' => Duration::try_weeks(n),
            _ => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {c:?} (use s, m, h, d, w)"
                ))
            }
        }
        .ok_or_else(|| format!("duration {s:?} is too large"))?;
        total += d;
    }
    if !num.is_empty() {
        return Err(format!(
            "invalid duration {s:?}: a unit must follow {num} (s, m, h, d, w)"
        ));
    }
    Ok(total)
}

/// Formats a duration the way policies write it (`30d`, `24h`, `1h30m`).
pub fn fmt_duration(d: Duration) -> String {
    let mut secs = d.num_seconds();
    if secs == 0 {
        return "0".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}
