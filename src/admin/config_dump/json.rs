//! Proto3 JSON as Envoy's `/config_dump` prints it (protobuf's printer with proto field names):
//! fields in field-number order, default values left out (unless the field tracks presence),
//! 64-bit integers as strings, enums by name, durations as `"1.500s"`, timestamps in RFC 3339
//! with 0, 3, 6 or 9 fraction digits, bytes in base64, `Any` with `"@type"`, map keys sorted,
//! one space of indent per level, `<` and `>` escaped.
//!
//! Redaction happens while printing, as Envoy's `MessageUtil::redact` would before: below a
//! field marked `udpa.annotations.sensitive`, strings and bytes become `"[redacted]"` and other
//! scalars are dropped (map values: reset to their default). A `TypedStruct` whose type may hold
//! a sensitive field is read as its real type, so that the same rule applies inside it.
//!
//! Nothing here fails: an `Any` whose type is not in the descriptor pool, or whose bytes do not
//! decode as that type, prints as `{"@type": url, "value": "<base64 of the bytes>"}` (Envoy's
//! printer would fail the whole dump instead).

use crate::config::{is_sensitive, struct_to_json};
use envoy_types::pb::google::protobuf;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, Kind, MapKey, MessageDescriptor,
    ReflectMessage, Value,
};
use std::collections::HashMap;

mod format;
#[cfg(test)]
mod tests;

use format::{base64, camel_case, duration, f64_text, timestamp};

/// What a redacted string or bytes field holds.
const REDACTED: &str = "[redacted]";

/// JSON text, pretty-printed as protobuf's printer does.
#[derive(Debug, Default)]
pub(super) struct Writer {
    out: String,
    depth: usize,
    /// For each open object or array: nothing written in it yet.
    empty: Vec<bool>,
}

impl Writer {
    /// Open an object (`{`) or array (`[`).
    pub(super) fn open(&mut self, c: char) {
        self.out.push(c);
        self.depth += 1;
        self.empty.push(true);
    }

    /// Close what [`Writer::open`] opened.
    pub(super) fn close(&mut self, c: char) {
        self.depth = self.depth.saturating_sub(1);
        if !self.empty.pop().unwrap_or(true) {
            self.newline();
        }
        self.out.push(c);
    }

    /// Start a member of the open object.
    pub(super) fn key(&mut self, k: &str) {
        self.item();
        self.string(k);
        self.out.push_str(": ");
    }

    /// Start an element of the open array.
    pub(super) fn element(&mut self) {
        self.item();
    }

    /// A JSON string.
    pub(super) fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                '\u{8}' => self.out.push_str("\\b"),
                '\u{c}' => self.out.push_str("\\f"),
                c if (c as u32) < 0x20 || c == '<' || c == '>' => {
                    self.out.push_str(&format!("\\u{:04x}", c as u32));
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    /// A number, `true`, `false` or `null`, as it is.
    pub(super) fn raw(&mut self, s: &str) {
        self.out.push_str(s);
    }

    /// The text, with the final newline Envoy ends it with.
    pub(super) fn finish(mut self) -> String {
        self.out.push('\n');
        self.out
    }

    fn item(&mut self) {
        if let Some(empty) = self.empty.last_mut() {
            if !*empty {
                self.out.push(',');
            }
            *empty = false;
        }
        self.newline();
    }

    fn newline(&mut self) {
        self.out.push('\n');
        for _ in 0..self.depth {
            self.out.push(' ');
        }
    }
}

/// Prints messages of one descriptor pool.
pub(super) struct Printer<'p> {
    pool: &'p DescriptorPool,
    /// Whether a message type can hold a sensitive field (through its message fields).
    holds_sensitive: HashMap<String, bool>,
}

impl<'p> Printer<'p> {
    pub(super) fn new(pool: &'p DescriptorPool) -> Self {
        Printer {
            pool,
            holds_sensitive: HashMap::new(),
        }
    }

    /// `m` as the content of an `Any` of type `type_url`: `{"@type": ..., fields}`, or
    /// `{"@type": ..., "value": ...}` for a well-known type.
    pub(super) fn typed(&mut self, w: &mut Writer, type_url: &str, m: &DynamicMessage, s: bool) {
        w.open('{');
        w.key("@type");
        w.string(type_url);
        if is_well_known(m.descriptor().full_name()) {
            w.key("value");
            self.message(w, m, s);
        } else {
            self.body(w, m, s);
        }
        w.close('}');
    }

    /// An `Any` from its parts.
    pub(super) fn any(&mut self, w: &mut Writer, type_url: &str, value: &[u8], s: bool) {
        if type_url.is_empty() && value.is_empty() {
            w.open('{');
            w.close('}');
            return;
        }
        let name = type_url.rsplit('/').next().unwrap_or(type_url);
        let decoded = self
            .pool
            .get_message_by_name(name)
            .and_then(|d| DynamicMessage::decode(d, value).ok());
        match decoded {
            Some(m) => self.typed(w, type_url, &m, s),
            None => {
                w.open('{');
                w.key("@type");
                w.string(type_url);
                w.key("value");
                w.string(&base64(if s { REDACTED.as_bytes() } else { value }));
                w.close('}');
            }
        }
    }

    /// A message; `s`: below a sensitive field.
    pub(super) fn message(&mut self, w: &mut Writer, m: &DynamicMessage, s: bool) {
        let name = m.descriptor().full_name().to_string();
        let int = |n: u32| {
            m.get_field_by_number(n)
                .and_then(|v| v.as_i64())
                .unwrap_or(0)
        };
        let nanos = |n: u32| {
            m.get_field_by_number(n)
                .and_then(|v| v.as_i32())
                .unwrap_or(0)
        };
        match name.as_str() {
            "google.protobuf.Any" => {
                let url = m
                    .get_field_by_number(1)
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let value = m
                    .get_field_by_number(2)
                    .and_then(|v| v.as_bytes().cloned())
                    .unwrap_or_default();
                self.any(w, &url, &value, s);
            }
            // Below a sensitive field the seconds and nanos are cleared.
            "google.protobuf.Duration" if s => w.string("0s"),
            "google.protobuf.Duration" => w.string(&duration(int(1), nanos(2))),
            "google.protobuf.Timestamp" if s => w.string(&timestamp(0, 0)),
            "google.protobuf.Timestamp" => w.string(&timestamp(int(1), nanos(2))),
            "google.protobuf.Empty" => {
                w.open('{');
                w.close('}');
            }
            "google.protobuf.FieldMask" => {
                let paths: Vec<String> = match m.get_field_by_number(1).as_deref() {
                    Some(Value::List(l)) => l
                        .iter()
                        .filter_map(|p| p.as_str())
                        .map(|p| if s { REDACTED.into() } else { camel_case(p) })
                        .collect(),
                    _ => Vec::new(),
                };
                w.string(&paths.join(","));
            }
            "google.protobuf.Struct" => self.struct_fields(w, m, s),
            "google.protobuf.ListValue" => {
                w.open('[');
                if let Some(Value::List(l)) = m.get_field_by_number(1).as_deref() {
                    for v in l {
                        w.element();
                        self.value(w, v, &message_kind(m, 1), s);
                    }
                }
                w.close(']');
            }
            "google.protobuf.Value" => self.struct_value(w, m, s),
            n if wrapper(n) => {
                let field = m.descriptor().get_field(1);
                match (field, m.get_field_by_number(1)) {
                    (Some(f), Some(v)) => {
                        let v = if s && !stringish(&f.kind()) {
                            f.default_value()
                        } else {
                            v.into_owned()
                        };
                        self.value(w, &v, &f.kind(), s);
                    }
                    _ => w.raw("null"),
                }
            }
            _ => {
                w.open('{');
                self.body(w, m, s);
                w.close('}');
            }
        }
    }

    /// The members of a message that is not a well-known type, into an open object.
    fn body(&mut self, w: &mut Writer, m: &DynamicMessage, s: bool) {
        let desc = m.descriptor();
        let name = desc.full_name();
        if (name == "udpa.type.v1.TypedStruct" || name == "xds.type.v3.TypedStruct")
            && self.typed_struct(w, m, s)
        {
            return;
        }
        for (f, v) in m.fields() {
            let s = s || is_sensitive(f.full_name());
            let kind = f.kind();
            if f.is_map() {
                let (Value::Map(map), Kind::Message(entry)) = (v, &kind) else {
                    continue;
                };
                let value_field = entry.map_entry_value_field();
                let value_kind = value_field.kind();
                let mut entries: Vec<(&MapKey, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                w.key(f.name());
                w.open('{');
                for (k, v) in entries {
                    w.key(&map_key(k));
                    if s && !stringish(&value_kind) && !matches!(value_kind, Kind::Message(_)) {
                        self.value(w, &value_field.default_value(), &value_kind, s);
                    } else {
                        self.value(w, v, &value_kind, s);
                    }
                }
                w.close('}');
                continue;
            }
            // Below a sensitive field, scalars other than strings and bytes are cleared.
            if s && !stringish(&kind) && !matches!(kind, Kind::Message(_)) {
                continue;
            }
            w.key(f.name());
            match v {
                Value::List(items) => {
                    w.open('[');
                    for it in items {
                        w.element();
                        self.value(w, it, &kind, s);
                    }
                    w.close(']');
                }
                v => self.value(w, v, &kind, s),
            }
        }
    }

    /// A `TypedStruct` read as its real type when that type may hold a sensitive field (or the
    /// struct is below one), so that redaction applies inside. False when printed otherwise.
    fn typed_struct(&mut self, w: &mut Writer, m: &DynamicMessage, s: bool) -> bool {
        let url = m
            .get_field_by_number(1)
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let name = url.rsplit('/').next().unwrap_or(&url);
        let Some(desc) = self.pool.get_message_by_name(name) else {
            return false;
        };
        if !s && !self.holds_sensitive(&desc) {
            return false;
        }
        let st = match m.get_field_by_number(2).as_deref() {
            Some(Value::Message(v)) => v.transcode_to::<protobuf::Struct>().ok(),
            _ => Some(protobuf::Struct::default()),
        };
        let Some(st) = st else { return false };
        let opts = DeserializeOptions::new().deny_unknown_fields(false);
        let Ok(inner) = DynamicMessage::deserialize_with_options(desc, struct_to_json(&st), &opts)
        else {
            return false;
        };
        if !url.is_empty() {
            w.key("type_url");
            if s {
                w.string(REDACTED);
            } else {
                w.string(&url);
            }
        }
        w.key("value");
        self.message(w, &inner, s);
        true
    }

    fn holds_sensitive(&mut self, desc: &MessageDescriptor) -> bool {
        if let Some(v) = self.holds_sensitive.get(desc.full_name()) {
            return *v;
        }
        // Cycles: a type seen again while it is being looked at adds nothing.
        self.holds_sensitive
            .insert(desc.full_name().to_string(), false);
        let mut found = false;
        for f in desc.fields() {
            found = is_sensitive(f.full_name())
                || match f.kind() {
                    Kind::Message(m) => self.holds_sensitive(&m),
                    _ => false,
                };
            if found {
                break;
            }
        }
        self.holds_sensitive
            .insert(desc.full_name().to_string(), found);
        found
    }

    fn value(&mut self, w: &mut Writer, v: &Value, kind: &Kind, s: bool) {
        match v {
            Value::Bool(b) => w.raw(if *b { "true" } else { "false" }),
            Value::I32(n) => w.raw(&n.to_string()),
            Value::U32(n) => w.raw(&n.to_string()),
            Value::I64(n) => w.string(&n.to_string()),
            Value::U64(n) => w.string(&n.to_string()),
            Value::F32(x) => float(w, *x as f64, x.to_string()),
            Value::F64(x) => float(w, *x, f64_text(*x)),
            Value::String(t) => w.string(if s { REDACTED } else { t }),
            Value::Bytes(b) => w.string(&base64(if s { REDACTED.as_bytes() } else { b })),
            Value::EnumNumber(n) => match kind {
                Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => w.raw("null"),
                Kind::Enum(e) => match e.get_value(*n) {
                    Some(ev) => w.string(ev.name()),
                    None => w.raw(&n.to_string()),
                },
                _ => w.raw(&n.to_string()),
            },
            Value::Message(m) => self.message(w, m, s),
            Value::List(items) => {
                w.open('[');
                for it in items {
                    w.element();
                    self.value(w, it, kind, s);
                }
                w.close(']');
            }
            Value::Map(_) => w.raw("null"),
        }
    }

    fn struct_fields(&mut self, w: &mut Writer, m: &DynamicMessage, s: bool) {
        w.open('{');
        if let Some(Value::Map(map)) = m.get_field_by_number(1).as_deref() {
            let mut entries: Vec<(&MapKey, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            for (k, v) in entries {
                w.key(&map_key(k));
                match v {
                    Value::Message(v) => self.struct_value(w, v, s),
                    _ => w.raw("null"),
                }
            }
        }
        w.close('}');
    }

    /// A `google.protobuf.Value`. Below a sensitive field a number or bool is cleared (the
    /// value then has no kind, printed as `null`).
    fn struct_value(&mut self, w: &mut Writer, m: &DynamicMessage, s: bool) {
        let Some((f, v)) = m.fields().next() else {
            w.raw("null");
            return;
        };
        match (f.number(), v) {
            (2, Value::F64(x)) if !s => float(w, *x, f64_text(*x)),
            (3, Value::String(t)) => w.string(if s { REDACTED } else { t }),
            (4, Value::Bool(b)) if !s => w.raw(if *b { "true" } else { "false" }),
            (5, Value::Message(st)) => self.struct_fields(w, st, s),
            (6, Value::Message(l)) => self.message(w, l, s),
            _ => w.raw("null"),
        }
    }
}

/// The kind of field `n` of `m`.
fn message_kind(m: &DynamicMessage, n: u32) -> Kind {
    m.descriptor()
        .get_field(n)
        .map(|f| f.kind())
        .unwrap_or(Kind::Bool)
}

fn stringish(k: &Kind) -> bool {
    matches!(k, Kind::String | Kind::Bytes)
}

fn wrapper(name: &str) -> bool {
    matches!(
        name,
        "google.protobuf.DoubleValue"
            | "google.protobuf.FloatValue"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.Int32Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.BoolValue"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
    )
}

/// Types with a special JSON form, which an `Any` holds under `"value"`.
fn is_well_known(name: &str) -> bool {
    wrapper(name)
        || matches!(
            name,
            "google.protobuf.Any"
                | "google.protobuf.Duration"
                | "google.protobuf.Timestamp"
                | "google.protobuf.Empty"
                | "google.protobuf.FieldMask"
                | "google.protobuf.Struct"
                | "google.protobuf.ListValue"
                | "google.protobuf.Value"
        )
}

fn map_key(k: &MapKey) -> String {
    match k {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
        MapKey::String(s) => s.clone(),
    }
}

/// A float: a number, or `"NaN"`, `"Infinity"`, `"-Infinity"`.
fn float(w: &mut Writer, x: f64, text: String) {
    if x.is_nan() {
        w.string("NaN");
    } else if x == f64::INFINITY {
        w.string("Infinity");
    } else if x == f64::NEG_INFINITY {
        w.string("-Infinity");
    } else {
        w.raw(&text);
    }
}
