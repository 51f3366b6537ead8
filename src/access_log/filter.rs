//! `AccessLog.filter`: which streams an access log writes. Every filter type of Envoy's
//! `AccessLogFilter` is compiled; the CEL extension filter (Istio's Telemetry API `filter`)
//! is accepted and counted as not enforced (every stream passes it).

use crate::config::{ConfigError, Within, typed_config};
use crate::router::HeaderMatch;
use crate::stats::Store;
use crate::stream_info::{LogType, Needs, ResponseFlag, ResponseFlags, StreamInfo};
use envoy_types::pb::envoy::config::accesslog::v3 as al_pb;
use envoy_types::pb::envoy::data::accesslog::v3::AccessLogType;
use envoy_types::pb::envoy::extensions::access_loggers::filters::cel::v3::ExpressionFilter;
use envoy_types::pb::envoy::r#type::v3 as type_pb;
use prost::Name;

/// `ComparisonFilter.op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ge,
    Le,
    Ne,
}

impl Op {
    fn holds(self, value: u64, against: u64) -> bool {
        match self {
            Op::Eq => value == against,
            Op::Ge => value >= against,
            Op::Le => value <= against,
            Op::Ne => value != against,
        }
    }
}

/// A compiled `AccessLogFilter`.
#[derive(Debug, Clone)]
pub enum Filter {
    /// `status_code_filter` (no response counts as 0).
    StatusCode(Op2),
    /// `duration_filter`, in milliseconds.
    Duration(Op2),
    /// `not_health_check_filter`: tern has no health check filter, so no stream is a health
    /// check and every stream passes.
    NotHealthCheck,
    /// `traceable_filter`: the stream was traced.
    Traceable,
    /// `runtime_filter`: a share of streams, by the request id (or independent randomness).
    Runtime {
        /// `percent_sampled` as numerator / denominator.
        numerator: u64,
        /// Denominator.
        denominator: u64,
        /// `use_independent_randomness`.
        independent: bool,
    },
    /// `and_filter`.
    And(Vec<Filter>),
    /// `or_filter`.
    Or(Vec<Filter>),
    /// `header_filter` on the request headers.
    Header(Box<HeaderMatch>),
    /// `response_flag_filter`: any of these flags (any flag at all when empty). Flags tern
    /// never sets match nothing.
    ResponseFlag {
        /// The flags.
        flags: ResponseFlags,
        /// An empty list: any flag.
        any: bool,
    },
    /// `grpc_status_filter`.
    GrpcStatus {
        /// Bit per status 0..=16.
        statuses: u32,
        /// `exclude`.
        exclude: bool,
    },
    /// `metadata_filter`: tern keeps no dynamic metadata, so the key is never found and the
    /// result is `match_if_key_not_found` (default true).
    Metadata(bool),
    /// `log_type_filter`.
    LogType {
        /// The log types that match.
        types: Vec<LogType>,
        /// `exclude`.
        exclude: bool,
    },
    /// A filter that lets everything through (an extension filter not enforced).
    Pass,
}

/// A comparison against a fixed value (`RuntimeUInt32.default_value`; tern has no runtime).
#[derive(Debug, Clone, Copy)]
pub struct Op2(Op, u64);

fn comparison(c: Option<&al_pb::ComparisonFilter>) -> Result<Op2, ConfigError> {
    let c = c.ok_or_else(|| ConfigError::new("comparison", "is required"))?;
    let op = match al_pb::comparison_filter::Op::try_from(c.op) {
        Ok(al_pb::comparison_filter::Op::Eq) => Op::Eq,
        Ok(al_pb::comparison_filter::Op::Ge) => Op::Ge,
        Ok(al_pb::comparison_filter::Op::Le) => Op::Le,
        Ok(al_pb::comparison_filter::Op::Ne) => Op::Ne,
        Err(_) => return Err(ConfigError::new("comparison.op", "unknown operator")),
    };
    let value = c
        .value
        .as_ref()
        .ok_or_else(|| ConfigError::new("comparison.value", "is required"))?;
    Ok(Op2(op, u64::from(value.default_value)))
}

fn fraction(p: Option<&type_pb::FractionalPercent>) -> (u64, u64) {
    let Some(p) = p else { return (0, 100) };
    let d = match type_pb::fractional_percent::DenominatorType::try_from(p.denominator) {
        Ok(type_pb::fractional_percent::DenominatorType::TenThousand) => 10_000,
        Ok(type_pb::fractional_percent::DenominatorType::Million) => 1_000_000,
        _ => 100,
    };
    (u64::from(p.numerator).min(d), d)
}

fn log_type(t: i32) -> Option<LogType> {
    Some(match AccessLogType::try_from(t).ok()? {
        AccessLogType::NotSet => LogType::NotSet,
        AccessLogType::DownstreamEnd => LogType::DownstreamEnd,
        AccessLogType::TcpConnectionEnd => LogType::TcpConnectionEnd,
        AccessLogType::TcpPeriodic => LogType::TcpPeriodic,
        // Records tern does not write (upstream, UDP, start and periodic HTTP logs): the
        // filter is valid, those types simply never occur.
        _ => return None,
    })
}

impl Filter {
    /// Compile an `AccessLogFilter`.
    pub fn compile(f: &al_pb::AccessLogFilter, store: &Store) -> Result<Filter, ConfigError> {
        use al_pb::access_log_filter::FilterSpecifier as S;
        let list =
            |fs: &[al_pb::AccessLogFilter], path: &str| -> Result<Vec<Filter>, ConfigError> {
                if fs.len() < 2 {
                    return Err(ConfigError::new(path, "needs at least 2 filters"));
                }
                fs.iter()
                    .enumerate()
                    .map(|(i, f)| Filter::compile(f, store).within(format!("{path}.filters[{i}]")))
                    .collect()
            };
        Ok(match &f.filter_specifier {
            None => return Err(ConfigError::new("filter_specifier", "is required")),
            Some(S::StatusCodeFilter(s)) => {
                Filter::StatusCode(comparison(s.comparison.as_ref()).within("status_code_filter")?)
            }
            Some(S::DurationFilter(d)) => {
                Filter::Duration(comparison(d.comparison.as_ref()).within("duration_filter")?)
            }
            Some(S::NotHealthCheckFilter(_)) => Filter::NotHealthCheck,
            Some(S::TraceableFilter(_)) => Filter::Traceable,
            Some(S::RuntimeFilter(r)) => {
                if r.runtime_key.is_empty() {
                    return Err(ConfigError::new(
                        "runtime_filter.runtime_key",
                        "must not be empty",
                    ));
                }
                let (numerator, denominator) = fraction(r.percent_sampled.as_ref());
                Filter::Runtime {
                    numerator,
                    denominator,
                    independent: r.use_independent_randomness,
                }
            }
            Some(S::AndFilter(a)) => Filter::And(list(&a.filters, "and_filter")?),
            Some(S::OrFilter(o)) => Filter::Or(list(&o.filters, "or_filter")?),
            Some(S::HeaderFilter(h)) => {
                let m = h
                    .header
                    .as_ref()
                    .ok_or_else(|| ConfigError::new("header_filter.header", "is required"))?;
                Filter::Header(Box::new(
                    HeaderMatch::compile(m).within("header_filter.header")?,
                ))
            }
            Some(S::ResponseFlagFilter(r)) => {
                let mut flags = ResponseFlags::default();
                for (i, name) in r.flags.iter().enumerate() {
                    match ResponseFlag::from_short_name(name) {
                        Some(f) => flags.insert(f),
                        // Flags of later Envoy versions, which tern never sets.
                        None if matches!(name.as_str(), "DR" | "UDO") => {}
                        None => {
                            return Err(ConfigError::new(
                                format!("response_flag_filter.flags[{i}]"),
                                format!("unknown response flag {name:?}"),
                            ));
                        }
                    }
                }
                Filter::ResponseFlag {
                    flags,
                    any: r.flags.is_empty(),
                }
            }
            Some(S::GrpcStatusFilter(g)) => {
                let mut statuses = 0u32;
                for (i, s) in g.statuses.iter().enumerate() {
                    if !(0..=16).contains(s) {
                        return Err(ConfigError::new(
                            format!("grpc_status_filter.statuses[{i}]"),
                            format!("unknown gRPC status {s}"),
                        ));
                    }
                    statuses |= 1 << s;
                }
                Filter::GrpcStatus {
                    statuses,
                    exclude: g.exclude,
                }
            }
            Some(S::MetadataFilter(m)) => Filter::Metadata(crate::config::bool_or(
                m.match_if_key_not_found.as_ref(),
                true,
            )),
            Some(S::LogTypeFilter(l)) => {
                let mut types = Vec::new();
                for (i, t) in l.types.iter().enumerate() {
                    if AccessLogType::try_from(*t).is_err() {
                        return Err(ConfigError::new(
                            format!("log_type_filter.types[{i}]"),
                            format!("unknown access log type {t}"),
                        ));
                    }
                    types.extend(log_type(*t));
                }
                Filter::LogType {
                    types,
                    exclude: l.exclude,
                }
            }
            Some(S::ExtensionFilter(e)) => extension(e, store).within("extension_filter")?,
        })
    }

    /// What evaluating the filter reads beyond the record's fixed fields.
    pub fn needs(&self) -> Needs {
        match self {
            Filter::Header(_)
            | Filter::Runtime {
                independent: false, ..
            } => Needs {
                request_headers: true,
                ..Needs::default()
            },
            Filter::And(fs) | Filter::Or(fs) => {
                fs.iter().fold(Needs::default(), |n, f| n.union(f.needs()))
            }
            _ => Needs::default(),
        }
    }

    /// Whether the stream passes.
    pub fn evaluate(&self, info: &StreamInfo) -> bool {
        match self {
            Filter::StatusCode(Op2(op, v)) => {
                op.holds(u64::from(info.response_code.unwrap_or(0)), *v)
            }
            Filter::Duration(Op2(op, v)) => op.holds(
                info.duration
                    .unwrap_or_else(|| info.elapsed())
                    .as_millis()
                    .min(u128::from(u64::MAX)) as u64,
                *v,
            ),
            Filter::NotHealthCheck | Filter::Pass => true,
            Filter::Traceable => info.traced,
            Filter::Runtime {
                numerator,
                denominator,
                independent,
            } => {
                let from_id = (!independent)
                    .then(|| info.request_header("x-request-id"))
                    .flatten()
                    .and_then(|v| crate::stream_info::request_id_integer(v.as_bytes()));
                let r = from_id.unwrap_or_else(rand::random);
                r % denominator < *numerator
            }
            Filter::And(fs) => fs.iter().all(|f| f.evaluate(info)),
            Filter::Or(fs) => fs.iter().any(|f| f.evaluate(info)),
            Filter::Header(m) => info.request_headers.as_ref().is_some_and(|h| m.matches(h)),
            Filter::ResponseFlag { flags, any } => {
                if *any {
                    !info.response_flags.is_empty()
                } else {
                    info.response_flags.intersects(flags)
                }
            }
            Filter::GrpcStatus { statuses, exclude } => {
                let status = info.grpc_status.or_else(|| {
                    info.response_code
                        .map(crate::stream_info::grpc_status_for_http)
                });
                let found = status.is_some_and(|s| s <= 16 && statuses & (1 << s) != 0);
                found != *exclude
            }
            Filter::Metadata(if_not_found) => *if_not_found,
            Filter::LogType { types, exclude } => types.contains(&info.log_type) != *exclude,
        }
    }
}

fn extension(e: &al_pb::ExtensionFilter, store: &Store) -> Result<Filter, ConfigError> {
    use al_pb::extension_filter::ConfigType;
    let Some(ConfigType::TypedConfig(any)) = &e.config_type else {
        return Err(ConfigError::new("typed_config", "is required"));
    };
    let tc = typed_config(any)?;
    if tc.type_url() == ExpressionFilter::type_url() {
        let _: ExpressionFilter = tc.decode()?;
        store.not_enforced(
            "envoy.access_loggers.extension_filters.cel",
            "CEL access log filters (Telemetry API `filter`): every stream is logged",
        );
        return Ok(Filter::Pass);
    }
    Err(ConfigError::new(
        "typed_config",
        format!(
            "access log filter {} has unsupported type {}",
            e.name,
            tc.type_url()
        ),
    ))
}
