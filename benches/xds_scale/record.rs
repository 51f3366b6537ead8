//! What tern sends: every request the ADS server records, with when it was seen.

use super::*;

#[derive(Clone, Debug)]
pub(crate) struct Ev {
    pub(crate) at: Instant,
    pub(crate) type_url: String,
    pub(crate) nonce: String,
    /// SotW `version_info` (empty for delta).
    pub(crate) version: String,
    pub(crate) nack: Option<String>,
    /// SotW `resource_names` or delta `resource_names_subscribe`.
    pub(crate) names: usize,
}

impl Ev {
    pub(crate) fn of(r: &XdsRequest, at: Instant) -> Ev {
        match r {
            XdsRequest::Sotw(q) => Ev {
                at,
                type_url: q.type_url.clone(),
                nonce: q.response_nonce.clone(),
                version: q.version_info.clone(),
                nack: q.error_detail.as_ref().map(|e| e.message.clone()),
                names: q.resource_names.len(),
            },
            XdsRequest::Delta(q) => Ev {
                at,
                type_url: q.type_url.clone(),
                nonce: q.response_nonce.clone(),
                version: String::new(),
                nack: q.error_detail.as_ref().map(|e| e.message.clone()),
                names: q.resource_names_subscribe.len(),
            },
        }
    }
}

#[derive(Default)]
pub(crate) struct Log {
    pub(crate) events: Mutex<Vec<Ev>>,
    pub(crate) cv: Condvar,
}

impl Log {
    pub(crate) fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// The first event after `from` matching `pred`, with its index.
    pub(crate) fn wait(
        &self,
        from: usize,
        what: &str,
        pred: impl Fn(&Ev) -> bool,
    ) -> anyhow::Result<(usize, Ev)> {
        self.wait_within(from, what, pred, STEP_TIMEOUT)
    }

    pub(crate) fn wait_within(
        &self,
        from: usize,
        what: &str,
        pred: impl Fn(&Ev) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<(usize, Ev)> {
        let deadline = Instant::now() + timeout;
        let mut ev = self.events.lock().unwrap();
        loop {
            if let Some((i, e)) = ev.iter().enumerate().skip(from).find(|(_, e)| pred(e)) {
                return Ok((i, e.clone()));
            }
            let now = Instant::now();
            if now >= deadline {
                let tail: Vec<String> = ev
                    .iter()
                    .skip(from)
                    .map(|e| {
                        format!(
                            "{} nonce={} v={} nack={:?}",
                            short(&e.type_url),
                            e.nonce,
                            e.version,
                            e.nack
                        )
                    })
                    .collect();
                bail!("no {what} within {timeout:?}; requests since: {tail:?}");
            }
            ev = self.cv.wait_timeout(ev, deadline - now).unwrap().0;
        }
    }

    /// Wait for tern's ACK (or NACK: an error) of the response of `type_url` sent after
    /// request `from`; in SotW it must carry `version`.
    pub(crate) fn ack(
        &self,
        from: usize,
        type_url: &str,
        version: &str,
        mode: Mode,
    ) -> anyhow::Result<Ev> {
        let (_, e) = self.wait(from, &format!("{} ACK", short(type_url)), |e| {
            e.type_url == type_url
                && !e.nonce.is_empty()
                && (e.nack.is_some() || mode == Mode::Delta || e.version == version)
        })?;
        if let Some(m) = &e.nack {
            bail!("tern NACKed {}: {m}", short(type_url));
        }
        Ok(e)
    }

    /// The first subscription request (no nonce) of a type after `from`.
    pub(crate) fn subscription(&self, from: usize, type_url: &str) -> anyhow::Result<Ev> {
        Ok(self
            .wait(from, &format!("{} subscription", short(type_url)), |e| {
                e.type_url == type_url && e.nonce.is_empty()
            })?
            .1)
    }

    /// Wait until tern has sent nothing for `quiet`.
    pub(crate) fn quiesce(&self, quiet: Duration) {
        let start = Instant::now();
        loop {
            let last = self.events.lock().unwrap().last().map(|e| e.at);
            let since = last.map_or(start, |l| l.max(start));
            let wait = (since + quiet).saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return;
            }
            std::thread::sleep(wait);
        }
    }

    pub(crate) fn any_nack_since(&self, from: usize) -> Option<String> {
        let ev = self.events.lock().unwrap();
        ev.iter().skip(from).find_map(|e| {
            e.nack
                .as_ref()
                .map(|m| format!("{}: {m}", short(&e.type_url)))
        })
    }
}

pub(crate) fn short(type_url: &str) -> &'static str {
    if type_url == cds() {
        "CDS"
    } else if type_url == eds() {
        "EDS"
    } else if type_url == lds() {
        "LDS"
    } else if type_url == rds() {
        "RDS"
    } else {
        "?"
    }
}

/// Copy every request the server records into the log, as it is recorded.
pub(crate) async fn record(ads: Arc<AdsServer>, log: Arc<Log>) {
    let mut i = 0;
    loop {
        let r = ads
            .wait_for_since(i, |_| true, Duration::from_secs(86_400))
            .await;
        let ev = Ev::of(&r.request, r.at);
        log.events.lock().unwrap().push(ev);
        log.cv.notify_all();
        i += 1;
    }
}
