//! Envoy's command line, as pilot-agent passes it. Flags whose feature comes later are parsed
//! and kept, never silently dropped; an unknown flag is an error, as in Envoy.

use clap::Parser;

/// Command-line options (Envoy's names and meanings).
#[derive(Debug, Clone, Parser, Default)]
#[command(
    name = "tern",
    version,
    about = "tern: a service-mesh data plane that takes Envoy's place",
    disable_help_subcommand = true
)]
pub struct Options {
    /// Path to the bootstrap (JSON, YAML, or binary proto `.pb`).
    #[arg(short = 'c', long = "config-path")]
    pub config_path: Option<String>,
    /// Bootstrap YAML merged over the config file.
    #[arg(long = "config-yaml")]
    pub config_yaml: Option<String>,
    /// `serve` (default), `validate` (load, check, exit 0/1) or `init_only`.
    #[arg(long = "mode", default_value = "serve", value_parser = ["serve", "validate", "init_only"])]
    pub mode: String,
    /// Log level: trace, debug, info, warning/warn, error, critical, off.
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    pub log_level: String,
    /// Per-component levels: `upstream:debug,connection:trace`.
    #[arg(long = "component-log-level")]
    pub component_log_level: Option<String>,
    /// Log line format (spdlog pattern). A pattern that starts with `{` selects JSON lines.
    #[arg(long = "log-format")]
    pub log_format: Option<String>,
    /// Escape newlines in log messages.
    #[arg(long = "log-format-escaped")]
    pub log_format_escaped: bool,
    /// Write logs to this file instead of stderr.
    #[arg(long = "log-path")]
    pub log_path: Option<String>,
    /// Number of worker threads (default: the number of CPUs).
    #[arg(long = "concurrency")]
    pub concurrency: Option<usize>,
    /// Seconds connections get to drain on shutdown or listener removal.
    #[arg(long = "drain-time-s", default_value_t = 600)]
    pub drain_time_s: u64,
    /// `gradual` or `immediate`.
    #[arg(long = "drain-strategy", default_value = "gradual", value_parser = ["gradual", "immediate"])]
    pub drain_strategy: String,
    /// Seconds the parent process of a hot restart waits before it exits.
    #[arg(long = "parent-shutdown-time-s", default_value_t = 900)]
    pub parent_shutdown_time_s: u64,
    /// Hot restart epoch.
    #[arg(long = "restart-epoch", default_value_t = 0)]
    pub restart_epoch: u32,
    /// Print the hot restart compatibility version and exit.
    #[arg(long = "hot-restart-version")]
    pub hot_restart_version: bool,
    /// Base id for shared memory and the hot restart socket.
    #[arg(long = "base-id", default_value_t = 0)]
    pub base_id: u32,
    /// Pick a free base id.
    #[arg(long = "use-dynamic-base-id")]
    pub use_dynamic_base_id: bool,
    /// Write the chosen base id here.
    #[arg(long = "base-id-path")]
    pub base_id_path: Option<String>,
    /// Node cluster (overrides `node.cluster`).
    #[arg(long = "service-cluster")]
    pub service_cluster: Option<String>,
    /// Node id (overrides `node.id`).
    #[arg(long = "service-node")]
    pub service_node: Option<String>,
    /// Node zone (overrides `node.locality.zone`).
    #[arg(long = "service-zone")]
    pub service_zone: Option<String>,
    /// `v4` or `v6`: the family of the local address.
    #[arg(long = "local-address-ip-version", default_value = "v4", value_parser = ["v4", "v6"])]
    pub local_address_ip_version: String,
    /// Disable hot restart.
    #[arg(long = "disable-hot-restart")]
    pub disable_hot_restart: bool,
    /// Ignore unknown fields in the bootstrap.
    #[arg(long = "allow-unknown-static-fields")]
    pub allow_unknown_static_fields: bool,
    /// Reject unknown fields in dynamic (xDS) configuration.
    #[arg(long = "reject-unknown-dynamic-fields")]
    pub reject_unknown_dynamic_fields: bool,
    /// Ignore unknown fields in dynamic configuration silently.
    #[arg(long = "ignore-unknown-dynamic-fields")]
    pub ignore_unknown_dynamic_fields: bool,
    /// Flush interval of access log files in milliseconds (0: Envoy's default, 10 s).
    #[arg(long = "file-flush-interval-msec", default_value_t = 10000)]
    pub file_flush_interval_msec: u64,
    /// Skip deprecation warnings in logs.
    #[arg(long = "skip-deprecated-logs")]
    pub skip_deprecated_logs: bool,
    /// Enable fine-grain logger (accepted; tern's logging is per module already).
    #[arg(long = "enable-fine-grain-logging")]
    pub enable_fine_grain_logging: bool,
    /// Enable core dumps.
    #[arg(long = "enable-core-dump")]
    pub enable_core_dump: bool,
    /// Disable these extensions (comma-separated names).
    #[arg(long = "disable-extensions")]
    pub disable_extensions: Option<String>,
    /// Hot restart socket path.
    #[arg(long = "socket-path")]
    pub socket_path: Option<String>,
    /// Hot restart socket mode.
    #[arg(long = "socket-mode")]
    pub socket_mode: Option<String>,
    /// Extra stat tags `name:value` (repeatable).
    #[arg(long = "stats-tag")]
    pub stats_tag: Vec<String>,
    /// Set CPU affinity of worker threads.
    #[arg(long = "cpuset-threads")]
    pub cpuset_threads: bool,
}

/// Envoy's component names, mapped to the tern module that plays that part (the tracing
/// target `--component-log-level` sets).
pub const COMPONENTS: &[(&str, &str)] = &[
    ("admin", "tern::admin"),
    ("config", "tern::config"),
    ("connection", "tern::listener"),
    ("conn_handler", "tern::listener"),
    ("dns", "tern::upstream::cluster"),
    ("filter", "tern::filters"),
    ("grpc", "tern::xds"),
    ("hc", "tern::upstream"),
    ("http", "tern::proxy::hcm"),
    ("http2", "tern::proxy::hcm"),
    ("main", "tern::server"),
    ("misc", "tern"),
    ("pool", "tern::upstream::pool"),
    ("router", "tern::router"),
    ("runtime", "tern::server"),
    ("upstream", "tern::upstream"),
    ("tcp", "tern::proxy::tcp_proxy"),
    ("xds", "tern::xds"),
    ("wasm", "tern::filters"),
    ("rbac", "tern::filters"),
    ("jwt", "tern::filters"),
    ("lua", "tern::filters"),
    ("golang", "tern::filters"),
    ("dubbo", "tern::protocol"),
    ("ext_authz", "tern::filters"),
    ("ext_proc", "tern::filters"),
    ("secret", "tern::tls"),
    ("health_checker", "tern::upstream"),
    ("testing", "tern"),
    ("assert", "tern"),
    ("backtrace", "tern"),
    ("envoy_bug", "tern"),
    ("file", "tern"),
    ("hot_restart", "tern::server"),
    ("init", "tern::server"),
    ("io", "tern::listener"),
    ("kafka", "tern::protocol"),
    ("key_value_store", "tern"),
    ("quic", "tern::protocol"),
    ("quic_stream", "tern::protocol"),
    ("redis", "tern::protocol"),
    ("stats", "tern::stats"),
    ("thrift", "tern::protocol"),
    ("tracing", "tern::proxy"),
    ("udp", "tern::listener"),
];

/// Envoy's level names to tracing's.
pub fn tracing_level(level: &str) -> Option<&'static str> {
    Some(match level {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warning" | "warn" => "warn",
        "error" | "critical" => "error",
        "off" => "off",
        _ => return None,
    })
}

/// The `EnvFilter` directive string for `-l` and `--component-log-level`.
pub fn log_directives(opts: &Options) -> Result<String, String> {
    let base = tracing_level(&opts.log_level)
        .ok_or_else(|| format!("invalid log level {:?}", opts.log_level))?;
    // Dependencies stay at warn unless trace was asked for.
    let deps = if base == "trace" || base == "debug" {
        "info"
    } else {
        "warn"
    };
    let mut d = format!("{deps},tern={base}");
    if let Some(c) = &opts.component_log_level {
        for item in c.split(',').filter(|s| !s.is_empty()) {
            let (name, level) = item
                .split_once(':')
                .ok_or_else(|| format!("component log level {item:?} is not name:level"))?;
            let target = COMPONENTS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| *t)
                .ok_or_else(|| format!("invalid component specified {name:?}"))?;
            let level =
                tracing_level(level).ok_or_else(|| format!("invalid log level {level:?}"))?;
            d.push_str(&format!(",{target}={level}"));
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pilot_agent_command_line_parses() {
        let o = Options::try_parse_from([
            "envoy",
            "-c",
            "etc/istio/proxy/envoy-rev.json",
            "--drain-time-s",
            "45",
            "--drain-strategy",
            "immediate",
            "--local-address-ip-version",
            "v4",
            "--file-flush-interval-msec",
            "1000",
            "--disable-hot-restart",
            "--allow-unknown-static-fields",
            "--log-format",
            "%Y-%m-%dT%T.%fZ\t%l\tenvoy %n %g:%#\t%v\tthread=%t",
            "-l",
            "warning",
            "--component-log-level",
            "misc:error",
            "--concurrency",
            "2",
            "--skip-deprecated-logs",
        ])
        .unwrap();
        assert_eq!(o.drain_time_s, 45);
        assert_eq!(o.concurrency, Some(2));
        assert_eq!(log_directives(&o).unwrap(), "warn,tern=warn,tern=error");
    }

    #[test]
    fn unknown_flags_and_components_are_errors() {
        assert!(Options::try_parse_from(["tern", "--no-such-flag"]).is_err());
        let o = Options::try_parse_from(["tern", "--component-log-level", "nope:debug"]).unwrap();
        assert!(log_directives(&o).is_err());
        let o = Options::try_parse_from(["tern", "-l", "loud"]).unwrap();
        assert!(log_directives(&o).is_err());
    }
}
