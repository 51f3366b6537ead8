//! Envoy's `/config_dump`: the configuration tern runs, as Envoy's admin API prints it
//! (`envoy.admin.v3.ConfigDump` in the proto3 JSON mapping), so that `istioctl proxy-config`
//! and other tools read tern as they read Envoy.
//!
//! The dump is `{"configs": [...]}` with one section per kind of resource, in Envoy's order:
//! bootstrap, clusters, endpoints (only with `?include_eds`), listeners, scoped routes, routes,
//! secrets. Query parameters, as in Envoy:
//! - `resource=<field>`: each element of that repeated field of a section (for example
//!   `dynamic_active_clusters`) is its own config; 404 when no section has the field, 400 when
//!   it is not repeated;
//! - `mask=<paths>`: a field mask applied to each section (sections it does not fit are left
//!   out; 400 when it fits none), or with `resource` to each resource, through its `Any`
//!   (`cluster.name`);
//! - `name_regex=<re2>`: only resources whose name fully matches;
//! - `include_eds`: the endpoints section, from each cluster's live hosts.
//!
//! Secret material (fields marked `udpa.annotations.sensitive`: private keys, passwords,
//! generic secrets) prints as `"[redacted]"`. A resource that cannot be printed never fails the
//! dump (see [`json`]).
//!
//! The xDS store is held only while `Arc`s, names, versions and times are copied out of it
//! ([`collect`]); building the protos, decoding and printing happen outside its lock.
//!
//! This module reads the bootstrap, the world and the xDS store; it writes nothing.

mod collect;
pub(super) mod endpoints;
mod json;
mod mask;
mod sections;
#[cfg(test)]
mod tests;

use crate::snapshot::World;
use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage, Value};
use regex::Regex;

/// The query of a `/config_dump` request.
#[derive(Debug, Clone, Default)]
pub struct DumpQuery {
    /// `resource`: the name of a repeated field of one of the sections.
    pub resource: Option<String>,
    /// `mask`: comma-separated field paths, as given.
    pub mask: Option<String>,
    /// `name_regex`, anchored at both ends (RE2 full match, as Envoy matches it).
    pub name_regex: Option<Regex>,
    /// `include_eds` was given.
    pub include_eds: bool,
}

/// Why a dump was refused: the status and text Envoy answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DumpError {
    /// 400 (bad mask, non-repeated resource) or 404 (no such resource).
    pub status: u16,
    /// The plain-text body.
    pub message: String,
}

impl DumpError {
    fn new(status: u16, message: String) -> Self {
        DumpError { status, message }
    }
}

/// One section, encoded: `envoy.admin.v3.ClustersConfigDump`...
struct Section {
    type_name: String,
    bytes: Vec<u8>,
}

impl DumpQuery {
    /// Read the query string (with or without its `?`). Parameters are percent-decoded; the
    /// first of a repeated parameter counts; unknown ones are ignored. A `name_regex` that does
    /// not compile is an error (Envoy answers 400 with this text).
    pub fn parse(query: Option<&str>) -> Result<DumpQuery, String> {
        let mut q = DumpQuery::default();
        let mut seen = std::collections::HashSet::new();
        for (k, v) in crate::protocol::query::parse(query.unwrap_or("")) {
            if !seen.insert(k.clone()) {
                continue;
            }
            match k.as_str() {
                "resource" => q.resource = Some(v),
                "mask" => q.mask = Some(v),
                "include_eds" => q.include_eds = true,
                "name_regex" if !v.is_empty() => {
                    let bad = |e: regex::Error| {
                        format!("INVALID_ARGUMENT: Error while parsing name_regex from {v}: {e}")
                    };
                    // Checked alone first: once it compiles, its parentheses balance and the
                    // anchored form means what it says.
                    Regex::new(&v).map_err(bad)?;
                    q.name_regex = Some(Regex::new(&format!("^(?:{v})$")).map_err(bad)?);
                }
                _ => {}
            }
        }
        Ok(q)
    }

    /// Whether a resource of this name is shown.
    fn name_matches(&self, name: &str) -> bool {
        self.name_regex.as_ref().is_none_or(|r| r.is_match(name))
    }

    /// The mask's paths (empty ones dropped, as protobuf's `FieldMaskUtil::FromString` does).
    fn mask_paths(&self) -> Option<Vec<String>> {
        self.mask.as_ref().map(|m| {
            m.split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        })
    }
}

/// Render the dump as Envoy's JSON (pretty-printed, one space per level, ending in a newline).
/// `xds` is the running client, if the bootstrap has dynamic resources.
pub fn render(
    bootstrap: &Bootstrap,
    world: &World,
    xds: Option<&crate::xds::Xds>,
    q: &DumpQuery,
) -> Result<String, DumpError> {
    let dynamic = xds
        .map(|x| x.with_store(|s| collect::Dynamic::copy(s)))
        .unwrap_or_default();
    render_from(bootstrap, world, dynamic, q)
}

fn render_from(
    bootstrap: &Bootstrap,
    world: &World,
    dynamic: collect::Dynamic,
    q: &DumpQuery,
) -> Result<String, DumpError> {
    let inputs = sections::Inputs {
        bootstrap,
        world,
        dynamic,
        query: q,
    };
    let sections = sections::sections(&inputs);
    drop(inputs);
    let pool = crate::config::pool();
    let configs = select(&pool, sections, q)?;
    let mut w = json::Writer::default();
    let mut p = json::Printer::new(&pool);
    w.open('{');
    if !configs.is_empty() {
        w.key("configs");
        w.open('[');
        for m in &configs {
            w.element();
            let url = format!("type.googleapis.com/{}", m.descriptor().full_name());
            p.typed(&mut w, &url, m, false);
        }
        w.close(']');
    }
    w.close('}');
    Ok(w.finish())
}

/// The configs to print: the sections (masked), or the elements of `resource` (masked).
fn select(
    pool: &DescriptorPool,
    sections: Vec<Section>,
    q: &DumpQuery,
) -> Result<Vec<DynamicMessage>, DumpError> {
    let decoded = sections.into_iter().filter_map(|s| {
        let desc = pool.get_message_by_name(&s.type_name)?;
        DynamicMessage::decode(desc, s.bytes.as_slice()).ok()
    });
    let paths = q.mask_paths();
    let Some(resource) = &q.resource else {
        let mut out = Vec::new();
        for mut m in decoded {
            if let Some(paths) = &paths
                && !mask::trim(&mut m, paths)
            {
                continue;
            }
            out.push(m);
        }
        if out.is_empty()
            && let Some(mask) = &q.mask
        {
            return Err(DumpError::new(
                400,
                format!("FieldMask {mask} could not be successfully applied to any configs."),
            ));
        }
        return Ok(out);
    };
    for mut m in decoded {
        let Some(f) = m.descriptor().get_field_by_name(resource) else {
            continue;
        };
        if !f.is_list() {
            return Err(DumpError::new(
                400,
                format!(
                    "{0} is not a repeated field. Use ?mask={0} to get only this field",
                    f.name()
                ),
            ));
        }
        let mut out = Vec::new();
        let Some(Value::List(items)) = m.take_field(&f) else {
            return Ok(out);
        };
        for item in items {
            let Value::Message(mut item) = item else {
                continue;
            };
            if let Some(paths) = &paths
                && !mask::trim_resource(&mut item, paths, pool)
            {
                return Err(DumpError::new(
                    400,
                    format!(
                        "FieldMask {} could not be successfully used.",
                        mask::debug(paths)
                    ),
                ));
            }
            out.push(item);
        }
        return Ok(out);
    }
    Err(DumpError::new(
        404,
        format!("{resource} not found in config dump"),
    ))
}
