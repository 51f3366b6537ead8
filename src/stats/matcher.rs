//! `stats_config.stats_matcher`: which stats exist. A rejected stat is never listed by
//! `/stats` or `/stats/prometheus` (Envoy gives it a null stat); tern still hands out a
//! handle, so the data path does not branch on it.

use super::StatsConfigError;
use envoy_types::pb::envoy::config::metrics::v3 as metrics_pb;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher_pb;

/// One `StringMatcher`.
#[derive(Debug)]
enum StringMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Regex(regex::Regex),
}

#[derive(Debug)]
struct Matcher {
    kind: StringMatch,
    ignore_case: bool,
}

impl Matcher {
    fn compile(m: &matcher_pb::StringMatcher, field: &str) -> Result<Self, StatsConfigError> {
        use matcher_pb::string_matcher::MatchPattern as P;
        let lower = |s: &str| {
            if m.ignore_case {
                s.to_ascii_lowercase()
            } else {
                s.to_owned()
            }
        };
        let kind = match &m.match_pattern {
            Some(P::Exact(s)) => StringMatch::Exact(lower(s)),
            Some(P::Prefix(s)) => StringMatch::Prefix(lower(s)),
            Some(P::Suffix(s)) => StringMatch::Suffix(lower(s)),
            Some(P::Contains(s)) => StringMatch::Contains(lower(s)),
            Some(P::SafeRegex(r)) => {
                StringMatch::Regex(regex::Regex::new(&format!("^(?:{})$", r.regex)).map_err(
                    |e| StatsConfigError::new(format!("{field}.safe_regex"), e.to_string()),
                )?)
            }
            Some(P::Custom(c)) => {
                return Err(StatsConfigError::new(
                    format!("{field}.custom"),
                    format!("custom string matcher {} is not supported", c.name),
                ));
            }
            None => {
                return Err(StatsConfigError::new(field, "a match pattern is required"));
            }
        };
        Ok(Self {
            kind,
            ignore_case: m.ignore_case,
        })
    }

    fn matches(&self, name: &str) -> bool {
        let lowered;
        let s = if self.ignore_case && !matches!(self.kind, StringMatch::Regex(_)) {
            lowered = name.to_ascii_lowercase();
            lowered.as_str()
        } else {
            name
        };
        match &self.kind {
            StringMatch::Exact(x) => s == x,
            StringMatch::Prefix(x) => s.starts_with(x.as_str()),
            StringMatch::Suffix(x) => s.ends_with(x.as_str()),
            StringMatch::Contains(x) => s.contains(x.as_str()),
            StringMatch::Regex(r) => r.is_match(s),
        }
    }
}

/// `StatsMatcher`: everything (unset), nothing (`reject_all`), only an inclusion list, or all
/// but an exclusion list. Matched against the full stat name.
#[derive(Debug, Default)]
pub struct StatsMatcher {
    mode: Mode,
}

#[derive(Debug, Default)]
enum Mode {
    #[default]
    All,
    None,
    Include(Vec<Matcher>),
    Exclude(Vec<Matcher>),
}

impl StatsMatcher {
    /// Compile `stats_config.stats_matcher`.
    pub fn from_proto(m: &metrics_pb::StatsMatcher) -> Result<Self, StatsConfigError> {
        use metrics_pb::stats_matcher::StatsMatcher as S;
        let list = |l: &matcher_pb::ListStringMatcher, field: &str| {
            l.patterns
                .iter()
                .enumerate()
                .map(|(i, p)| Matcher::compile(p, &format!("stats_matcher.{field}.patterns[{i}]")))
                .collect::<Result<Vec<_>, _>>()
        };
        let mode = match &m.stats_matcher {
            Some(S::RejectAll(true)) => Mode::None,
            Some(S::RejectAll(false)) | None => Mode::All,
            Some(S::InclusionList(l)) => Mode::Include(list(l, "inclusion_list")?),
            Some(S::ExclusionList(l)) => Mode::Exclude(list(l, "exclusion_list")?),
        };
        Ok(Self { mode })
    }

    /// Whether the stat with this full name exists.
    pub fn accepts(&self, name: &str) -> bool {
        match &self.mode {
            Mode::All => true,
            Mode::None => false,
            Mode::Include(l) => l.iter().any(|m| m.matches(name)),
            Mode::Exclude(l) => !l.iter().any(|m| m.matches(name)),
        }
    }

    /// Whether every stat exists (no matcher), so that nothing needs checking.
    pub fn accepts_all(&self) -> bool {
        matches!(self.mode, Mode::All)
    }
}
