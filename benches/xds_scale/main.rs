//! xDS at Istio scale: tern (the release binary, a separate process) follows the test ADS
//! server (`tests/support/ads/`) through one push of 10,000 EDS clusters, 100,000 endpoints,
//! one listener and one route configuration with 10,000 virtual hosts, shaped like istiod's
//! outbound configuration. It measures:
//!
//! 1. the time from handing the batch to the ADS server to tern's ACK, per type (CDS, EDS, LDS,
//!    RDS);
//! 2. tern's resident memory before and after, and (in a second, staged tern) the bytes per
//!    cluster, per endpoint and per virtual host;
//! 3. a delta update that changes one cluster's endpoints (hand-off to ACK, repeated);
//! 4. request latency through tern to a real upstream while all of that happens: a quiet
//!    baseline, the one-cluster updates, and full re-pushes of all clusters and endpoints.
//!
//! `cargo bench --bench xds_scale` runs it with `DELTA_GRPC`; `XDS_MODE=sotw` (or `-- --sotw`)
//! with state of the world, `XDS_MODE=both` (or `-- --both`) runs both. The report is printed
//! and written to `benches/out/xds_scale.txt` (and `xds_scale-<mode>.txt`). See benches/README.md.

#[allow(dead_code, unused_imports)]
#[path = "../../tests/support/ads/mod.rs"]
mod ads;

use ads::{AdsServer, Batch, XdsRequest};
use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::{
    RouteConfiguration, VirtualHost, route::Action, route_action::ClusterSpecifier,
};
use envoy_types::pb::google::protobuf::{self as pb, Any, value::Kind as ValueKind};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use prost::Name;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

mod config;
mod load;
mod process;
mod record;
mod run;

use config::*;
use load::*;
use process::*;
use record::*;
use run::*;

// ---- scale and knobs ----

const CLUSTERS: usize = 10_000;
const ENDPOINTS_PER_CLUSTER: usize = 10;
const NAMESPACES: usize = 100;
/// The cluster whose endpoints are the real upstream servers.
const HOT: usize = 4242;
/// How long any single step may take before the bench gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Knobs {
    /// One-cluster updates (`UPDATES`, default 50).
    updates: usize,
    /// Full re-pushes of every cluster and endpoint (`REPUSHES`, default 3).
    repushes: usize,
    /// Load generator connections (`CONNS`, default 16) and total rate (`LOAD_RPS`, 2000).
    conns: usize,
    rps: usize,
    /// Quiet baseline window (`BASELINE_S`, default 5 s).
    baseline: Duration,
    /// Run the staged memory run (`MEM_SPLIT`, default 1).
    mem_split: bool,
}

impl Knobs {
    fn from_env() -> Knobs {
        Knobs {
            updates: env_usize("UPDATES", 50),
            repushes: env_usize("REPUSHES", 3),
            conns: env_usize("CONNS", 16).max(1),
            rps: env_usize("LOAD_RPS", 2000).max(1),
            baseline: Duration::from_secs(env_usize("BASELINE_S", 5) as u64),
            mem_split: env_usize("MEM_SPLIT", 1) != 0,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Delta,
    Sotw,
}

impl Mode {
    fn api_type(self) -> &'static str {
        match self {
            Mode::Delta => "DELTA_GRPC",
            Mode::Sotw => "GRPC",
        }
    }
    fn short(self) -> &'static str {
        match self {
            Mode::Delta => "delta",
            Mode::Sotw => "sotw",
        }
    }
}

fn modes() -> anyhow::Result<Vec<Mode>> {
    let mut m = std::env::var("XDS_MODE").unwrap_or_default();
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--sotw" => m = "sotw".into(),
            "--delta" => m = "delta".into(),
            "--both" => m = "both".into(),
            _ => {} // `--bench` from cargo, filters
        }
    }
    Ok(match m.to_ascii_lowercase().as_str() {
        "" | "delta" | "delta_grpc" => vec![Mode::Delta],
        "sotw" | "grpc" => vec![Mode::Sotw],
        "both" => vec![Mode::Delta, Mode::Sotw],
        other => bail!("XDS_MODE={other}: use delta, sotw or both"),
    })
}

fn main() -> anyhow::Result<()> {
    let modes = modes()?;
    let knobs = Knobs::from_env();
    let paths = paths()?;
    let started = chrono_like_now();
    let mut all = format!(
        "xds_scale ({started}), {} CPUs, updates={} repushes={} conns={} rps={}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        knobs.updates,
        knobs.repushes,
        knobs.conns,
        knobs.rps
    );
    for mode in modes {
        eprintln!("xds_scale: running {}", mode.api_type());
        let r = run_mode(mode, &knobs, &paths)?;
        std::fs::write(
            paths.out.join(format!("xds_scale-{}.txt", mode.short())),
            &r,
        )?;
        println!("{r}");
        all.push('\n');
        all.push_str(&r);
    }
    std::fs::write(paths.out.join("xds_scale.txt"), &all)?;
    eprintln!(
        "xds_scale: report written to {}",
        paths.out.join("xds_scale.txt").display()
    );
    Ok(())
}

/// UTC date and time from `date`, for the report header.
fn chrono_like_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%SZ"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
