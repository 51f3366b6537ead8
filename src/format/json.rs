//! JSON formats (`json_format`): an object whose string values are format strings. A value
//! that is exactly one operator keeps its type (numbers stay numbers; a missing value is
//! `null`, or the key is left out with `omit_empty_values`); other strings render as text
//! (a missing value inside one is `-`).
//! Literal numbers, booleans, nested objects and lists are kept. Keys come out sorted, as
//! Envoy prints them.

use super::{Formatter, ParseOptions, Source, Written, write_command};
use crate::config::{ConfigError, Within};
use crate::stream_info::Needs;
use envoy_types::pb::google::protobuf::{self, value::Kind};
use std::fmt::Write;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    Number(f64),
    Format(Formatter),
    Object(Vec<(String, Node)>),
    List(Vec<Node>),
}

/// A compiled `json_format`.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonFormat {
    root: Vec<(String, Node)>,
    omit_empty: bool,
}

fn compile_value(v: &protobuf::Value, opts: ParseOptions) -> Result<Node, ConfigError> {
    Ok(match &v.kind {
        None | Some(Kind::NullValue(_)) => Node::Null,
        Some(Kind::BoolValue(b)) => Node::Bool(*b),
        Some(Kind::NumberValue(n)) => Node::Number(*n),
        Some(Kind::StringValue(s)) => Node::Format(Formatter::parse_with(s, opts)?),
        Some(Kind::StructValue(s)) => Node::Object(compile_struct(s, opts)?),
        Some(Kind::ListValue(l)) => Node::List(
            l.values
                .iter()
                .enumerate()
                .map(|(i, v)| compile_value(v, opts).within(format!("[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn compile_struct(
    s: &protobuf::Struct,
    opts: ParseOptions,
) -> Result<Vec<(String, Node)>, ConfigError> {
    let mut fields: Vec<(String, Node)> = s
        .fields
        .iter()
        .map(|(k, v)| Ok((k.clone(), compile_value(v, opts).within(k)?)))
        .collect::<Result<_, ConfigError>>()?;
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(fields)
}

impl JsonFormat {
    /// Compile a `json_format` struct.
    pub fn compile(
        s: &protobuf::Struct,
        omit_empty: bool,
        opts: ParseOptions,
    ) -> Result<JsonFormat, ConfigError> {
        Ok(JsonFormat {
            root: compile_struct(s, opts)?,
            omit_empty,
        })
    }

    /// What rendering reads beyond the record's fixed fields.
    pub fn needs(&self) -> Needs {
        fn walk(n: &Node, acc: Needs) -> Needs {
            match n {
                Node::Format(f) => acc.union(f.needs()),
                Node::Object(o) => o.iter().fold(acc, |a, (_, n)| walk(n, a)),
                Node::List(l) => l.iter().fold(acc, |a, n| walk(n, a)),
                _ => acc,
            }
        }
        self.root
            .iter()
            .fold(Needs::default(), |a, (_, n)| walk(n, a))
    }

    /// Append one JSON object and a newline to `out`. `scratch` is reused between values.
    pub fn write<S: Source + ?Sized>(&self, src: &S, out: &mut String, scratch: &mut String) {
        self.write_object(&self.root, src, out, scratch);
        out.push('\n');
    }

    fn write_object<S: Source + ?Sized>(
        &self,
        fields: &[(String, Node)],
        src: &S,
        out: &mut String,
        scratch: &mut String,
    ) {
        out.push('{');
        let mut first = true;
        for (k, n) in fields {
            let mark = out.len();
            if !first {
                out.push(',');
            }
            escape(k, out);
            out.push(':');
            if self.write_node(n, src, out, scratch) {
                first = false;
            } else {
                // Left out: an empty value with omit_empty_values.
                out.truncate(mark);
            }
        }
        out.push('}');
    }

    /// Write one value; false when it is to be left out.
    fn write_node<S: Source + ?Sized>(
        &self,
        n: &Node,
        src: &S,
        out: &mut String,
        scratch: &mut String,
    ) -> bool {
        match n {
            Node::Null => out.push_str("null"),
            Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Node::Number(v) => number(*v, out),
            Node::Object(o) => self.write_object(o, src, out, scratch),
            Node::List(l) => {
                out.push('[');
                for (i, n) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if !self.write_node(n, src, out, scratch) {
                        out.push_str("null");
                    }
                }
                out.push(']');
            }
            Node::Format(f) => {
                scratch.clear();
                if let Some((c, max)) = f.single_command() {
                    match write_command(c, max, src, scratch, "") {
                        Written::Missing => {
                            if self.omit_empty {
                                return false;
                            }
                            out.push_str("null");
                        }
                        Written::Num if max.is_none() => out.push_str(scratch),
                        _ => escape(scratch, out),
                    }
                } else {
                    f.write(src, scratch, if self.omit_empty { "" } else { "-" });
                    escape(scratch, out);
                }
            }
        }
        true
    }
}

/// A JSON number: integers without a fraction, as protobuf's JSON printer writes them.
fn number(v: f64, out: &mut String) {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.007_199_254_740_992e15 {
        let _ = write!(out, "{}", v as i64);
    } else if v.is_finite() {
        let _ = write!(out, "{v}");
    } else {
        out.push_str("null");
    }
}

/// Append `s` as a JSON string.
pub(crate) fn escape(s: &str, out: &mut String) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push_str(esc);
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}
