//! Access logs: `envoy.access_loggers.file`, `envoy.access_loggers.stdout` and
//! `envoy.access_loggers.stderr`, with Envoy's formats (the default line, text with command
//! operators, JSON) and `AccessLog.filter`s. Each compiled log is a
//! [`StreamObserver`](crate::stream_info::StreamObserver): the HTTP connection manager,
//! tcp_proxy and listeners call it with the stream's record when the stream ends; it renders
//! one line on the calling thread and hands it to its [`sink`], which writes it out off the
//! request path.
//!
//! gRPC and OpenTelemetry access log services and Wasm loggers are accepted and counted as
//! `tern.config.not_enforced.<type>` (they write nothing); any other type is an error.
//!
//! Depends on `config`, `stats`, `format`, `stream_info` and `router` (header matchers).

pub mod filter;
pub mod sink;

#[cfg(test)]
mod tests;

pub use filter::Filter;
pub use sink::{Destination, Sink, flush_all, reopen_all, set_flush_interval};

use crate::config::{ConfigError, Within, typed_config};
use crate::format::{Formatter, JsonFormat, ParseOptions};
use crate::stats::Store;
use crate::stream_info::{Needs, Observers, StreamInfo, StreamObserver};
use envoy_types::pb::envoy::config::accesslog::v3 as al_pb;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::{
    FileAccessLog, file_access_log::AccessLogFormat,
};
use envoy_types::pb::envoy::extensions::access_loggers::grpc::v3 as grpc_pb;
use envoy_types::pb::envoy::extensions::access_loggers::open_telemetry::v3::OpenTelemetryAccessLogConfig;
use envoy_types::pb::envoy::extensions::access_loggers::stream::v3 as stream_pb;
use envoy_types::pb::envoy::extensions::access_loggers::wasm::v3::WasmAccessLog;
use envoy_types::pb::envoy::extensions::formatter::cel::v3::Cel;
use envoy_types::pb::envoy::extensions::formatter::metadata::v3::Metadata;
use envoy_types::pb::envoy::extensions::formatter::req_without_query::v3::ReqWithoutQuery;
use prost::Name;
use std::cell::RefCell;
use std::sync::Arc;

/// Envoy's default access log line.
pub const DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// How a log renders a line.
#[derive(Debug, Clone)]
pub enum LineFormat {
    /// Text; `missing` is what a missing value prints (`-`, or nothing with
    /// `omit_empty_values`).
    Text {
        /// The format.
        format: Formatter,
        /// What a missing value prints.
        missing: &'static str,
    },
    /// One JSON object per line.
    Json(JsonFormat),
}

impl LineFormat {
    /// Envoy's default line.
    pub fn default_text() -> LineFormat {
        LineFormat::Text {
            format: Formatter::parse(DEFAULT_FORMAT).expect("Envoy's default format parses"),
            missing: "-",
        }
    }

    fn needs(&self) -> Needs {
        match self {
            LineFormat::Text { format, .. } => format.needs(),
            LineFormat::Json(j) => j.needs(),
        }
    }

    /// Render one line for `info`, appending to `out` (`scratch` is working space).
    pub fn render(&self, info: &StreamInfo, out: &mut String, scratch: &mut String) {
        match self {
            LineFormat::Text { format, missing } => format.write(info, out, missing),
            LineFormat::Json(j) => j.write(info, out, scratch),
        }
    }
}

/// One compiled `AccessLog` that writes lines.
#[derive(Debug)]
pub struct AccessLog {
    name: String,
    filter: Option<Filter>,
    format: LineFormat,
    sink: Arc<Sink>,
}

thread_local! {
    /// Line and scratch buffers reused by every log line rendered on this thread.
    static BUFFERS: RefCell<(String, String)> = const { RefCell::new((String::new(), String::new())) };
}

impl AccessLog {
    /// A log that writes `format` lines of the streams passing `filter` to `sink`.
    pub fn new(name: &str, filter: Option<Filter>, format: LineFormat, sink: Arc<Sink>) -> Self {
        AccessLog {
            name: name.to_owned(),
            filter,
            format,
            sink,
        }
    }

    /// `AccessLog.name`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl StreamObserver for AccessLog {
    fn needs(&self) -> Needs {
        let f = self.filter.as_ref().map(Filter::needs).unwrap_or_default();
        self.format.needs().union(f)
    }

    fn on_stream_end(&self, info: &StreamInfo) {
        if let Some(f) = &self.filter
            && !f.evaluate(info)
        {
            return;
        }
        BUFFERS.with(|b| {
            // A log written from within another log's rendering cannot happen; if it ever
            // did, render into fresh buffers rather than panic.
            let mut fresh = (String::new(), String::new());
            let mut guard = b.try_borrow_mut();
            let (line, scratch) = match guard.as_deref_mut() {
                Ok(bufs) => (&mut bufs.0, &mut bufs.1),
                Err(_) => (&mut fresh.0, &mut fresh.1),
            };
            line.clear();
            self.format.render(info, line, scratch);
            self.sink.write(line.as_bytes());
            // Keep the buffers from growing without bound after an unusually long line.
            if line.capacity() > 64 * 1024 {
                *line = String::new();
            }
        });
    }
}

/// Formatter extensions configured in `SubstitutionFormatString.formatters`.
fn formatter_options(
    formatters: &[core_pb::TypedExtensionConfig],
) -> Result<ParseOptions, ConfigError> {
    let mut opts = ParseOptions::default();
    for (i, f) in formatters.iter().enumerate() {
        let path = format!("formatters[{i}]");
        let any = f
            .typed_config
            .as_ref()
            .ok_or_else(|| ConfigError::new(&path, "typed_config is required"))?;
        let tc = typed_config(any).within(&path)?;
        let url = tc.type_url();
        if url == ReqWithoutQuery::type_url() {
            let _: ReqWithoutQuery = tc.decode().within(&path)?;
            opts.req_without_query = true;
        } else if url == Metadata::type_url() {
            let _: Metadata = tc.decode().within(&path)?;
            opts.metadata = true;
        } else if url == Cel::type_url() {
            let _: Cel = tc.decode().within(&path)?;
            opts.cel = true;
        } else {
            return Err(ConfigError::new(
                path,
                format!("formatter {} has unsupported type {url}", f.name),
            ));
        }
    }
    Ok(opts)
}

fn data_source(d: &core_pb::DataSource) -> Result<String, ConfigError> {
    use core_pb::data_source::Specifier;
    match &d.specifier {
        Some(Specifier::InlineString(s)) => Ok(s.clone()),
        Some(Specifier::InlineBytes(b)) => String::from_utf8(b.clone())
            .map_err(|_| ConfigError::new("inline_bytes", "is not UTF-8")),
        Some(Specifier::Filename(f)) => std::fs::read_to_string(f)
            .map_err(|e| ConfigError::new("filename", format!("cannot read {f}: {e}"))),
        Some(Specifier::EnvironmentVariable(v)) => std::env::var(v)
            .map_err(|_| ConfigError::new("environment_variable", format!("{v} is not set"))),
        None => Err(ConfigError::new("specifier", "is required")),
    }
}

/// Compile a `SubstitutionFormatString`.
pub fn compile_format(f: &core_pb::SubstitutionFormatString) -> Result<LineFormat, ConfigError> {
    use core_pb::substitution_format_string::Format;
    let opts = formatter_options(&f.formatters)?;
    let missing = if f.omit_empty_values { "" } else { "-" };
    #[allow(deprecated)]
    let text = match &f.format {
        Some(Format::TextFormat(s)) => s.clone(),
        Some(Format::TextFormatSource(d)) => data_source(d).within("text_format_source")?,
        Some(Format::JsonFormat(s)) => {
            return Ok(LineFormat::Json(
                JsonFormat::compile(s, f.omit_empty_values, opts).within("json_format")?,
            ));
        }
        None => return Err(ConfigError::new("format", "is required")),
    };
    Ok(LineFormat::Text {
        format: Formatter::parse_with(&text, opts).within("text_format")?,
        missing,
    })
}

fn file_format(f: &FileAccessLog) -> Result<LineFormat, ConfigError> {
    #[allow(deprecated)]
    match &f.access_log_format {
        None => Ok(LineFormat::default_text()),
        Some(AccessLogFormat::Format(s)) if s.is_empty() => Ok(LineFormat::default_text()),
        Some(AccessLogFormat::Format(s)) => Ok(LineFormat::Text {
            format: Formatter::parse(s).within("format")?,
            missing: "-",
        }),
        Some(AccessLogFormat::JsonFormat(s)) => Ok(LineFormat::Json(
            JsonFormat::compile(s, false, ParseOptions::default()).within("json_format")?,
        )),
        Some(AccessLogFormat::TypedJsonFormat(s)) => Ok(LineFormat::Json(
            JsonFormat::compile(s, false, ParseOptions::default()).within("typed_json_format")?,
        )),
        Some(AccessLogFormat::LogFormat(lf)) => compile_format(lf).within("log_format"),
    }
}

fn stream_format(f: Option<&core_pb::SubstitutionFormatString>) -> Result<LineFormat, ConfigError> {
    match f {
        None => Ok(LineFormat::default_text()),
        Some(lf) => compile_format(lf).within("log_format"),
    }
}

/// Compile one `AccessLog`: `Ok(None)` for a logger type tern accepts without writing
/// anything (counted as not enforced).
pub fn compile_one(
    log: &al_pb::AccessLog,
    store: &Store,
) -> Result<Option<Arc<AccessLog>>, ConfigError> {
    use al_pb::access_log::ConfigType;
    let filter = log
        .filter
        .as_ref()
        .map(|f| Filter::compile(f, store))
        .transpose()
        .within("filter")?;
    let Some(ConfigType::TypedConfig(any)) = &log.config_type else {
        return Err(ConfigError::new(
            "typed_config",
            format!("access log {}: typed_config is required", log.name),
        ));
    };
    let tc = typed_config(any).within("typed_config")?;
    let url = tc.type_url();
    let (format, dest) = if url == FileAccessLog::type_url() {
        let f: FileAccessLog = tc.decode().within("typed_config")?;
        if f.path.is_empty() {
            return Err(ConfigError::new("typed_config.path", "must not be empty"));
        }
        (
            file_format(&f).within("typed_config")?,
            Destination::File(f.path.into()),
        )
    } else if url == stream_pb::StdoutAccessLog::type_url() {
        let f: stream_pb::StdoutAccessLog = tc.decode().within("typed_config")?;
        let lf = f
            .access_log_format
            .map(|stream_pb::stdout_access_log::AccessLogFormat::LogFormat(l)| l);
        (
            stream_format(lf.as_ref()).within("typed_config")?,
            Destination::Stdout,
        )
    } else if url == stream_pb::StderrAccessLog::type_url() {
        let f: stream_pb::StderrAccessLog = tc.decode().within("typed_config")?;
        let lf = f
            .access_log_format
            .map(|stream_pb::stderr_access_log::AccessLogFormat::LogFormat(l)| l);
        (
            stream_format(lf.as_ref()).within("typed_config")?,
            Destination::Stderr,
        )
    } else {
        let not_enforced = |what: &str, missing: &str| {
            store.not_enforced(what, missing);
            Ok(None)
        };
        return if url == grpc_pb::HttpGrpcAccessLogConfig::type_url() {
            let _: grpc_pb::HttpGrpcAccessLogConfig = tc.decode().within("typed_config")?;
            not_enforced(
                "envoy.access_loggers.http_grpc",
                "the gRPC access log service (ALS): nothing is sent",
            )
        } else if url == grpc_pb::TcpGrpcAccessLogConfig::type_url() {
            let _: grpc_pb::TcpGrpcAccessLogConfig = tc.decode().within("typed_config")?;
            not_enforced(
                "envoy.access_loggers.tcp_grpc",
                "the gRPC access log service (ALS): nothing is sent",
            )
        } else if url == OpenTelemetryAccessLogConfig::type_url() {
            let _: OpenTelemetryAccessLogConfig = tc.decode().within("typed_config")?;
            not_enforced(
                "envoy.access_loggers.open_telemetry",
                "OpenTelemetry access logs: nothing is exported",
            )
        } else if url == WasmAccessLog::type_url() {
            let _: WasmAccessLog = tc.decode().within("typed_config")?;
            not_enforced("envoy.access_loggers.wasm", "Wasm access loggers")
        } else {
            Err(ConfigError::new(
                "typed_config",
                format!("access log {} has unsupported type {url}", log.name),
            ))
        };
    };
    let sink = Sink::open(dest, store).within("typed_config")?;
    Ok(Some(Arc::new(AccessLog::new(
        &log.name, filter, format, sink,
    ))))
}

/// Compile `access_log` entries and add them to `observers`. Errors name the entry
/// (`access_log[1].typed_config.log_format...`).
pub fn compile_into(
    logs: &[al_pb::AccessLog],
    store: &Store,
    observers: &mut Observers,
) -> Result<(), ConfigError> {
    for (i, log) in logs.iter().enumerate() {
        if let Some(l) = compile_one(log, store).within(format!("access_log[{i}]"))? {
            observers.push(l);
        }
    }
    Ok(())
}

/// Compile `access_log` entries into their own observer list.
pub fn compile(logs: &[al_pb::AccessLog], store: &Store) -> Result<Observers, ConfigError> {
    let mut o = Observers::new();
    compile_into(logs, store, &mut o)?;
    Ok(o)
}
