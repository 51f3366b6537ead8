//! Header mutations: `request_headers_to_add/remove` and `response_headers_to_add/remove` of a
//! route configuration, virtual host, route or weighted cluster.

use super::format::{FormatContext, Formatter};
use crate::config::{ConfigError, Within};
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use http::{HeaderMap, HeaderName, HeaderValue};

/// `HeaderValueOption.append_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendAction {
    /// `APPEND_IF_EXISTS_OR_ADD` (the default): add another value. Envoy comma-joins "inline"
    /// headers instead; tern always adds a separate value.
    AppendIfExistsOrAdd,
    /// `ADD_IF_ABSENT`.
    AddIfAbsent,
    /// `OVERWRITE_IF_EXISTS_OR_ADD`.
    OverwriteIfExistsOrAdd,
    /// `OVERWRITE_IF_EXISTS`.
    OverwriteIfExists,
}

#[derive(Debug, Clone)]
enum Value {
    /// A value without commands, validated at compile time.
    Fixed(HeaderValue),
    Format(Formatter),
}

/// One compiled `HeaderValueOption`.
#[derive(Debug, Clone)]
pub struct HeaderAdd {
    name: HeaderName,
    value: Value,
    action: AppendAction,
    keep_empty_value: bool,
}

impl HeaderAdd {
    #[allow(deprecated)]
    fn compile(o: &core_pb::HeaderValueOption) -> Result<Self, ConfigError> {
        use core_pb::header_value_option::HeaderAppendAction as A;
        let h = o
            .header
            .as_ref()
            .ok_or_else(|| ConfigError::new("header", "is required"))?;
        if h.key.starts_with(':') {
            return Err(ConfigError::new(
                "header.key",
                format!("pseudo-header {:?} may not be modified", h.key),
            ));
        }
        let name = header_name(&h.key).within("header.key")?;
        let value =
            if !h.raw_value.is_empty() {
                if !h.value.is_empty() {
                    return Err(ConfigError::new(
                        "header",
                        "only one of value and raw_value may be set",
                    ));
                }
                Value::Fixed(HeaderValue::from_bytes(&h.raw_value).map_err(|_| {
                    ConfigError::new("header.raw_value", "not a valid header value")
                })?)
            } else {
                let f = Formatter::parse(&h.value).within("header.value")?;
                match f.literal() {
                    Some(lit) => Value::Fixed(HeaderValue::from_str(lit).map_err(|_| {
                        ConfigError::new(
                            "header.value",
                            format!("{lit:?} is not a valid header value"),
                        )
                    })?),
                    None => Value::Format(f),
                }
            };
        let action = match A::try_from(o.append_action) {
            Ok(A::AppendIfExistsOrAdd) => AppendAction::AppendIfExistsOrAdd,
            Ok(A::AddIfAbsent) => AppendAction::AddIfAbsent,
            Ok(A::OverwriteIfExistsOrAdd) => AppendAction::OverwriteIfExistsOrAdd,
            Ok(A::OverwriteIfExists) => AppendAction::OverwriteIfExists,
            Err(_) => {
                return Err(ConfigError::new(
                    "append_action",
                    format!("unknown value {}", o.append_action),
                ));
            }
        };
        let action = match &o.append {
            None => action,
            Some(_) if o.append_action != 0 => {
                return Err(ConfigError::new(
                    "append",
                    "both append and append_action are set, which is not allowed",
                ));
            }
            Some(b) if b.value => AppendAction::AppendIfExistsOrAdd,
            Some(_) => AppendAction::OverwriteIfExistsOrAdd,
        };
        Ok(HeaderAdd {
            name,
            value,
            action,
            keep_empty_value: o.keep_empty_value,
        })
    }

    fn apply(&self, headers: &mut HeaderMap, ctx: &FormatContext<'_>) {
        let value = match &self.value {
            Value::Fixed(v) => v.clone(),
            Value::Format(f) => match HeaderValue::from_str(&f.render(ctx)) {
                Ok(v) => v,
                // A rendered value with control characters is dropped rather than sent.
                Err(_) => return,
            },
        };
        if value.is_empty() && !self.keep_empty_value {
            return;
        }
        match self.action {
            AppendAction::AppendIfExistsOrAdd => {
                headers.append(self.name.clone(), value);
            }
            AppendAction::AddIfAbsent => {
                if !headers.contains_key(&self.name) {
                    headers.insert(self.name.clone(), value);
                }
            }
            AppendAction::OverwriteIfExistsOrAdd => {
                headers.insert(self.name.clone(), value);
            }
            AppendAction::OverwriteIfExists => {
                if headers.contains_key(&self.name) {
                    headers.insert(self.name.clone(), value);
                }
            }
        }
    }
}

fn header_name(s: &str) -> Result<HeaderName, ConfigError> {
    if s.is_empty() {
        return Err(ConfigError::new("", "header name must not be empty"));
    }
    HeaderName::from_bytes(s.as_bytes())
        .map_err(|_| ConfigError::new("", format!("invalid header name {s:?}")))
}

/// One direction's headers to remove and add, in Envoy's order (remove first, then add).
#[derive(Debug, Clone, Default)]
pub struct HeaderOps {
    remove: Vec<HeaderName>,
    add: Vec<HeaderAdd>,
}

impl HeaderOps {
    /// Compile `*_headers_to_add` / `*_headers_to_remove`; `add_field` and `remove_field` name
    /// the proto fields for errors.
    pub fn compile(
        add: &[core_pb::HeaderValueOption],
        remove: &[String],
        add_field: &str,
        remove_field: &str,
    ) -> Result<Self, ConfigError> {
        let remove = remove
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let lower = r.to_ascii_lowercase();
                if lower.starts_with(':') || lower == "host" {
                    return Err(ConfigError::new(
                        format!("{remove_field}[{i}]"),
                        format!("{r:?}: ':'-prefixed or host headers may not be removed"),
                    ));
                }
                header_name(r).within(format!("{remove_field}[{i}]"))
            })
            .collect::<Result<_, _>>()?;
        let add = add
            .iter()
            .enumerate()
            .map(|(i, o)| HeaderAdd::compile(o).within(format!("{add_field}[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(HeaderOps { remove, add })
    }

    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }

    /// Remove, then add.
    pub fn apply(&self, headers: &mut HeaderMap, ctx: &FormatContext<'_>) {
        for r in &self.remove {
            headers.remove(r);
        }
        for a in &self.add {
            a.apply(headers, ctx);
        }
    }
}

/// Request and response header mutations of one level (route config, virtual host, route,
/// weighted cluster).
#[derive(Debug, Clone, Default)]
pub struct HeaderMutations {
    /// `request_headers_to_add` / `request_headers_to_remove`.
    pub request: HeaderOps,
    /// `response_headers_to_add` / `response_headers_to_remove`.
    pub response: HeaderOps,
}

impl HeaderMutations {
    /// Nothing to do in either direction.
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }

    /// Compile the four fields.
    pub fn compile(
        req_add: &[core_pb::HeaderValueOption],
        req_remove: &[String],
        resp_add: &[core_pb::HeaderValueOption],
        resp_remove: &[String],
    ) -> Result<Self, ConfigError> {
        Ok(HeaderMutations {
            request: HeaderOps::compile(
                req_add,
                req_remove,
                "request_headers_to_add",
                "request_headers_to_remove",
            )?,
            response: HeaderOps::compile(
                resp_add,
                resp_remove,
                "response_headers_to_add",
                "response_headers_to_remove",
            )?,
        })
    }
}
