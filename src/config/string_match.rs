//! `envoy.type.matcher.v3.StringMatcher`, compiled once: shared by the router's matchers and
//! the HTTP filters that match strings (the compressor's `content_type_matcher`).

use super::{ConfigError, Within};
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher_pb;
use regex::Regex;

/// Compile a regex that must match the whole input (RE2 `FullMatch`, as Envoy's `safe_regex`).
pub(crate) fn full_regex(re: &matcher_pb::RegexMatcher) -> Result<Regex, ConfigError> {
    Regex::new(&format!("^(?:{})$", re.regex))
        .map_err(|e| ConfigError::new("regex", format!("invalid regex {:?}: {e}", re.regex)))
}

pub(crate) fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

fn contains_ignore_case(s: &str, needle: &str) -> bool {
    let (s, n) = (s.as_bytes(), needle.as_bytes());
    n.is_empty() || s.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// `envoy.type.matcher.v3.StringMatcher`.
#[derive(Debug, Clone)]
pub enum StringMatch {
    /// `exact`.
    Exact(String, bool),
    /// `prefix`.
    Prefix(String, bool),
    /// `suffix`.
    Suffix(String, bool),
    /// `contains`.
    Contains(String, bool),
    /// `safe_regex` (full match; `ignore_case` does not apply, as in Envoy).
    Regex(Regex),
}

impl StringMatch {
    /// Compile a `StringMatcher`.
    pub fn compile(m: &matcher_pb::StringMatcher) -> Result<Self, ConfigError> {
        use matcher_pb::string_matcher::MatchPattern as P;
        let ic = m.ignore_case;
        let non_empty = |field: &str, s: &String| {
            if s.is_empty() {
                Err(ConfigError::new(field, "must not be empty"))
            } else {
                Ok(s.clone())
            }
        };
        Ok(match &m.match_pattern {
            Some(P::Exact(s)) => StringMatch::Exact(s.clone(), ic),
            Some(P::Prefix(s)) => StringMatch::Prefix(non_empty("prefix", s)?, ic),
            Some(P::Suffix(s)) => StringMatch::Suffix(non_empty("suffix", s)?, ic),
            Some(P::Contains(s)) => StringMatch::Contains(non_empty("contains", s)?, ic),
            Some(P::SafeRegex(re)) => StringMatch::Regex(full_regex(re).within("safe_regex")?),
            Some(P::Custom(c)) => {
                return Err(ConfigError::new(
                    "custom",
                    format!("custom string matcher {:?} is not supported", c.name),
                ));
            }
            None => return Err(ConfigError::new("match_pattern", "is required")),
        })
    }

    /// Does `s` match?
    pub fn matches(&self, s: &str) -> bool {
        match self {
            StringMatch::Exact(p, false) => s == p,
            StringMatch::Exact(p, true) => s.eq_ignore_ascii_case(p),
            StringMatch::Prefix(p, false) => s.starts_with(p.as_str()),
            StringMatch::Prefix(p, true) => starts_with_ignore_case(s, p),
            StringMatch::Suffix(p, false) => s.ends_with(p.as_str()),
            StringMatch::Suffix(p, true) => ends_with_ignore_case(s, p),
            StringMatch::Contains(p, false) => s.contains(p.as_str()),
            StringMatch::Contains(p, true) => contains_ignore_case(s, p),
            StringMatch::Regex(re) => re.is_match(s),
        }
    }
}
