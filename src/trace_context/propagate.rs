//! The trace context headers of Envoy's Zipkin (B3) and OpenTelemetry (W3C) tracers: read the
//! incoming context, make this hop's span, write its context for the upstream request. An
//! incoming context that does not parse is left untouched and nothing is added, as Envoy's
//! tracers do.

use http::{HeaderMap, HeaderValue};
use std::fmt::Write;

/// A trace id: 64 or 128 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TraceId {
    high: u64,
    low: u64,
    wide: bool,
}

impl TraceId {
    fn hex(&self) -> String {
        if self.wide {
            format!("{:016x}{:016x}", self.high, self.low)
        } else {
            format!("{:016x}", self.low)
        }
    }

    fn parse(s: &[u8]) -> Option<TraceId> {
        match s.len() {
            16 => Some(TraceId {
                high: 0,
                low: hex64(s)?,
                wide: false,
            }),
            32 => Some(TraceId {
                high: hex64(&s[..16])?,
                low: hex64(&s[16..])?,
                wide: true,
            }),
            _ => None,
        }
    }
}

fn hex64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 || !s.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
}

fn span_id(s: &[u8]) -> Option<u64> {
    (s.len() == 16).then(|| hex64(s)).flatten()
}

/// A random non-zero id.
fn new_id() -> u64 {
    loop {
        let v: u64 = rand::random();
        if v != 0 {
            return v;
        }
    }
}

/// An incoming B3 context.
struct B3 {
    trace: TraceId,
    span: u64,
    parent: Option<u64>,
}

/// The single `b3` header: `{trace}-{span}[-{sampling}[-{parent}]]`, or only `{sampling}`.
/// `Err` when it does not parse.
#[allow(clippy::type_complexity)]
fn parse_b3_single(v: &[u8]) -> Result<(Option<B3>, Option<bool>), ()> {
    let sampling = |s: &[u8]| match s {
        b"1" | b"d" => Ok(true),
        b"0" => Ok(false),
        _ => Err(()),
    };
    let parts: Vec<&[u8]> = v.split(|b| *b == b'-').collect();
    match parts.as_slice() {
        [s] => Ok((None, Some(sampling(s)?))),
        [t, s, rest @ ..] if rest.len() <= 2 => {
            let trace = TraceId::parse(t).ok_or(())?;
            let span = span_id(s).ok_or(())?;
            let sampled = rest.first().map(|s| sampling(s)).transpose()?;
            let parent = rest.get(1).map(|p| span_id(p).ok_or(())).transpose()?;
            Ok((
                Some(B3 {
                    trace,
                    span,
                    parent,
                }),
                sampled,
            ))
        }
        _ => Err(()),
    }
}

fn set(headers: &mut HeaderMap, name: &'static str, v: String) {
    if let Ok(v) = HeaderValue::from_str(&v) {
        headers.insert(name, v);
    }
}

/// Envoy's Zipkin tracer: this hop's span from the incoming B3 context (a child span, or the
/// client's own span when `shared`), or a new root; its context goes upstream in the form it
/// came in. Returns the trace id, or `None` when an incoming context did not parse.
pub(super) fn zipkin(
    headers: &mut HeaderMap,
    traced: bool,
    trace_id_128bit: bool,
    shared: bool,
) -> Option<String> {
    let (incoming, sampled, single) = match headers.get("b3") {
        Some(v) => {
            let (ctx, sampled) = parse_b3_single(v.as_bytes()).ok()?;
            (ctx, sampled, true)
        }
        None => {
            let sampled = headers
                .get("x-b3-sampled")
                .map(|v| v.as_bytes() == b"1" || v.as_bytes().eq_ignore_ascii_case(b"true"));
            let ctx = match (headers.get("x-b3-traceid"), headers.get("x-b3-spanid")) {
                (Some(t), Some(s)) => {
                    let trace = TraceId::parse(t.as_bytes())?;
                    let span = span_id(s.as_bytes())?;
                    let parent = match headers.get("x-b3-parentspanid") {
                        Some(p) => Some(span_id(p.as_bytes())?),
                        None => None,
                    };
                    Some(B3 {
                        trace,
                        span,
                        parent,
                    })
                }
                _ => None,
            };
            (ctx, sampled, false)
        }
    };
    let sampled = sampled.unwrap_or(traced);
    let span = match incoming {
        Some(c) if shared => c,
        Some(c) => B3 {
            trace: c.trace,
            span: new_id(),
            parent: Some(c.span),
        },
        None => {
            let id = new_id();
            B3 {
                trace: TraceId {
                    high: if trace_id_128bit { new_id() } else { 0 },
                    low: id,
                    wide: trace_id_128bit,
                },
                span: id,
                parent: None,
            }
        }
    };
    let trace = span.trace.hex();
    let flag = if sampled { "1" } else { "0" };
    if single {
        let mut v = format!("{trace}-{:016x}-{flag}", span.span);
        if let Some(p) = span.parent {
            let _ = write!(v, "-{p:016x}");
        }
        set(headers, "b3", v);
    } else {
        set(headers, "x-b3-traceid", trace.clone());
        set(headers, "x-b3-spanid", format!("{:016x}", span.span));
        if let Some(p) = span.parent {
            set(headers, "x-b3-parentspanid", format!("{p:016x}"));
        }
        headers.insert("x-b3-sampled", HeaderValue::from_static(flag));
    }
    Some(trace)
}

/// A W3C `traceparent`: `{version}-{trace id}-{parent id}-{flags}`; `None` when invalid
/// (version `ff`, all-zero ids, wrong lengths, non-hex).
fn parse_traceparent(v: &[u8]) -> Option<(String, bool)> {
    let s = std::str::from_utf8(v).ok()?;
    let mut parts = s.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(version, 2) || version.eq_ignore_ascii_case("ff") {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if !hex(trace, 32) || !hex(parent, 16) || !hex(flags, 2) {
        return None;
    }
    if trace.bytes().all(|b| b == b'0') || parent.bytes().all(|b| b == b'0') {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((trace.to_ascii_lowercase(), flags & 1 == 1))
}

/// Envoy's OpenTelemetry tracer: the same trace id with a new span id (or a new trace), the
/// parent's sampled flag (or the tracing decision), `tracestate` kept (an empty one when there
/// was none, as Envoy sends). Returns the trace id, or `None` for an invalid `traceparent`.
pub(super) fn w3c(headers: &mut HeaderMap, traced: bool) -> Option<String> {
    let (trace, sampled) = match headers.get("traceparent") {
        Some(v) => parse_traceparent(v.as_bytes())?,
        None => (format!("{:016x}{:016x}", new_id(), new_id()), traced),
    };
    let flags = if sampled { "01" } else { "00" };
    set(
        headers,
        "traceparent",
        format!("00-{trace}-{:016x}-{flags}", new_id()),
    );
    if !headers.contains_key("tracestate") {
        headers.insert("tracestate", HeaderValue::from_static(""));
    }
    Some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b3_single_forms() {
        assert!(matches!(parse_b3_single(b"1"), Ok((None, Some(true)))));
        assert!(matches!(parse_b3_single(b"d"), Ok((None, Some(true)))));
        assert!(matches!(parse_b3_single(b"0"), Ok((None, Some(false)))));
        let (c, s) = parse_b3_single(
            b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
        )
        .unwrap();
        let c = c.unwrap();
        assert_eq!(c.trace.hex(), "80f198ee56343ba864fe8b2a57d3eff7");
        assert_eq!(c.span, 0xe457b5a2e4d86bd1);
        assert_eq!(c.parent, Some(0x05e3ac9a4f6e3b90));
        assert_eq!(s, Some(true));
        assert!(matches!(
            parse_b3_single(b"80f198ee56343ba8-e457b5a2e4d86bd1"),
            Ok((Some(_), None))
        ));
        for bad in [
            &b"bad-x"[..],
            b"",
            b"2",
            b"80f198ee56343ba8-e457-1",
            b"a-b-c-d-e",
        ] {
            assert!(
                parse_b3_single(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn traceparent_validation() {
        assert_eq!(
            parse_traceparent(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            Some(("0af7651916cd43dd8448eb211c80319c".into(), true))
        );
        assert_eq!(
            parse_traceparent(b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-02"),
            Some(("0af7651916cd43dd8448eb211c80319c".into(), false))
        );
        for bad in [
            &b"garbage"[..],
            b"00-00000000000000000000000000000000-b7ad6b7169203331-01",
            b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            b"00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",
        ] {
            assert_eq!(
                parse_traceparent(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
