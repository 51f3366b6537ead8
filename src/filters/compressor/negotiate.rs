//! `Accept-Encoding` negotiation among the compressor filters of one chain, as Envoy decides it
//! once per stream: the client's codings with their q-values against the encodings of the
//! filters that accept the response's content type.

use super::library::Encoding;

/// Which `header_*` stat the decision counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderStat {
    /// A coding a filter provides won (`header_compressor_used` /
    /// `header_compressor_overshadowed`).
    Valid,
    /// `identity` won (`header_identity`).
    Identity,
    /// `*` won: the first registered encoding (`header_wildcard`).
    Wildcard,
    /// Nothing acceptable, or only q=0 (`header_not_valid`).
    NotValid,
}

/// The stream's encoding decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The chosen encoding; `None` is identity.
    pub encoding: Option<Encoding>,
    /// The stat it counts.
    pub stat: HeaderStat,
}

/// A compressor filter as the decision sees it: its encoding, whether it accepts the
/// response's content type, and `choose_first`.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// The filter's encoding.
    pub encoding: Encoding,
    /// The filter accepts the response's content type (or the response has none).
    pub allowed: bool,
    /// `choose_first`.
    pub choose_first: bool,
}

/// Choose the response encoding for `accept` (the request's `Accept-Encoding`, joined) among
/// `candidates` in filter-chain order:
/// - each comma-separated coding has q=1 unless a `q=` parameter says otherwise; a coding
///   whose q-value does not parse is skipped;
/// - a coding with q=0 is taken out of the candidates (so `gzip;q=0, *` never picks gzip);
/// - the coding with the highest q wins, the first one on ties, except that the encoding of
///   the last filter with `choose_first` wins a tie;
/// - `identity` and `*` are always acceptable; `*` means the first registered encoding.
pub fn choose(accept: &str, candidates: impl IntoIterator<Item = Candidate>) -> Decision {
    // Registration order of each encoding (the first filter of an encoding registers it).
    let mut registered: [Option<usize>; 3] = [None; 3];
    let mut count = 0;
    let mut first_choice = None;
    for c in candidates {
        if c.choose_first {
            first_choice = Some(c.encoding);
        }
        if !c.allowed {
            continue;
        }
        let slot = &mut registered[c.encoding.index()];
        if slot.is_none() {
            *slot = Some(count);
            count += 1;
        }
    }
    let not_valid = Decision {
        encoding: None,
        stat: HeaderStat::NotValid,
    };
    let mut any = false;
    // (token, q) of the best so far; identity at q=0 to start.
    let mut best: (&str, f32) = ("identity", 0.0);
    // Two passes over the header: q=0 codings leave the candidates before any is compared.
    for (name, q) in codings(accept) {
        any = true;
        if q == 0.0
            && let Some(e) = Encoding::from_token(name)
        {
            registered[e.index()] = None;
        }
    }
    if !any || registered.iter().all(Option::is_none) {
        return not_valid;
    }
    for (name, q) in codings(accept) {
        let acceptable = name == "identity"
            || name == "*"
            || Encoding::from_token(name).is_some_and(|e| registered[e.index()].is_some());
        let tie_wins = q == best.1 && first_choice.is_some_and(|e| e.token() == name);
        if acceptable && (q > best.1 || tie_wins) {
            best = (name, q);
        }
    }
    if best.1 == 0.0 {
        return not_valid;
    }
    match best.0 {
        "identity" => Decision {
            encoding: None,
            stat: HeaderStat::Identity,
        },
        "*" => {
            let first = [Encoding::Gzip, Encoding::Brotli, Encoding::Zstd]
                .into_iter()
                .filter_map(|e| registered[e.index()].map(|r| (r, e)))
                .min_by_key(|(r, _)| *r)
                .map(|(_, e)| e);
            Decision {
                encoding: first,
                stat: HeaderStat::Wildcard,
            }
        }
        name => Decision {
            encoding: Encoding::from_token(name),
            stat: HeaderStat::Valid,
        },
    }
}

/// The codings of an `Accept-Encoding` value with their q-values, in order. Empty items are
/// skipped, and so is a coding whose `q=` does not parse as a number.
fn codings(accept: &str) -> impl Iterator<Item = (&str, f32)> {
    accept
        .split(',')
        .filter(|t| !t.is_empty())
        .filter_map(|token| {
            let (name, params) = match token.split_once(';') {
                Some((n, p)) => (n, Some(p)),
                None => (token, None),
            };
            let mut q = 1.0f32;
            if let Some(params) = params
                && let Some((key, value)) = params.split_once('=')
                && key.trim().eq_ignore_ascii_case("q")
            {
                q = value.trim().parse().ok()?;
            }
            Some((name.trim(), q))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(list: &[(Encoding, bool)]) -> Vec<Candidate> {
        list.iter()
            .map(|&(encoding, choose_first)| Candidate {
                encoding,
                allowed: true,
                choose_first,
            })
            .collect()
    }

    fn pick(accept: &str, c: &[Candidate]) -> (Option<&'static str>, HeaderStat) {
        let d = choose(accept, c.iter().copied());
        (d.encoding.map(Encoding::token), d.stat)
    }

    use Encoding::{Brotli as B, Gzip as G, Zstd as Z};
    use HeaderStat::*;

    /// The cases below were checked against Envoy 1.40 with brotli, zstd and gzip filters in
    /// that order.
    #[test]
    fn q_values_order_and_ties() {
        let c = chain(&[(B, false), (Z, false), (G, false)]);
        assert_eq!(pick("gzip", &c), (Some("gzip"), Valid));
        assert_eq!(pick("gzip, br, zstd", &c), (Some("gzip"), Valid));
        assert_eq!(pick("zstd, gzip, br", &c), (Some("zstd"), Valid));
        assert_eq!(pick("gzip;q=0.5, br;q=0.4", &c), (Some("gzip"), Valid));
        assert_eq!(pick("gzip;q=0.5,br;q=0.6", &c), (Some("br"), Valid));
        assert_eq!(pick("gzip; q=1.0", &c), (Some("gzip"), Valid));
        assert_eq!(pick("gzip;level=1", &c), (Some("gzip"), Valid));
        assert_eq!(pick("gzip;q=2", &c), (Some("gzip"), Valid));
        assert_eq!(pick("gzip,br", &c), (Some("gzip"), Valid));
    }

    #[test]
    fn identity_wildcard_and_invalid() {
        let c = chain(&[(B, false), (Z, false), (G, false)]);
        assert_eq!(pick("*", &c), (Some("br"), Wildcard));
        assert_eq!(pick("*;q=0.5, zstd;q=0.5", &c), (Some("br"), Wildcard));
        assert_eq!(pick("gzip;q=0, *", &c), (Some("br"), Wildcard));
        assert_eq!(pick("br;q=0, *", &c), (Some("zstd"), Wildcard));
        assert_eq!(pick("identity", &c), (None, Identity));
        assert_eq!(pick("gzip;q=0.5, identity", &c), (None, Identity));
        assert_eq!(pick("deflate", &c), (None, NotValid));
        assert_eq!(pick("gzip;q=0", &c), (None, NotValid));
        assert_eq!(pick("gzip;q=abc", &c), (None, NotValid));
        assert_eq!(pick("", &c), (None, NotValid));
        // Envoy compares codings case-sensitively.
        assert_eq!(pick("GZIP", &c), (None, NotValid));
    }

    #[test]
    fn choose_first_wins_ties_only() {
        // zstd, gzip, brotli(choose_first), as checked against Envoy.
        let c = chain(&[(Z, false), (G, false), (B, true)]);
        assert_eq!(pick("gzip, br, zstd", &c), (Some("br"), Valid));
        assert_eq!(pick("gzip;q=0.5,br;q=0.5", &c), (Some("br"), Valid));
        assert_eq!(pick("gzip;q=0.6,br;q=0.5", &c), (Some("gzip"), Valid));
        assert_eq!(pick("identity, br", &c), (Some("br"), Valid));
        assert_eq!(pick("*, br", &c), (Some("br"), Valid));
        assert_eq!(pick("gzip, *", &c), (Some("gzip"), Valid));
        // `*` is the first registered encoding, not the choose_first one.
        assert_eq!(pick("*", &c), (Some("zstd"), Wildcard));
    }

    #[test]
    fn content_type_excludes_filters() {
        let mut c = chain(&[(G, false), (B, false)]);
        c[0].allowed = false;
        assert_eq!(pick("gzip;q=1, br;q=0.5", &c), (Some("br"), Valid));
        assert_eq!(pick("*", &c), (Some("br"), Wildcard));
        c[1].allowed = false;
        assert_eq!(pick("gzip, br", &c), (None, NotValid));
    }

    #[test]
    fn duplicates_register_once() {
        let c = chain(&[(G, false), (G, false), (Z, false)]);
        assert_eq!(pick("*", &c), (Some("gzip"), Wildcard));
        assert_eq!(pick("zstd", &c), (Some("zstd"), Valid));
    }
}
