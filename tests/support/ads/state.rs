//! State shared by the server's handle and its stream tasks: the resource store and the records.

use super::*;

pub(super) struct Shared {
    pub(super) inner: Mutex<Inner>,
    /// Bumped on every recorded request and every stream opened or closed.
    pub(super) changed: watch::Sender<u64>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    pub(super) fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(super) fn broadcast(&self, only: Option<Protocol>, control: impl Fn() -> Control) -> usize {
        self.lock().broadcast(only, control)
    }
}

#[derive(Default)]
pub(super) struct Inner {
    pub(super) store: Store,
    pub(super) auto: bool,
    pub(super) last_nonce: u64,
    pub(super) streams: BTreeMap<StreamId, StreamEntry>,
    pub(super) requests: Vec<Received>,
    pub(super) responses: Vec<Sent>,
}

pub(super) struct StreamEntry {
    pub(super) info: StreamInfo,
    /// `None` once the stream ended.
    pub(super) control: Option<mpsc::UnboundedSender<Control>>,
}

impl Inner {
    pub(super) fn nonce(&mut self) -> String {
        self.last_nonce += 1;
        self.last_nonce.to_string()
    }

    pub(super) fn open_streams(&self) -> usize {
        self.streams.values().filter(|s| s.info.open).count()
    }

    /// Send a control message to each open stream (of one protocol); returns how many.
    pub(super) fn broadcast(&self, only: Option<Protocol>, control: impl Fn() -> Control) -> usize {
        let mut n = 0;
        for s in self.streams.values() {
            if only.is_some_and(|p| p != s.info.protocol) {
                continue;
            }
            if let Some(c) = &s.control
                && c.send(control()).is_ok()
            {
                n += 1;
            }
        }
        n
    }

    pub(super) fn dump(&self) -> String {
        let mut out = format!(
            "streams opened: {}, open: {}\nrequests received:\n",
            self.streams.len(),
            self.open_streams()
        );
        for (i, r) in self.requests.iter().enumerate() {
            let line = match &r.request {
                XdsRequest::Sotw(q) => format!(
                    "sotw {} version={:?} nonce={:?} names={:?}",
                    q.type_url, q.version_info, q.response_nonce, q.resource_names
                ),
                XdsRequest::Delta(q) => format!(
                    "delta {} nonce={:?} subscribe={:?} unsubscribe={:?} initial={:?}",
                    q.type_url,
                    q.response_nonce,
                    q.resource_names_subscribe,
                    q.resource_names_unsubscribe,
                    q.initial_resource_versions
                ),
            };
            let nack = if r.is_nack() { " NACK" } else { "" };
            out.push_str(&format!("  #{i} stream {}: {line}{nack}\n", r.stream));
        }
        out
    }
}

#[derive(Default)]
pub(super) struct Store {
    pub(super) system_version: u64,
    /// Every change, in order: (type URL, name; `None` for the whole type). A delta stream
    /// reads the changes since its last response of a type instead of walking every resource
    /// (10,000 of them in the scale bench).
    pub(super) changes: Vec<(String, Option<String>)>,
    pub(super) types: BTreeMap<String, TypeEntry>,
}

#[derive(Default)]
pub(super) struct TypeEntry {
    pub(super) version: String,
    pub(super) resources: BTreeMap<String, Stored>,
}

pub(super) struct Stored {
    pub(super) version: String,
    pub(super) resource: Any,
}

impl Store {
    /// Apply the operations under one new version; returns the types that changed.
    pub(super) fn apply(&mut self, ops: Vec<Op>) -> BTreeSet<String> {
        let version = (self.system_version + 1).to_string();
        let mut touched = BTreeSet::new();
        for op in ops {
            match op {
                Op::Set(type_url, name, resource) => {
                    let entry = self.types.entry(type_url.clone()).or_default();
                    let stored = Stored {
                        version: version.clone(),
                        resource,
                    };
                    entry.resources.insert(name.clone(), stored);
                    self.changes.push((type_url.clone(), Some(name)));
                    touched.insert(type_url);
                }
                Op::Remove(type_url, name) => {
                    let entry = self.types.get_mut(&type_url);
                    if entry.is_some_and(|e| e.resources.remove(&name).is_some()) {
                        self.changes.push((type_url.clone(), Some(name)));
                        touched.insert(type_url);
                    }
                }
                Op::Touch(type_url) => {
                    let entry = self.types.entry(type_url.clone()).or_default();
                    for r in entry.resources.values_mut() {
                        r.version = version.clone();
                    }
                    self.changes.push((type_url.clone(), None));
                    touched.insert(type_url);
                }
            }
        }
        if !touched.is_empty() {
            self.system_version += 1;
            for t in &touched {
                self.types.entry(t.clone()).or_default().version = version.clone();
            }
        }
        touched
    }

    pub(super) fn type_version(&self, type_url: &str) -> String {
        self.types
            .get(type_url)
            .map(|t| t.version.clone())
            .unwrap_or_default()
    }

    pub(super) fn get(&self, type_url: &str, name: &str) -> Option<&Stored> {
        self.types.get(type_url)?.resources.get(name)
    }

    pub(super) fn resources<'a>(
        &'a self,
        type_url: &str,
    ) -> impl Iterator<Item = (&'a String, &'a Stored)> {
        self.types
            .get(type_url)
            .into_iter()
            .flat_map(|t| t.resources.iter())
    }
}
