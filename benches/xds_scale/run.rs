//! One mode (delta or SotW): the pushes, the measurements and the report.

use super::*;

pub(crate) struct Paths {
    pub(crate) out: PathBuf,
    pub(crate) tern: PathBuf,
}

pub(crate) fn paths() -> anyhow::Result<Paths> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("benches/out");
    std::fs::create_dir_all(&out)?;
    let tern = match std::env::var_os("TERN_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            // Always through cargo (a no-op when the binary is fresh): a stale
            // `target/release/tern` would measure old code.
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"));
            eprintln!("xds_scale: cargo build --release --bin tern");
            let ok = Command::new(env!("CARGO"))
                .args(["build", "--release", "--bin", "tern"])
                .current_dir(&root)
                .status()?
                .success();
            if !ok {
                bail!("cargo build --release failed");
            }
            target.join("release/tern")
        }
    };
    if !tern.exists() {
        bail!("no tern binary at {}", tern.display());
    }
    Ok(Paths { out, tern })
}

/// The ADS server on a runtime of its own, with the request log.
pub(crate) struct Control {
    pub(crate) recorder: tokio::task::JoinHandle<()>,
    pub(crate) ads: Arc<AdsServer>,
    pub(crate) log: Arc<Log>,
    /// Runs the server; dropped last.
    pub(crate) _rt: tokio::runtime::Runtime,
}

impl Control {
    pub(crate) fn start() -> anyhow::Result<Control> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ads")
            .on_thread_start(nice_this_thread)
            .enable_all()
            .build()?;
        let ads = Arc::new(rt.block_on(AdsServer::tcp()));
        let log = Arc::new(Log::default());
        let recorder = rt.spawn(record(ads.clone(), log.clone()));
        Ok(Control {
            recorder,
            ads,
            log,
            _rt: rt,
        })
    }

    pub(crate) fn bootstrap(&self, mode: Mode) -> String {
        let mut dynamic = ads::dynamic_resources_yaml("xds-grpc", mode == Mode::Delta);
        if !v3_fields() {
            dynamic = dynamic
                .replace("    transport_api_version: V3\n", "")
                .replace(", resource_api_version: V3", "");
        }
        format!(
            "node:\n  id: sidecar~127.0.0.1~bench-0.default~default.svc.cluster.local\n  cluster: bench.default\nstatic_resources:\n  listeners: []\n  clusters:{}{}",
            self.ads.cluster_yaml("xds-grpc"),
            dynamic
        )
    }

    /// Start tern on this server and wait until it asked for clusters.
    pub(crate) fn start_tern(&self, mode: Mode, paths: &Paths, tag: &str) -> anyhow::Result<Tern> {
        let bootstrap = paths
            .out
            .join(format!("xds_scale-{tag}-{}.yaml", mode.short()));
        std::fs::write(&bootstrap, self.bootstrap(mode))?;
        let log = paths
            .out
            .join(format!("xds_scale-{tag}-{}.log", mode.short()));
        let tern = Tern::start(&paths.tern, &bootstrap, &log)?;
        self.log
            .wait_within(
                0,
                "CDS subscription",
                |e| e.type_url == cds(),
                Duration::from_secs(15),
            )
            .with_context(|| format!("tern did not connect; see {}", log.display()))?;
        Ok(tern)
    }

    /// Hand a batch to the server.
    pub(crate) fn push(&self, batch: Batch) -> Pushed {
        let mark = self.log.len();
        let resp_mark = self.ads.response_count();
        let t0 = Instant::now();
        self.ads.apply(batch);
        Pushed {
            t0,
            mark,
            resp_mark,
            v: self.ads.system_version().to_string(),
        }
    }

    /// When the server handed tern the response an ACK answers (sent after `p`).
    pub(crate) fn response_at(&self, p: &Pushed, ack: &Ev) -> anyhow::Result<Instant> {
        self.ads
            .responses_since(p.resp_mark)
            .iter()
            .find(|r| r.nonce() == ack.nonce)
            .map(|r| r.at)
            .ok_or_else(|| anyhow!("no response with nonce {}", ack.nonce))
    }
}

/// A batch handed to the server: when, the request and response marks, and its version.
pub(crate) struct Pushed {
    pub(crate) t0: Instant,
    pub(crate) mark: usize,
    pub(crate) resp_mark: usize,
    pub(crate) v: String,
}

impl Drop for Control {
    fn drop(&mut self) {
        self.recorder.abort();
    }
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub(crate) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub(crate) fn yes(ok: bool) -> &'static str {
    if ok { "yes" } else { "NO" }
}

/// The staged run: bytes per cluster, per endpoint, per virtual host.
pub(crate) fn memory_split(
    mode: Mode,
    paths: &Paths,
    t: &Templates,
    upstreams: &[SocketAddr],
    listener: &Listener,
    report: &mut String,
) -> anyhow::Result<(f64, f64)> {
    let ctl = Control::start()?;
    let tern = ctl.start_tern(mode, paths, "mem")?;
    let settle = || {
        ctl.log.quiesce(Duration::from_millis(500));
        std::thread::sleep(Duration::from_millis(500));
    };
    settle();
    let (r0, _) = tern.rss()?;
    // 1. 10k clusters, then empty assignments so they are active with no hosts.
    let mut b = with_istio_secrets(Batch::new());
    for (n, a) in all_clusters(t, 0) {
        b = b.set(&cds(), &n, a);
    }
    let p = ctl.push(b);
    ctl.log.ack(p.mark, &cds(), &p.v, mode)?;
    settle();
    let mut b = Batch::new();
    for n in 0..CLUSTERS {
        let cla = ClusterLoadAssignment {
            cluster_name: cluster_name(n),
            ..Default::default()
        };
        b = b.set(&eds(), &cla.cluster_name, ads::any(&cla));
    }
    let p = ctl.push(b);
    ctl.log.ack(p.mark, &eds(), &p.v, mode)?;
    settle();
    let (r1, _) = tern.rss()?;
    // 2. The 100k endpoints.
    let mut b = Batch::new();
    for (n, a) in all_endpoints(t, upstreams, 1, 0) {
        b = b.set(&eds(), &n, a);
    }
    let p = ctl.push(b);
    ctl.log.ack(p.mark, &eds(), &p.v, mode)?;
    settle();
    let (r2, _) = tern.rss()?;
    // 3. The listener and the 10k virtual hosts.
    let b = Batch::new()
        .set(&lds(), &listener.name, ads::any(listener))
        .set(&rds(), "80", ads::any(&t.route_config()));
    let p = ctl.push(b);
    ctl.log.ack(p.mark, &rds(), &p.v, mode)?;
    settle();
    let (r3, hwm) = tern.rss()?;
    if let Some(n) = ctl.log.any_nack_since(0) {
        bail!("NACK in the staged run: {n}");
    }
    let per = |a: u64, b: u64, n: usize| (b.saturating_sub(a) * 1024) as f64 / n as f64;
    let endpoints = CLUSTERS * ENDPOINTS_PER_CLUSTER;
    let pc = per(r0, r1, CLUSTERS);
    let pe = per(r1, r2, endpoints);
    let pv = per(r2, r3, CLUSTERS);
    writeln!(
        report,
        "\n2b. Memory by kind (a second tern, pushed in stages, VmRSS after each settles)\n"
    )?;
    writeln!(report, "| stage | VmRSS | added | per item | aim | met |")?;
    writeln!(report, "| --- | --- | --- | --- | --- | --- |")?;
    writeln!(
        report,
        "| connected, nothing pushed | {} | | | | |",
        mib(r0)
    )?;
    writeln!(
        report,
        "| + 10,000 clusters (active, no endpoints) | {} | {} | {:.0} B per cluster | < 4 KB | {} |",
        mib(r1),
        mib(r1.saturating_sub(r0)),
        pc,
        yes(pc < 4096.0)
    )?;
    writeln!(
        report,
        "| + 100,000 endpoints | {} | {} | {:.0} B per endpoint | < 200 B | {} |",
        mib(r2),
        mib(r2.saturating_sub(r1)),
        pe,
        yes(pe < 200.0)
    )?;
    writeln!(
        report,
        "| + listener, 10,000 virtual hosts | {} | {} | {:.0} B per vhost | | |",
        mib(r3),
        mib(r3.saturating_sub(r2)),
        pv
    )?;
    writeln!(report, "peak (VmHWM) {}", mib(hwm))?;
    drop(tern);
    Ok((pc, pe))
}

pub(crate) fn run_mode(mode: Mode, knobs: &Knobs, paths: &Paths) -> anyhow::Result<String> {
    let mut report = String::new();
    let tck = clk_tck();
    let t = Templates::load()?;

    // Upstream servers (the hot cluster's 10 endpoints) and the load generator's runtime.
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .enable_all()
        .build()?;
    let upstreams: Vec<SocketAddr> = load_rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..ENDPOINTS_PER_CLUSTER {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            v.push(l.local_addr()?);
            tokio::spawn(upstream_server(l));
        }
        anyhow::Ok(v)
    })?;
    let port = free_port()?;
    let listener: Listener = decode(&listener_yaml(port))?;
    validate(&t, &upstreams, &listener)?;

    let built = Instant::now();
    let full = Encoded {
        clusters: all_clusters(&t, 0),
        endpoints: all_endpoints(&t, &upstreams, 1, 0),
        listeners: vec![(listener.name.clone(), ads::any(&listener))],
        routes: vec![("80".into(), ads::any(&t.route_config()))],
    };
    let build_time = built.elapsed();

    writeln!(
        report,
        "## xds_scale, {} ({}), {} clusters, {} endpoints, {} virtual hosts\n",
        mode.api_type(),
        if mode == Mode::Delta {
            "incremental"
        } else {
            "state of the world"
        },
        CLUSTERS,
        CLUSTERS * ENDPOINTS_PER_CLUSTER,
        CLUSTERS
    )?;
    writeln!(
        report,
        "tern: {}; payload: CDS {:.1} MB, EDS {:.1} MB, LDS {} B, RDS {:.1} MB (encoded, built in {})",
        paths.tern.display(),
        bytes_of(&full.clusters) as f64 / 1e6,
        bytes_of(&full.endpoints) as f64 / 1e6,
        bytes_of(&full.listeners),
        bytes_of(&full.routes) as f64 / 1e6,
        ms(build_time)
    )?;
    writeln!(
        report,
        "shape: istiod's outbound clusters {} transport_socket_matches, without upstream filters; \
         config sources {} resource_api_version/transport_api_version V3",
        if t.tls.is_some() { "with" } else { "without" },
        if v3_fields() { "with" } else { "without" }
    )?;

    // ---- 1. the initial push ----
    let ctl = Control::start()?;
    let mut tern = ctl.start_tern(mode, paths, "main")?;
    ctl.log.quiesce(Duration::from_millis(500));
    std::thread::sleep(Duration::from_millis(500));
    let (rss0, _) = tern.rss()?;
    let batch = full.batch();
    let cpu0 = CpuSnap::take(tern.pid);
    let p = ctl.push(batch);
    let t0 = p.t0;
    let cds_ack = ctl.log.ack(p.mark, &cds(), &p.v, mode)?;
    let eds_sub = ctl.log.subscription(p.mark, &eds())?;
    let eds_ack = ctl.log.ack(p.mark, &eds(), &p.v, mode)?;
    let lds_sub = ctl.log.subscription(p.mark, &lds())?;
    let lds_ack = ctl.log.ack(p.mark, &lds(), &p.v, mode)?;
    let rds_sub = ctl.log.subscription(p.mark, &rds())?;
    let rds_ack = ctl.log.ack(p.mark, &rds(), &p.v, mode)?;
    let cpu1 = CpuSnap::take(tern.pid);
    tern.check_alive()?;
    ctl.log.quiesce(Duration::from_millis(500));
    std::thread::sleep(Duration::from_millis(500));
    let (rss1, hwm1) = tern.rss()?;
    let push_cpu = cpu_between(&cpu0, &cpu1, tck);

    writeln!(
        report,
        "\n1. Initial push: one batch handed to the ADS server → tern's ACK received by the server\n"
    )?;
    writeln!(
        report,
        "A response is due at the hand-off (CDS) or when tern subscribes (EDS after CDS, LDS once the \
         clusters are warm, RDS after LDS). \"server\" is the test ADS server building the response \
         (due → handed to gRPC); \"tern\" is response handed to gRPC → ACK received (encode, \
         loopback, tern's decode and apply, the ACK back).\n"
    )?;
    writeln!(
        report,
        "| type | resources | server | tern | due → ACK | hand-off → ACK | due → ACK ≤ 1 s |"
    )?;
    writeln!(report, "| --- | --- | --- | --- | --- | --- | --- |")?;
    let mut slowest = Duration::ZERO;
    for (name, what, sub, ack) in [
        ("CDS", format!("{CLUSTERS} clusters"), None, &cds_ack),
        (
            "EDS",
            format!(
                "{CLUSTERS} assignments, {} endpoints ({} names subscribed)",
                CLUSTERS * ENDPOINTS_PER_CLUSTER,
                eds_sub.names
            ),
            Some(&eds_sub),
            &eds_ack,
        ),
        ("LDS", "1 listener".into(), Some(&lds_sub), &lds_ack),
        (
            "RDS",
            format!("1 route configuration, {CLUSTERS} vhosts"),
            Some(&rds_sub),
            &rds_ack,
        ),
    ] {
        let due = sub.map_or(t0, |s: &Ev| s.at);
        let sent = ctl.response_at(&p, ack)?;
        let total = ack.at.saturating_duration_since(due);
        slowest = slowest.max(total);
        writeln!(
            report,
            "| {name} | {what} | {} | {} | {} | {} | {} |",
            ms(sent.saturating_duration_since(due)),
            ms(ack.at.saturating_duration_since(sent)),
            ms(total),
            ms(ack.at - t0),
            yes(total <= Duration::from_secs(1))
        )?;
    }
    writeln!(
        report,
        "\nWhole push, hand-off → last ACK: {}; tern CPU {} ms, bench (ADS server) CPU {} ms, \
         rest of the machine {}.",
        ms(rds_ack.at - t0),
        push_cpu.tern_ms,
        push_cpu.bench_ms,
        push_cpu.other()
    )?;

    // ---- 2. memory ----
    let pc = (rss1.saturating_sub(rss0) * 1024) as f64 / CLUSTERS as f64;
    writeln!(report, "\n2. tern's memory (VmRSS)\n")?;
    writeln!(
        report,
        "| before the push | after everything is ACKed | added | added per cluster (all kinds) | peak VmHWM | target total < 100 MiB | met |"
    )?;
    writeln!(report, "| --- | --- | --- | --- | --- | --- | --- |")?;
    writeln!(
        report,
        "| {} | {} | {} | {:.0} B | {} | | {} |",
        mib(rss0),
        mib(rss1),
        mib(rss1.saturating_sub(rss0)),
        pc,
        mib(hwm1),
        yes(rss1 < 100 * 1024)
    )?;

    // ---- load, for the rest of the run ----
    let lb = SocketAddr::from(([127, 0, 0, 1], port));
    let rec = Arc::new(Mutex::new(LoadRecord::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let period = Duration::from_secs_f64(knobs.conns as f64 / knobs.rps as f64);
    let load_started = Instant::now();
    let conns: Vec<_> = (0..knobs.conns)
        .map(|i| {
            let phase = period.mul_f64(i as f64 / knobs.conns as f64);
            load_rt.spawn(load_conn(
                lb,
                host_header(HOT),
                period,
                phase,
                stop_rx.clone(),
                rec.clone(),
            ))
        })
        .collect();
    let mut windows: Vec<(String, Instant, Instant, Option<CpuUse>)> = Vec::new();
    std::thread::sleep(Duration::from_secs(1)); // warm-up: connections open
    let a = CpuSnap::take(tern.pid);
    std::thread::sleep(knobs.baseline);
    let b = CpuSnap::take(tern.pid);
    windows.push((
        "quiet baseline".into(),
        a.at,
        b.at,
        Some(cpu_between(&a, &b, tck)),
    ));

    // ---- 3. one cluster's endpoints, repeatedly ----
    // (hand-off → ACK, server share, tern share)
    let mut times: Vec<(Duration, Duration, Duration)> = Vec::with_capacity(knobs.updates);
    let a = CpuSnap::take(tern.pid);
    for i in 0..knobs.updates {
        // Even: the hot cluster's weights (same addresses, pools kept); odd: another cluster
        // gets a new address for one endpoint.
        let (n, cla) = if i % 2 == 0 {
            (HOT, t.cla(HOT, &upstreams, 2 + (i as u32 / 2) % 3, 0))
        } else {
            let n = (i * 7_919 + 13) % CLUSTERS;
            let n = if n == HOT { n + 1 } else { n };
            (n, t.cla(n, &upstreams, 1, i as u32 + 1))
        };
        let b = Batch::new().set(&eds(), &cluster_name(n), ads::any(&cla));
        let p = ctl.push(b);
        let ack = ctl.log.ack(p.mark, &eds(), &p.v, mode)?;
        let sent = ctl.response_at(&p, &ack)?;
        times.push((
            ack.at - p.t0,
            sent.saturating_duration_since(p.t0),
            ack.at.saturating_duration_since(sent),
        ));
        std::thread::sleep(Duration::from_millis(20));
    }
    let b = CpuSnap::take(tern.pid);
    let label = match mode {
        Mode::Delta => "one-cluster EDS updates",
        Mode::Sotw => "one-cluster EDS changes (full 10k EDS pushes)",
    };
    windows.push((label.into(), a.at, b.at, Some(cpu_between(&a, &b, tck))));
    let stat = |f: fn(&(Duration, Duration, Duration)) -> Duration| {
        let mut v: Vec<Duration> = times.iter().map(f).collect();
        v.sort();
        let at = |q: f64| {
            v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        (at(0.5), at(0.9), v.last().copied().unwrap_or_default())
    };
    let (med, p90, max) = stat(|t| t.0);
    let (smed, sp90, smax) = stat(|t| t.1);
    let (tmed, tp90, tmax) = stat(|t| t.2);
    let five = Duration::from_millis(5);
    writeln!(
        report,
        "\n3. One cluster's endpoints change: {} updates, alternately the loaded cluster's weights \
         and another cluster's endpoint address{}\n",
        times.len(),
        if mode == Mode::Sotw {
            " (SotW: each is an EDS response with all 10,000 assignments)"
        } else {
            ""
        }
    )?;
    writeln!(
        report,
        "| | median | p90 | max | median ≤ 5 ms | max ≤ 5 ms |"
    )?;
    writeln!(report, "| --- | --- | --- | --- | --- | --- |")?;
    for (what, (a, b, c)) in [
        ("hand-off → ACK received", (med, p90, max)),
        (
            "server: hand-off → response handed to gRPC",
            (smed, sp90, smax),
        ),
        ("tern: response → ACK received", (tmed, tp90, tmax)),
    ] {
        writeln!(
            report,
            "| {what} | {} | {} | {} | {} | {} |",
            ms(a),
            ms(b),
            ms(c),
            yes(a <= five),
            yes(c <= five)
        )?;
    }

    // ---- 4b. full re-pushes: every cluster and every assignment changes ----
    let mut repush = Vec::new();
    for r in 0..knobs.repushes {
        std::thread::sleep(Duration::from_secs(1));
        let g = r as u32 + 1;
        let mut b = Batch::new();
        for (n, a) in all_clusters(&t, g) {
            b = b.set(&cds(), &n, a);
        }
        for (n, a) in all_endpoints(&t, &upstreams, 1 + g, 0) {
            b = b.set(&eds(), &n, a);
        }
        let a = CpuSnap::take(tern.pid);
        let p = ctl.push(b);
        let c = ctl.log.ack(p.mark, &cds(), &p.v, mode)?;
        let e = ctl.log.ack(p.mark, &eds(), &p.v, mode)?;
        let b = CpuSnap::take(tern.pid);
        let cpu = cpu_between(&a, &b, tck);
        let (cs, es) = (ctl.response_at(&p, &c)?, ctl.response_at(&p, &e)?);
        repush.push((
            c.at - p.t0,
            c.at.saturating_duration_since(cs),
            e.at - p.t0,
            e.at.saturating_duration_since(es),
            cpu.tern_ms,
        ));
        windows.push((format!("full re-push {}", r + 1), p.t0, e.at, Some(cpu)));
    }
    std::thread::sleep(Duration::from_secs(1));
    let a = CpuSnap::take(tern.pid);
    std::thread::sleep(Duration::from_secs(2));
    let b = CpuSnap::take(tern.pid);
    windows.push((
        "quiet after".into(),
        a.at,
        b.at,
        Some(cpu_between(&a, &b, tck)),
    ));
    let _ = stop_tx.send(true);
    load_rt.block_on(async {
        for c in conns {
            let _ = tokio::time::timeout(Duration::from_secs(6), c).await;
        }
    });
    tern.check_alive()?;
    let (rss_end, hwm_end) = tern.rss()?;
    let trimmed = match trim_probe(tern.pid) {
        Some(()) => Some(tern.rss()?.0),
        None => None,
    };
    if let Some(n) = ctl.log.any_nack_since(0) {
        bail!("tern NACKed something: {n}");
    }

    writeln!(
        report,
        "\n3b. Full re-push of all 10,000 clusters (connect_timeout changed: every cluster \
         recompiles) and all 10,000 assignments (weights changed), one batch\n"
    )?;
    writeln!(
        report,
        "| re-push | hand-off → CDS ACK | of which tern | hand-off → EDS ACK | of which tern (EDS) | tern CPU |"
    )?;
    writeln!(report, "| --- | --- | --- | --- | --- | --- |")?;
    for (i, (c, ct, e, et, cpu)) in repush.iter().enumerate() {
        writeln!(
            report,
            "| {} | {} | {} | {} | {} | {cpu} ms |",
            i + 1,
            ms(*c),
            ms(*ct),
            ms(*e),
            ms(*et)
        )?;
    }
    writeln!(
        report,
        "\nVmRSS at the end: {} (peak VmHWM {}){}",
        mib(rss_end),
        mib(hwm_end),
        trimmed.map_or(String::new(), |t| format!(
            "; {} after malloc_trim(0) called in tern through gdb (free heap glibc had kept)",
            mib(t)
        ))
    )?;

    // ---- 4. latency through tern ----
    let rec = rec.lock().unwrap();
    let total = rec.samples.len();
    let failed = rec.samples.iter().filter(|s| !s.ok).count();
    writeln!(
        report,
        "\n4. Requests through tern during all this ({} connections, {} requests/s in total, \
         GET / with Host {} to the cluster with the real upstream; latency = request sent → \
         response read, µs; \"p99 from due\" counts from when the request was scheduled)\n",
        knobs.conns,
        knobs.rps,
        host_header(HOT)
    )?;
    writeln!(
        report,
        "| window | length | requests | failed | p50 | p99 | p99.9 | max | p99 from due | tern CPU | tern data path waiting for a CPU | other load | p99 < 5 ms |"
    )?;
    writeln!(
        report,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )?;
    let mut swap_p99_ok = true;
    let mut merged: BTreeMap<String, Vec<(Instant, Instant)>> = BTreeMap::new();
    for (name, a, b, cpu) in &windows {
        let s = window_stats(name, &rec.samples, *a, *b);
        let swap = name != "quiet baseline" && name != "quiet after";
        if swap {
            swap_p99_ok &= s.p99 < 5000;
            let key = if name.starts_with("full re-push") {
                "all full re-pushes".to_string()
            } else {
                name.clone()
            };
            merged.entry(key).or_default().push((*a, *b));
        }
        let cpu = cpu.as_ref();
        writeln!(
            report,
            "| {} | {:.2} s | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.name,
            s.secs,
            s.requests,
            s.failed,
            s.p50,
            s.p99,
            s.p999,
            s.max,
            s.p99_due,
            cpu.map_or(String::new(), |c| format!("{} ms", c.tern_ms)),
            cpu.map_or(String::new(), |c| format!("{:.1} ms", c.dp_wait_ms)),
            cpu.map_or(String::new(), CpuUse::other),
            if swap { yes(s.p99 < 5000) } else { "" }
        )?;
    }
    // All re-pushes together, for a p99 over more samples.
    if let Some(spans) = merged.get("all full re-pushes")
        && spans.len() > 1
    {
        let inside: Vec<Sample> = rec
            .samples
            .iter()
            .filter(|s| spans.iter().any(|(a, b)| s.start < *b && s.end > *a))
            .copied()
            .collect();
        let (first, last) = (
            inside.iter().map(|s| s.start).min(),
            inside.iter().map(|s| s.end).max(),
        );
        if let (Some(a), Some(b)) = (first, last) {
            let mut s = window_stats("all full re-pushes", &inside, a, b);
            s.secs = spans.iter().map(|(a, b)| (*b - *a).as_secs_f64()).sum();
            writeln!(
                report,
                "| {} | {:.2} s | {} | {} | {} | {} | {} | {} | {} | | | | {} |",
                s.name,
                s.secs,
                s.requests,
                s.failed,
                s.p50,
                s.p99,
                s.p999,
                s.max,
                s.p99_due,
                yes(s.p99 < 5000)
            )?;
            swap_p99_ok &= s.p99 < 5000;
        }
    }
    writeln!(
        report,
        "\nAll requests: {total} over {:.1} s, {failed} failed.",
        (Instant::now() - load_started).as_secs_f64()
    )?;
    for (e, n) in &rec.errors {
        writeln!(report, "  failure ×{n}: {e}")?;
    }

    drop(rec);
    drop(tern);
    drop(ctl);

    // ---- 2b. the staged memory run ----
    let split = if knobs.mem_split {
        Some(memory_split(
            mode,
            paths,
            &t,
            &upstreams,
            &listener,
            &mut report,
        )?)
    } else {
        None
    };

    // ---- summary ----
    let ack_max = slowest;
    writeln!(report, "\nTargets ({}):", mode.api_type())?;
    writeln!(
        report,
        "- each type applied within 1 s of its response being due: {} (slowest {})",
        yes(ack_max <= Duration::from_secs(1)),
        ms(ack_max)
    )?;
    writeln!(
        report,
        "- RSS < 100 MiB with the config loaded: {} ({})",
        yes(rss1 < 100 * 1024),
        mib(rss1)
    )?;
    writeln!(
        report,
        "- one-cluster update ≤ 5 ms, hand-off → ACK: median {} ({}), max {} ({}); \
         tern's share alone: median {} ({}), max {} ({})",
        yes(med <= five),
        ms(med),
        yes(max <= five),
        ms(max),
        yes(tmed <= five),
        ms(tmed),
        yes(tmax <= five),
        ms(tmax)
    )?;
    writeln!(
        report,
        "- p99 < 5 ms during swaps: {}; failed requests: {failed}",
        yes(swap_p99_ok)
    )?;
    if let Some((pc, pe)) = split {
        writeln!(
            report,
            "- aim < 4 KB per cluster: {} ({pc:.0} B); aim < 200 B per endpoint: {} ({pe:.0} B)",
            yes(pc < 4096.0),
            yes(pe < 200.0)
        )?;
    }
    Ok(report)
}
