//! Text forms of protobuf's well-known scalar types in the JSON mapping, as protobuf's C++
//! printer writes them.

/// The shortest text that reads back as `x`, as C++ prints it: plain notation, except for very
/// large or small magnitudes (`1e+21`, `1e-07`).
pub(crate) fn f64_text(x: f64) -> String {
    let a = x.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        let t = format!("{x:e}");
        match t.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', e),
                };
                format!("{m}e{sign}{digits:0>2}")
            }
            None => t,
        }
    } else {
        format!("{x}")
    }
}

/// `Duration` in its JSON form: `5s`, `1.500s`, `0.000001s`, `1.000000001s`.
pub(crate) fn duration(seconds: i64, nanos: i32) -> String {
    let negative = seconds < 0 || nanos < 0;
    let (s, n) = (seconds.unsigned_abs(), nanos.unsigned_abs());
    format!("{}{s}{}s", if negative { "-" } else { "" }, fraction(n))
}

/// `.fff`, `.ffffff` or `.fffffffff`: as few groups of three digits as the value needs.
fn fraction(nanos: u32) -> String {
    if nanos == 0 {
        String::new()
    } else if nanos.is_multiple_of(1_000_000) {
        format!(".{:03}", nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        format!(".{:06}", nanos / 1_000)
    } else {
        format!(".{nanos:09}")
    }
}

/// `Timestamp` in RFC 3339, UTC: `2026-11-25T18:55:38.998Z`.
pub(crate) fn timestamp(seconds: i64, nanos: i32) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        fraction(nanos.max(0) as u32)
    )
}

/// Year, month, day of a day count from 1970-01-01 (the proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `lower_snake` to `lowerCamel`, as `FieldMask` paths are written in JSON.
pub(crate) fn camel_case(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut up = false;
    for c in path.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Standard base64 with padding.
pub(crate) fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &x)| acc | (u32::from(x) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_protobuf_prints_them() {
        assert_eq!(duration(5, 0), "5s");
        assert_eq!(duration(1, 500_000_000), "1.500s");
        assert_eq!(duration(0, 1_000), "0.000001s");
        assert_eq!(duration(1, 1), "1.000000001s");
        assert_eq!(duration(0, 0), "0s");
        assert_eq!(duration(-1, -500_000_000), "-1.500s");
    }

    #[test]
    fn timestamps_in_rfc3339() {
        assert_eq!(timestamp(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            timestamp(1_795_632_938, 998_000_000),
            "2026-11-25T18:55:38.998Z"
        );
        assert_eq!(timestamp(951_782_400, 0), "2000-02-29T00:00:00Z");
        assert_eq!(timestamp(-1, 0), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn doubles_as_cpp_prints_them() {
        assert_eq!(f64_text(1.0), "1");
        assert_eq!(f64_text(50.5), "50.5");
        assert_eq!(f64_text(0.1), "0.1");
        assert_eq!(f64_text(1e21), "1e+21");
        assert_eq!(f64_text(1e-7), "1e-07");
        assert_eq!(f64_text(-2.5e-10), "-2.5e-10");
    }

    #[test]
    fn base64_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0, 1, 2, 255]), "AAEC/w==");
        assert_eq!(base64(b"[redacted]"), "W3JlZGFjdGVkXQ==");
    }

    #[test]
    fn field_mask_paths_in_camel_case() {
        assert_eq!(
            camel_case("cluster.load_assignment"),
            "cluster.loadAssignment"
        );
        assert_eq!(camel_case("name"), "name");
    }
}
