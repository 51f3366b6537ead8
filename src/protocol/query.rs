//! Query strings as Envoy's admin reads them: `&`-separated `key=value` or bare `key`, `%XX`
//! sequences decoded in keys and values (a malformed one is kept as it is), `+` kept.

/// The parameters of `query` (with or without its leading `?`), in order, decoded.
pub fn parse(query: &str) -> Vec<(String, String)> {
    let query = query.strip_prefix('?').unwrap_or(query);
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Decode the `%XX` sequences of `s`; anything else, `+` included, stays.
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_as_envoy_reads_them() {
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            parse("?usedonly&filter=a%7Cb&x=1+2&bad=%zz&end=%4&k%3D=v"),
            vec![
                pair("usedonly", ""),
                pair("filter", "a|b"),
                pair("x", "1+2"),
                pair("bad", "%zz"),
                pair("end", "%4"),
                pair("k=", "v"),
            ]
        );
        assert!(parse("").is_empty());
    }
}
