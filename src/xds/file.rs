//! `path_config_source`: LDS or CDS from a file holding a `DiscoveryResponse` (YAML, JSON, or
//! binary `.pb`), as Envoy reads it. The file is read at start and again whenever it changes
//! (checked every second by modification time, size and inode, which also catches the atomic
//! rename Envoy's docs recommend). A file that does not parse or holds an invalid resource is
//! rejected with a log line and the type's `update_rejected` counter; the last good
//! configuration stays.

use super::store::{Incoming, Update};
use super::{Kind, Shared, SourceKey};
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

const POLL: Duration = Duration::from_secs(1);

/// Watch `path` for resources of `kind`, for ever.
pub async fn watch(path: PathBuf, kind: Kind, shared: Arc<Shared>) {
    let mut last: Option<(i64, i64, u64, u64)> = None;
    loop {
        let stamp = tokio::fs::metadata(&path)
            .await
            .ok()
            .map(|m| (m.mtime(), m.mtime_nsec(), m.len(), m.ino()));
        if stamp.is_some() && stamp != last {
            last = stamp;
            load(&path, kind, &shared).await;
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn load(path: &PathBuf, kind: Kind, shared: &Shared) {
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => b,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "xds file: cannot read");
            return;
        }
    };
    let update = match crate::config::decode_message_file::<DiscoveryResponse>(path, &bytes) {
        Ok(resp) => {
            if !resp.type_url.is_empty() && resp.type_url != kind.type_url() {
                warn!(path = %path.display(), type_url = %resp.type_url, "xds file: wrong type_url");
            }
            Update {
                kind,
                source: SourceKey::Path(path.clone()),
                version_info: resp.version_info.clone(),
                resources: resp
                    .resources
                    .into_iter()
                    .map(|any| Incoming {
                        name: String::new(),
                        version: resp.version_info.clone(),
                        any,
                    })
                    .collect(),
                removed: Vec::new(),
                state_of_world: true,
            }
        }
        Err(e) => {
            warn!(path = %path.display(), error = %e, "xds file: does not parse");
            shared.with_store(|s| s.count_rejected(kind));
            return;
        }
    };
    let outcome = shared.with_store(|s| s.apply(update));
    match outcome.error {
        None => info!(path = %path.display(), kind = kind.short(), "xds file: applied"),
        Some(e) => warn!(path = %path.display(), error = %e, "xds file: rejected"),
    }
}
