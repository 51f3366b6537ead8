//! `%START_TIME(...)%` and `%EMIT_TIME(...)%`: a strftime subset, always in UTC, with Envoy's
//! fraction extensions (`%3f`, `%E6S`).

use super::{push_padded, push_u64};
use std::cell::RefCell;
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Envoy's default: ISO 8601 with milliseconds, `2023-11-14T22:13:20.123Z`.
pub const DEFAULT: &str = "%Y-%m-%dT%H:%M:%E3SZ";

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const MONTHS_LONG: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const DAYS_LONG: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
pub(crate) fn civil_date(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a 400-year era.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Day of the year, 1-based.
fn day_of_year(y: i64, m: u32, d: u32) -> u32 {
    const BEFORE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let leap = u32::from(m > 2 && is_leap(y));
    BEFORE[(m as usize - 1).min(11)] + d + leap
}

/// Format `t` by `fmt` (empty: [`DEFAULT`]). Supported: `%Y %C %y %m %d %e %j %H %I %M %S %p
/// %s %z %Z %a %A %b %h %B %u %w %F %T %D %R %n %t %%`, `%f` (nanoseconds, 9 digits),
/// `%Nf` (N = 1..9 digits of fraction) and `%ENS` (seconds with N digits of fraction); any
/// other sequence is copied as is.
pub fn format_time(t: SystemTime, fmt: &str, out: &mut String) {
    if fmt.is_empty() || fmt == DEFAULT {
        // Envoy's default, on every access log line: the text up to the seconds changes once
        // a second, so it is kept per thread and only the milliseconds are written each time.
        thread_local! {
            static SECOND: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
        }
        let (secs, nanos) = split(t);
        SECOND.with(|c| match c.try_borrow_mut() {
            Ok(mut c) => {
                if c.0 != secs {
                    c.1.clear();
                    format_general(t, "%Y-%m-%dT%H:%M:%S.", &mut c.1);
                    c.0 = secs;
                }
                out.push_str(&c.1);
            }
            Err(_) => format_general(t, "%Y-%m-%dT%H:%M:%S.", out),
        });
        push_padded(out, u64::from(nanos / 1_000_000), 3);
        out.push('Z');
        return;
    }
    format_general(t, fmt, out);
}

/// Seconds since the epoch (negative before it) and nanoseconds within the second.
fn split(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let (s, n) = (d.as_secs() as i64, d.subsec_nanos());
            if n == 0 {
                (-s, 0)
            } else {
                (-s - 1, 1_000_000_000 - n)
            }
        }
    }
}

fn format_general(t: SystemTime, fmt: &str, out: &mut String) {
    let (secs, nanos) = split(t);
    let days = secs.div_euclid(86_400);
    let (y, mo, d) = civil_date(days);
    let sod = secs.rem_euclid(86_400);
    let (h, mi, s) = (sod / 3600, sod % 3600 / 60, sod % 60);
    // 1970-01-01 was a Thursday.
    let weekday = (days + 4).rem_euclid(7) as usize;
    let month = (mo as usize).saturating_sub(1).min(11);
    let frac = |out: &mut String, digits: usize| {
        let digits = digits.clamp(1, 9);
        let v = nanos / 10u32.pow(9 - digits as u32);
        let _ = write!(out, "{v:0digits$}");
    };
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // Writing to a String cannot fail.
        let _ = match chars.next() {
            Some('Y') if y >= 0 => {
                push_padded(out, y as u64, 4);
                Ok(())
            }
            Some('Y') => write!(out, "{y:04}"),
            Some('C') => write!(out, "{:02}", y.div_euclid(100)),
            Some('y') => write!(out, "{:02}", y.rem_euclid(100)),
            Some('m') => {
                push_padded(out, u64::from(mo), 2);
                Ok(())
            }
            Some('d') => {
                push_padded(out, u64::from(d), 2);
                Ok(())
            }
            Some('e') => write!(out, "{d:2}"),
            Some('j') => write!(out, "{:03}", day_of_year(y, mo, d)),
            Some('H') => {
                push_padded(out, h as u64, 2);
                Ok(())
            }
            Some('I') => write!(out, "{:02}", if h % 12 == 0 { 12 } else { h % 12 }),
            Some('p') => write!(out, "{}", if h < 12 { "AM" } else { "PM" }),
            Some('M') => {
                push_padded(out, mi as u64, 2);
                Ok(())
            }
            Some('S') => {
                push_padded(out, s as u64, 2);
                Ok(())
            }
            Some('s') if secs >= 0 => {
                push_u64(out, secs as u64);
                Ok(())
            }
            Some('s') => write!(out, "{secs}"),
            Some('z') => write!(out, "+0000"),
            Some('Z') => write!(out, "UTC"),
            Some('a') => write!(out, "{}", DAYS[weekday]),
            Some('A') => write!(out, "{}", DAYS_LONG[weekday]),
            Some('b' | 'h') => write!(out, "{}", MONTHS[month]),
            Some('B') => write!(out, "{}", MONTHS_LONG[month]),
            Some('u') => write!(out, "{}", if weekday == 0 { 7 } else { weekday }),
            Some('w') => write!(out, "{weekday}"),
            Some('F') => write!(out, "{y:04}-{mo:02}-{d:02}"),
            Some('T') => write!(out, "{h:02}:{mi:02}:{s:02}"),
            Some('R') => write!(out, "{h:02}:{mi:02}"),
            Some('D') => write!(out, "{mo:02}/{d:02}/{:02}", y.rem_euclid(100)),
            Some('n') => out.write_char('\n'),
            Some('t') => out.write_char('\t'),
            Some('%') => write!(out, "%"),
            Some(n @ '1'..='9') if chars.peek() == Some(&'f') => {
                chars.next();
                frac(out, n as usize - '0' as usize);
                Ok(())
            }
            Some('f') => {
                frac(out, 9);
                Ok(())
            }
            Some('E') => {
                let n = chars.next_if(|c| c.is_ascii_digit());
                if chars.next_if_eq(&'S').is_some() {
                    let _ = write!(out, "{s:02}.");
                    frac(out, n.map_or(9, |n| n as usize - '0' as usize));
                } else {
                    out.push_str("%E");
                    if let Some(n) = n {
                        out.push(n);
                    }
                }
                Ok(())
            }
            Some(other) => write!(out, "%{other}"),
            None => write!(out, "%"),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    fn fmt(t: SystemTime, f: &str) -> String {
        let mut s = String::new();
        format_time(t, f, &mut s);
        s
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(-1), (1969, 12, 31));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(19_675), (2023, 11, 14));
    }

    #[test]
    fn envoy_default_and_extensions() {
        let t = at(1_700_000_000, 123_456_789);
        assert_eq!(fmt(t, ""), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            fmt(t, "%Y/%m/%d %H:%M:%S %s.%3f %6f %9f %f %z %E6S %%"),
            "2023/11/14 22:13:20 1700000000.123 123456 123456789 123456789 +0000 20.123456 %"
        );
        // The same day as Envoy printed it: 2026-11-25 is day 329, a Wednesday.
        let t = at(1_795_633_263, 496_119_000);
        assert_eq!(
            fmt(t, "%Z %e %b %j %a %A %B %F %T %D %R %I%p %u %w %C %y"),
            "UTC 25 Nov 329 Wed Wednesday November 2026-11-25 19:01:03 11/25/26 19:01 07PM 3 3 20 26"
        );
        assert_eq!(fmt(t, "%Q %E"), "%Q %E");
        assert_eq!(fmt(at(0, 0), "%j %a"), "001 Thu");
    }
}
