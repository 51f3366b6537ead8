//! Tag extraction: Envoy's default tag extractors and the bootstrap's
//! `stats_config.stats_tags`, which turn `cluster.foo.upstream_rq_200` into the tag-extracted
//! name `cluster.upstream_rq` with tags `envoy.cluster_name=foo`, `envoy.response_code=200`
//! (what Prometheus sees as labels). Every extractor runs on the full name; the characters of
//! each match's first group are removed at the end. Extractors without a leading literal
//! token run first, then those whose first token matches the name's, each group in
//! configuration order (Envoy's defaults before `stats_tags`).

use super::StatsConfigError;
use envoy_types::pb::envoy::config::metrics::v3 as metrics_pb;
use std::collections::HashMap;

/// One tag of a stat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// Tag name (`envoy.cluster_name`, or the `tag_name` of a `stats_tags` entry).
    pub name: String,
    /// The extracted value.
    pub value: String,
}

mod defaults;
#[cfg(test)]
mod tests;

use defaults::{Pattern, defaults};
use std::sync::OnceLock;

enum Kind {
    /// Envoy's own regexes (RE2): the first group is removed and must not be empty; the
    /// value is the second group, or the first when the second is empty.
    Re2 {
        /// Compiled on first use: most of Envoy's ~60 default regexes serve stats tern never
        /// has (mongo, dynamodb, ...), and each compiled one holds tens of KiB.
        pattern: &'static str,
        re: OnceLock<regex::Regex>,
        substr: &'static str,
        negative: Option<&'static str>,
    },
    /// A `stats_tags` regex (ECMAScript in Envoy, so lookarounds are allowed): the first
    /// group is removed and the second, when the regex has one, is the value.
    Custom(fancy_regex::Regex),
    Tokens {
        tokens: Vec<&'static str>,
        value_at: usize,
    },
    Fixed(String),
}

struct Extractor {
    name: String,
    kind: Kind,
}

impl std::fmt::Debug for Extractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// The tag extractors in force: Envoy's defaults (unless `use_all_default_tags: false`) and
/// `stats_tags`.
#[derive(Debug)]
pub struct TagProducer {
    without_prefix: Vec<Extractor>,
    by_prefix: HashMap<String, Vec<Extractor>>,
}

impl Default for TagProducer {
    fn default() -> Self {
        let mut p = TagProducer {
            without_prefix: Vec::new(),
            by_prefix: HashMap::new(),
        };
        for (name, pattern) in defaults() {
            p.add(default_extractor(name, pattern));
        }
        p
    }
}

fn default_extractor(name: &str, pattern: Pattern) -> (Extractor, String) {
    match pattern {
        Pattern::Re2(re, substr, negative) => {
            let prefix = regex_prefix(re);
            (
                Extractor {
                    name: name.to_owned(),
                    kind: Kind::Re2 {
                        pattern: re,
                        re: OnceLock::new(),
                        substr,
                        negative,
                    },
                },
                prefix,
            )
        }
        Pattern::Tokens(t) => {
            let tokens: Vec<&'static str> = t.split('.').collect();
            let value_at = tokens.iter().position(|t| *t == "$").unwrap_or(0);
            let prefix = match tokens.first() {
                Some(f) if !matches!(*f, "$" | "*" | "**") => (*f).to_owned(),
                _ => String::new(),
            };
            (
                Extractor {
                    name: name.to_owned(),
                    kind: Kind::Tokens { tokens, value_at },
                },
                prefix,
            )
        }
    }
}

/// The literal first token a regex requires (`^cluster\.` gives `cluster`), as Envoy uses
/// to run an extractor only on names that start with it; empty if none.
fn regex_prefix(re: &str) -> String {
    let Some(rest) = re.strip_prefix('^') else {
        return String::new();
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    if end == 0 {
        return String::new();
    }
    let after = &rest[end..];
    if after.starts_with(r"\.") || after.starts_with(r"(?=\.)") || after == "$" {
        rest[..end].to_owned()
    } else {
        String::new()
    }
}

impl TagProducer {
    fn add(&mut self, (e, prefix): (Extractor, String)) {
        if prefix.is_empty() {
            self.without_prefix.push(e);
        } else {
            self.by_prefix.entry(prefix).or_default().push(e);
        }
    }

    /// Compile `stats_config.stats_tags` and `use_all_default_tags` (default true) as Envoy
    /// does: a tag name may appear once; a `stats_tags` entry with neither `regex` nor
    /// `fixed_value` takes the default extractors of that name.
    pub fn from_proto(c: &metrics_pb::StatsConfig) -> Result<Self, StatsConfigError> {
        let mut p = TagProducer {
            without_prefix: Vec::new(),
            by_prefix: HashMap::new(),
        };
        let mut names = std::collections::HashSet::new();
        if c.use_all_default_tags.as_ref().is_none_or(|b| b.value) {
            for (name, pattern) in defaults() {
                names.insert(name.to_owned());
                p.add(default_extractor(name, pattern));
            }
        }
        use metrics_pb::tag_specifier::TagValue;
        for (i, t) in c.stats_tags.iter().enumerate() {
            let field = format!("stats_tags[{i}]");
            if t.tag_name.is_empty() {
                return Err(StatsConfigError::new(field, "tag_name cannot be empty"));
            }
            if !names.insert(t.tag_name.clone()) {
                return Err(StatsConfigError::new(
                    field,
                    format!("Tag name '{}' specified twice.", t.tag_name),
                ));
            }
            match &t.tag_value {
                Some(TagValue::FixedValue(v)) => p.add((
                    Extractor {
                        name: t.tag_name.clone(),
                        kind: Kind::Fixed(v.clone()),
                    },
                    String::new(),
                )),
                Some(TagValue::Regex(re)) if !re.is_empty() => {
                    let compiled = fancy_regex::Regex::new(re).map_err(|e| {
                        StatsConfigError::new(
                            format!("{field}.regex"),
                            format!("Invalid regex '{re}': {e}"),
                        )
                    })?;
                    p.add((
                        Extractor {
                            name: t.tag_name.clone(),
                            kind: Kind::Custom(compiled),
                        },
                        regex_prefix(re),
                    ));
                }
                _ => {
                    let matching: Vec<_> = defaults()
                        .into_iter()
                        .filter(|(n, _)| *n == t.tag_name)
                        .collect();
                    if matching.is_empty() {
                        return Err(StatsConfigError::new(
                            field,
                            format!(
                                "No regex specified for tag specifier and no default regex for name: '{}'",
                                t.tag_name
                            ),
                        ));
                    }
                    for (name, pattern) in matching {
                        p.add(default_extractor(name, pattern));
                    }
                }
            }
        }
        Ok(p)
    }

    /// The tag-extracted name of a stat and its tags, in Envoy's order.
    pub fn produce(&self, name: &str) -> (String, Vec<Tag>) {
        let mut tags = Vec::new();
        let mut remove: Vec<(usize, usize)> = Vec::new();
        let tokens: Vec<&str> = name.split('.').collect();
        let first = tokens.first().copied().unwrap_or("");
        let prefixed = self.by_prefix.get(first).map(Vec::as_slice).unwrap_or(&[]);
        for e in self.without_prefix.iter().chain(prefixed) {
            if let Some((value, range)) = e.extract(name, &tokens) {
                tags.push(Tag {
                    name: e.name.clone(),
                    value,
                });
                if let Some(r) = range {
                    remove.push(r);
                }
            }
        }
        if remove.is_empty() {
            return (name.to_owned(), tags);
        }
        let mut out = String::with_capacity(name.len());
        for (i, ch) in name.char_indices() {
            if !remove.iter().any(|(s, e)| i >= *s && i < *e) {
                out.push(ch);
            }
        }
        // Envoy keeps names as dot-separated tokens: an empty token (a dot left at either end,
        // or two in a row) disappears.
        if out.starts_with('.') || out.ends_with('.') || out.contains("..") {
            out = out
                .split('.')
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join(".");
        }
        (out, tags)
    }
}

impl Extractor {
    /// The tag value and the byte range to remove from the name.
    fn extract(&self, name: &str, tokens: &[&str]) -> Option<(String, Option<(usize, usize)>)> {
        match &self.kind {
            Kind::Fixed(v) => Some((v.clone(), None)),
            Kind::Re2 {
                pattern,
                re,
                substr,
                negative,
            } => {
                if !substr.is_empty() && !name.contains(substr) {
                    return None;
                }
                let re = re.get_or_init(|| {
                    regex::Regex::new(pattern).expect("Envoy's default tag regexes compile")
                });
                let caps = re.captures(name)?;
                let remove = caps.get(1).filter(|m| !m.as_str().is_empty())?;
                let value = caps
                    .get(2)
                    .filter(|m| !m.as_str().is_empty())
                    .unwrap_or(remove)
                    .as_str();
                if negative.is_some_and(|n| n == value) {
                    return None;
                }
                Some((value.to_owned(), Some((remove.start(), remove.end()))))
            }
            Kind::Custom(re) => {
                let caps = re.captures(name).ok()??;
                let remove = caps.get(1)?;
                let value = if caps.len() > 2 {
                    caps.get(2).map_or("", |m| m.as_str())
                } else {
                    remove.as_str()
                };
                Some((value.to_owned(), Some((remove.start(), remove.end()))))
            }
            Kind::Tokens {
                tokens: pattern,
                value_at,
            } => {
                let (index, start) = match_tokens(pattern, *value_at, tokens, 0, 0, 0)??;
                let value = tokens[index];
                let mut start = start;
                let mut end = start + value.len();
                if index + 1 < tokens.len() {
                    end += 1; // the dot after the value
                } else {
                    start = start.saturating_sub(1); // the dot before a last token
                }
                Some((value.to_owned(), Some((start, end))))
            }
        }
    }
}

/// Match `pattern` against `input` from the given positions. `None`: no match; otherwise the
/// index of the input token at `$` and its byte offset, when `$` lies in the matched part.
fn match_tokens(
    pattern: &[&str],
    value_at: usize,
    input: &[&str],
    mut i: usize,
    mut p: usize,
    mut offset: usize,
) -> Option<Option<(usize, usize)>> {
    let mut found = None;
    while i < input.len() && p < pattern.len() {
        if p == value_at {
            found = Some((i, offset));
        } else if pattern[p] == "**" {
            if p == pattern.len() - 1 {
                return Some(found);
            }
            // Match the rest of the pattern at every later position.
            for j in i..input.len() {
                if let Some(m) = match_tokens(pattern, value_at, input, j, p + 1, offset) {
                    return Some(found.or(m));
                }
                offset += input[j].len() + 1;
            }
            return None;
        } else if pattern[p] != "*" && pattern[p] != input[i] {
            return None;
        }
        offset += input[i].len() + 1;
        i += 1;
        p += 1;
    }
    (i == input.len() && p == pattern.len()).then_some(found)
}
