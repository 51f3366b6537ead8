use std::fmt;

/// A configuration error: where it is (a resource and a field path) and why. Its `Display` is
/// what an operator reads in a start-up failure or in a NACK's `error_detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Path of the offending field, e.g. `static_resources.clusters[0].load_assignment`.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    /// A new error at `path`.
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// Prefix the path with the enclosing field or resource.
    #[must_use]
    pub fn within(mut self, outer: impl fmt::Display) -> Self {
        let outer = outer.to_string();
        self.path = if self.path.is_empty() {
            outer
        } else if self.path.starts_with('[') {
            format!("{outer}{}", self.path)
        } else {
            format!("{outer}.{}", self.path)
        };
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Shorthand to attach a path to a `Result`.
pub trait Within<T> {
    /// Prefix the error path with `outer`.
    fn within(self, outer: impl fmt::Display) -> Result<T, ConfigError>;
}

impl<T> Within<T> for Result<T, ConfigError> {
    fn within(self, outer: impl fmt::Display) -> Result<T, ConfigError> {
        self.map_err(|e| e.within(outer))
    }
}
