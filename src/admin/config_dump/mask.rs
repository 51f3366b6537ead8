//! `?mask=`: a `FieldMask` (comma-separated paths of snake_case field names) that trims each
//! dumped message to the fields it names, as protobuf's `FieldMaskUtil::TrimMessage` does.
//!
//! A path is valid when every name in it is a field of the message reached so far and every
//! name but the last is a singular message field (a mask cannot index into a repeated field or
//! a map). For one resource (`?resource=`) a path may go on through the resource's single `Any`
//! field (`cluster.name` on a `StaticCluster`): the part after the `Any` is applied to the
//! message it holds, as Envoy does.

use prost::Message;
use prost_reflect::Value;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, ReflectMessage};
use std::collections::BTreeMap;

/// A set of paths as a tree: a leaf keeps its whole field.
#[derive(Debug, Default)]
struct Node {
    leaf: bool,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn of(paths: &[String]) -> Node {
        let mut root = Node::default();
        for p in paths {
            let mut n = &mut root;
            for part in p.split('.') {
                if n.leaf {
                    break;
                }
                n = n.children.entry(part.to_string()).or_default();
            }
            n.leaf = true;
            n.children.clear();
        }
        root
    }
}

/// Whether `path` names a field of `desc`.
pub(super) fn valid(desc: &MessageDescriptor, path: &str) -> bool {
    let mut desc = desc.clone();
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Some(f) = desc.get_field_by_name(part) else {
            return false;
        };
        if parts.peek().is_some() {
            match f.kind() {
                Kind::Message(m) if !f.is_list() && !f.is_map() => desc = m,
                _ => return false,
            }
        }
    }
    true
}

/// Trim `m` to `paths` when all are valid for it; false (and `m` untouched) otherwise. No
/// paths at all keep everything, as in Envoy (`?mask=`).
pub(super) fn trim(m: &mut DynamicMessage, paths: &[String]) -> bool {
    let desc = m.descriptor();
    if !paths.iter().all(|p| valid(&desc, p)) {
        return false;
    }
    if !paths.is_empty() {
        trim_node(m, &Node::of(paths));
    }
    true
}

fn trim_node(m: &mut DynamicMessage, node: &Node) {
    for f in m.descriptor().fields() {
        match node.children.get(f.name()) {
            None => m.clear_field(&f),
            Some(child) if child.leaf => {}
            Some(child) => {
                if m.has_field(&f)
                    && let Value::Message(sub) = m.get_field_mut(&f)
                {
                    trim_node(sub, child);
                }
            }
        }
    }
}

/// Trim one resource of a dump (`StaticCluster`, `DynamicListener`...). Paths that start with
/// a singular `Any` field are split: the first name stays in the outer mask, the rest is applied
/// to the message the `Any` holds (which must then be a type of `pool`). False when a path is
/// invalid for the message it reaches.
pub(super) fn trim_resource(
    m: &mut DynamicMessage,
    paths: &[String],
    pool: &DescriptorPool,
) -> bool {
    let desc = m.descriptor();
    let mut outer: Vec<String> = Vec::new();
    let mut inner: Vec<String> = Vec::new();
    let mut any_field = None;
    for p in paths {
        let (head, rest) = match p.split_once('.') {
            Some((h, r)) => (h, Some(r)),
            None => (p.as_str(), None),
        };
        let is_any = desc.get_field_by_name(head).is_some_and(|f| {
            !f.is_list()
                && matches!(f.kind(), Kind::Message(k) if k.full_name() == "google.protobuf.Any")
        });
        if is_any {
            any_field = Some(head.to_string());
            outer.push(head.to_string());
            inner.push(rest.unwrap_or("").to_string());
        } else {
            outer.push(p.clone());
        }
    }
    if let Some(name) = any_field
        && let Some(f) = desc.get_field_by_name(&name)
        && m.has_field(&f)
        && let Value::Message(any) = m.get_field_mut(&f)
    {
        let url = any
            .get_field_by_number(1)
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let Some(inner_desc) = pool.get_message_by_name(url.rsplit('/').next().unwrap_or(&url))
        else {
            return false;
        };
        let bytes = any
            .get_field_by_number(2)
            .and_then(|v| v.as_bytes().cloned())
            .unwrap_or_default();
        let Ok(mut inner_msg) = DynamicMessage::decode(inner_desc, bytes) else {
            return false;
        };
        if !trim(&mut inner_msg, &inner) {
            return false;
        }
        any.set_field_by_number(2, Value::Bytes(inner_msg.encode_to_vec().into()));
    }
    trim(m, &outer)
}

/// The mask as protobuf's debug form prints it, for error messages.
pub(super) fn debug(paths: &[String]) -> String {
    paths
        .iter()
        .map(|p| format!("paths: {p:?}"))
        .collect::<Vec<_>>()
        .join(" ")
}
