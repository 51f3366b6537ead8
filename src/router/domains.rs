//! Envoy's virtual host selection by name, shared by the HTTP route table (domains against
//! the authority) and the generic proxy's (hosts against the RPC service): an exact name, then
//! the longest `*suffix`, then the longest `prefix*`, then `*`. A wildcard matches at least
//! one character. Compiled once with the table; a lookup is a few hash probes.

use std::collections::HashMap;

/// Names to virtual host indexes.
#[derive(Debug, Clone, Default)]
pub struct DomainTable {
    exact: HashMap<String, usize>,
    /// `*.foo.com` / `*-bar.foo.com` by suffix length, longest first.
    suffixes: Vec<(usize, HashMap<String, usize>)>,
    /// `foo.*` by prefix length, longest first.
    prefixes: Vec<(usize, HashMap<String, usize>)>,
    default: Option<usize>,
}

/// Why a name cannot be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainError {
    /// The name is already in the table (for `*`: a second default).
    Duplicate,
    /// The name is empty.
    Empty,
}

impl DomainTable {
    /// Add `name` (`*`, `*suffix`, `prefix*` or exact) for virtual host `idx`.
    pub fn insert(&mut self, name: &str, idx: usize) -> Result<(), DomainError> {
        let fresh = if name == "*" {
            self.default.replace(idx).is_none()
        } else if let Some(suffix) = name.strip_prefix('*') {
            insert_wildcard(&mut self.suffixes, suffix, idx)
        } else if let Some(prefix) = name.strip_suffix('*') {
            insert_wildcard(&mut self.prefixes, prefix, idx)
        } else if name.is_empty() {
            return Err(DomainError::Empty);
        } else {
            self.exact.insert(name.to_owned(), idx).is_none()
        };
        if fresh {
            Ok(())
        } else {
            Err(DomainError::Duplicate)
        }
    }

    /// The virtual host index for `name`, as given (callers normalise case if they need to).
    pub fn find(&self, name: &str) -> Option<usize> {
        if let Some(i) = self.exact.get(name) {
            return Some(*i);
        }
        // The `*` must match at least one character; a split inside a character finds nothing.
        let suffix = self.suffixes.iter().find_map(|(len, m)| {
            if *len >= name.len() {
                return None;
            }
            name.get(name.len() - len..).and_then(|s| m.get(s)).copied()
        });
        suffix
            .or_else(|| {
                self.prefixes.iter().find_map(|(len, m)| {
                    if *len >= name.len() {
                        return None;
                    }
                    name.get(..*len).and_then(|s| m.get(s)).copied()
                })
            })
            .or(self.default)
    }

    /// Whether only `*` (or nothing) is in the table: every name gets the default.
    pub fn only_default(&self) -> bool {
        self.exact.is_empty() && self.suffixes.is_empty() && self.prefixes.is_empty()
    }

    /// Release spare capacity once the table is built.
    pub fn shrink_to_fit(&mut self) {
        self.exact.shrink_to_fit();
        for (_, m) in self.suffixes.iter_mut().chain(self.prefixes.iter_mut()) {
            m.shrink_to_fit();
        }
    }

    /// The `*` virtual host, if any.
    pub fn wildcard(&self) -> Option<usize> {
        self.default
    }
}

fn insert_wildcard(list: &mut Vec<(usize, HashMap<String, usize>)>, key: &str, idx: usize) -> bool {
    let pos = match list.iter().position(|(len, _)| *len <= key.len()) {
        Some(p) if list[p].0 == key.len() => p,
        Some(p) => {
            list.insert(p, (key.len(), HashMap::new()));
            p
        }
        None => {
            list.push((key.len(), HashMap::new()));
            list.len() - 1
        }
    };
    list[pos].1.insert(key.to_string(), idx).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_longest_suffix_then_longest_prefix_then_default() {
        let mut t = DomainTable::default();
        for (i, d) in ["*", "*.com", "*.foo.com", "foo.*", "foo.bar.*", "a.foo.com"]
            .iter()
            .enumerate()
        {
            t.insert(d, i).unwrap();
        }
        assert_eq!(t.find("a.foo.com"), Some(5));
        assert_eq!(t.find("b.foo.com"), Some(2));
        assert_eq!(t.find("b.com"), Some(1));
        assert_eq!(t.find("foo.bar.x"), Some(4));
        assert_eq!(t.find("foo.x"), Some(3));
        // A wildcard matches at least one character.
        assert_eq!(t.find(".com"), Some(0));
        assert_eq!(t.find("x"), Some(0));
        assert_eq!(t.insert("*.com", 9), Err(DomainError::Duplicate));
        assert_eq!(t.insert("*", 9), Err(DomainError::Duplicate));
        assert_eq!(t.insert("", 9), Err(DomainError::Empty));
    }

    #[test]
    fn multibyte_names_never_split_a_character() {
        let mut t = DomainTable::default();
        t.insert("*ü", 0).unwrap();
        t.insert("é*", 1).unwrap();
        assert_eq!(t.find("aü"), Some(0));
        assert_eq!(t.find("éa"), Some(1));
        assert_eq!(t.find("üü"), Some(0));
        assert_eq!(t.find("zz"), None);
    }
}
