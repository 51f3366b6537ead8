//! Logging: set up from `-l`, `--component-log-level`, `--log-format` and `--log-path`, and
//! changed at run time by the admin's `/logging` with Envoy's logger names.
//!
//! Envoy has named loggers (`upstream`, `http`, `router`, …); tern logs by module. Each Envoy
//! name maps to a module target (`options::COMPONENTS`); a level set on a name applies to its
//! target, and the listing shows every name with the level last set on it.

use super::ServerError;
use super::options::{self, COMPONENTS, Options};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

type Reload = Box<dyn Fn(tracing_subscriber::EnvFilter) -> Result<(), String> + Send + Sync>;

/// The levels in force and how to apply new ones.
struct State {
    /// Envoy logger name → Envoy level name, in `COMPONENTS` order.
    names: Vec<(&'static str, &'static str)>,
    /// Module target → tracing level (the last level set through any name mapping to it).
    targets: BTreeMap<&'static str, &'static str>,
    reload: Reload,
}

static STATE: OnceLock<Mutex<State>> = OnceLock::new();

/// Envoy's spelling of a level (`warn` → `warning`), or `None` if it is not a level.
fn envoy_level(level: &str) -> Option<&'static str> {
    Some(match level {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warning" | "warn" => "warning",
        "error" => "error",
        "critical" => "critical",
        "off" => "off",
        _ => return None,
    })
}

/// Set up logging from `-l`, `--component-log-level`, `--log-format` and `--log-path`.
pub fn init_logging(opts: &Options) -> Result<(), ServerError> {
    let directives = options::log_directives(opts).map_err(ServerError::Usage)?;
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .map_err(|e| ServerError::Usage(e.to_string()))?;
    let json = opts
        .log_format
        .as_deref()
        .is_some_and(|f| f.trim_start().starts_with('{'));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(true);
    let writer: Box<dyn Fn() -> Box<dyn std::io::Write> + Send + Sync> = match &opts.log_path {
        Some(p) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?;
            let file = Arc::new(Mutex::new(file));
            Box::new(move || Box::new(SharedFile(file.clone())) as Box<dyn std::io::Write>)
        }
        None => Box::new(|| Box::new(std::io::stderr()) as Box<dyn std::io::Write>),
    };
    let (res, reload): (_, Reload) = if json {
        let b = builder.json().with_writer(writer).with_filter_reloading();
        let h = b.reload_handle();
        (
            b.try_init(),
            Box::new(move |f| h.reload(f).map_err(|e| e.to_string())),
        )
    } else {
        let b = builder.with_writer(writer).with_filter_reloading();
        let h = b.reload_handle();
        (
            b.try_init(),
            Box::new(move |f| h.reload(f).map_err(|e| e.to_string())),
        )
    };
    res.map_err(|e| ServerError::Usage(format!("logging: {e}")))?;
    let _ = STATE.set(Mutex::new(initial_state(opts, reload)));
    Ok(())
}

fn initial_state(opts: &Options, reload: Reload) -> State {
    let base = envoy_level(&opts.log_level).unwrap_or("info");
    let mut names: Vec<(&'static str, &'static str)> =
        COMPONENTS.iter().map(|(n, _)| (*n, base)).collect();
    let mut targets = BTreeMap::new();
    for item in opts
        .component_log_level
        .iter()
        .flat_map(|c| c.split(','))
        .filter(|s| !s.is_empty())
    {
        // init_logging has already checked the syntax (log_directives).
        if let Some((name, level)) = item.split_once(':')
            && let Some(level) = envoy_level(level)
        {
            set_name(&mut names, &mut targets, name, level);
        }
    }
    State {
        names,
        targets,
        reload,
    }
}

/// Record `level` on `name` and on its module target; false if the name is unknown.
fn set_name(
    names: &mut [(&'static str, &'static str)],
    targets: &mut BTreeMap<&'static str, &'static str>,
    name: &str,
    level: &'static str,
) -> bool {
    let Some(slot) = names.iter_mut().find(|(n, _)| *n == name) else {
        return false;
    };
    slot.1 = level;
    if let Some((_, target)) = COMPONENTS.iter().find(|(n, _)| *n == name) {
        targets.insert(target, level);
    }
    true
}

/// A change asked for by `/logging`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LevelChange {
    /// `?level=`: every logger.
    All(String),
    /// `?<name>=<level>` or `?paths=name:level,…`: these loggers.
    Some(Vec<(String, String)>),
}

/// Why a change was refused (the admin answers 400 with the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LevelError {
    /// Not one of trace, debug, info, warning, error, critical, off.
    #[error("unknown logger level")]
    Level,
    /// Not a logger name.
    #[error("unknown logger name")]
    Name,
    /// Logging was not set up through [`init_logging`] (a library user).
    #[error("logging is not managed by tern in this process")]
    NotManaged,
    /// The subscriber refused the new filter.
    #[error("{0}")]
    Apply(String),
}

/// Apply a change of levels. Nothing changes unless every part of it is valid.
pub fn set_levels(change: &LevelChange) -> Result<(), LevelError> {
    let state = STATE.get().ok_or(LevelError::NotManaged)?;
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    let mut names = st.names.clone();
    let mut targets = st.targets.clone();
    match change {
        LevelChange::All(level) => {
            let level = envoy_level(level).ok_or(LevelError::Level)?;
            for n in names.iter_mut() {
                n.1 = level;
            }
            targets.clear();
        }
        LevelChange::Some(list) => {
            for (name, level) in list {
                let level = envoy_level(level).ok_or(LevelError::Level)?;
                if !set_name(&mut names, &mut targets, name, level) {
                    return Err(LevelError::Name);
                }
            }
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_new(directives(&names, &targets))
        .map_err(|e| LevelError::Apply(e.to_string()))?;
    (st.reload)(filter).map_err(LevelError::Apply)?;
    st.names = names;
    st.targets = targets;
    Ok(())
}

/// The level that most loggers have (the base for `tern`), then each module target's own.
fn directives(
    names: &[(&'static str, &'static str)],
    targets: &BTreeMap<&'static str, &'static str>,
) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, l) in names {
        *counts.entry(l).or_default() += 1;
    }
    let base = counts
        .iter()
        .max_by_key(|(_, c)| **c)
        .map_or("info", |(l, _)| l);
    let base = options::tracing_level(base).unwrap_or("info");
    let deps = if matches!(base, "trace" | "debug") {
        "info"
    } else {
        "warn"
    };
    let mut d = format!("{deps},tern={base}");
    for (target, level) in targets {
        d.push_str(&format!(
            ",{target}={}",
            options::tracing_level(level).unwrap_or("info")
        ));
    }
    d
}

/// Envoy's listing: `active loggers:` then `  <name>: <level>` per logger.
pub fn render_levels() -> String {
    let mut out = String::from("active loggers:\n");
    if let Some(state) = STATE.get() {
        let st = state.lock().unwrap_or_else(|e| e.into_inner());
        for (n, l) in &st.names {
            out.push_str(&format!("  {n}: {l}\n"));
        }
    }
    out
}

struct SharedFile(Arc<Mutex<std::fs::File>>);

impl std::io::Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_targets_follow_the_last_setting() {
        let mut names: Vec<_> = COMPONENTS.iter().map(|(n, _)| (*n, "info")).collect();
        let mut targets = BTreeMap::new();
        assert!(set_name(&mut names, &mut targets, "upstream", "debug"));
        assert!(!set_name(&mut names, &mut targets, "nosuch", "debug"));
        assert_eq!(targets.get("tern::upstream"), Some(&"debug"));
        let d = directives(&names, &targets);
        assert!(d.starts_with("warn,tern=info"), "{d}");
        assert!(d.contains("tern::upstream=debug"), "{d}");
        assert!(tracing_subscriber::EnvFilter::try_new(&d).is_ok());
    }

    #[test]
    fn envoy_level_names() {
        assert_eq!(envoy_level("warn"), Some("warning"));
        assert_eq!(envoy_level("critical"), Some("critical"));
        assert_eq!(envoy_level("loud"), None);
    }
}
