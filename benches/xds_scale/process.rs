//! tern as a process, and what /proc says about it.

use super::*;

pub(crate) struct Tern {
    pub(crate) child: Child,
    pub(crate) pid: u32,
}

impl Tern {
    /// Start tern (`TERN_ARGS`: extra arguments; `TERN_WRAP`: a command to run it under, such
    /// as `perf record -g -o F --` or `heaptrack -o F`, in which case the measured process is
    /// the `tern` found among the wrapper's descendants).
    pub(crate) fn start(bin: &Path, bootstrap: &Path, log: &Path) -> anyhow::Result<Tern> {
        let log = std::fs::File::create(log)?;
        let wrap: Vec<String> = std::env::var("TERN_WRAP")
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect();
        let mut cmd = match wrap.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("-c")
            .arg(bootstrap)
            .args(["--concurrency", "1", "--drain-time-s", "1"])
            .args(
                std::env::var("TERN_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let mut tern = Tern {
            pid: child.id(),
            child,
        };
        if !wrap.is_empty() {
            // On an error here, dropping `tern` stops the wrapper.
            tern.pid = find_descendant(tern.child.id(), "tern")?;
        }
        Ok(tern)
    }

    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("tern exited: {status}");
        }
        Ok(())
    }

    /// (VmRSS, VmHWM) in KiB.
    pub(crate) fn rss(&self) -> anyhow::Result<(u64, u64)> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let field = |name: &str| {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| anyhow!("no {name} in /proc/{}/status", self.pid))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }
}

impl Drop for Tern {
    fn drop(&mut self) {
        // SIGTERM first, so a wrapper (perf, heaptrack) can write its data.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `root` itself or the first process named `comm` among its descendants (a wrapper that
/// execs, like `env`, becomes it); waits up to 10 s.
pub(crate) fn find_descendant(root: u32, comm: &str) -> anyhow::Result<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let mut parent = BTreeMap::new();
        let mut name = BTreeMap::new();
        for e in std::fs::read_dir("/proc")?.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let (Some(l), Some(r)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let ppid = stat[r + 2..]
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent.insert(pid, ppid);
                name.insert(pid, stat[l + 1..r].to_string());
            }
        }
        let found = name.iter().find(|(pid, n)| {
            let mut p = **pid;
            let mut ancestors = std::iter::from_fn(|| {
                p = *parent.get(&p)?;
                Some(p)
            })
            .take(16);
            *n == comm && (**pid == root || ancestors.any(|a| a == root))
        });
        if let Some((pid, _)) = found {
            return Ok(*pid);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("no {comm} process under pid {root}")
}

/// utime + stime of a process (all threads), in clock ticks.
pub(crate) fn proc_ticks(pid: &str) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line are 12 and 13 after "pid (comm) ".
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// (busy, total, irq + softirq, steal) ticks of the whole machine.
pub(crate) fn machine_ticks() -> (u64, u64, u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let g = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let busy = g(0) + g(1) + g(2) + g(5) + g(6) + g(7);
    (busy, busy + g(3) + g(4), g(5) + g(6), g(7))
}

/// utime + stime and name of every process.
pub(crate) fn all_procs() -> BTreeMap<u32, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(l), Some(r)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let f: Vec<&str> = stat[r + 2..].split_whitespace().collect();
        let t = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        out.insert(pid, (stat[l + 1..r].to_string(), t(11) + t(12)));
    }
    out
}

pub(crate) fn clk_tck() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// CPU use over an interval: tern, this bench, and everything else on the machine.
#[derive(Clone)]
pub(crate) struct CpuSnap {
    pub(crate) at: Instant,
    pub(crate) tern: u64,
    pub(crate) bench: u64,
    pub(crate) busy: u64,
    pub(crate) total: u64,
    pub(crate) irq: u64,
    pub(crate) steal: u64,
    pub(crate) procs: BTreeMap<u32, (String, u64)>,
    pub(crate) tern_pid: u32,
    /// Time tern's data-path threads (all but `tern-xds`) spent runnable but waiting for a
    /// CPU, ns (`/proc/PID/task/TID/schedstat`, second field).
    pub(crate) dp_wait_ns: u64,
}

impl CpuSnap {
    pub(crate) fn take(tern_pid: u32) -> CpuSnap {
        let (busy, total, irq, steal) = machine_ticks();
        CpuSnap {
            at: Instant::now(),
            tern: proc_ticks(&tern_pid.to_string()),
            bench: proc_ticks("self"),
            busy,
            total,
            irq,
            steal,
            procs: all_procs(),
            tern_pid,
            dp_wait_ns: datapath_wait_ns(tern_pid),
        }
    }
}

pub(crate) fn datapath_wait_ns(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let mut sum = 0;
    for t in dir.flatten() {
        let p = t.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if comm.trim() == "tern-xds" {
            continue;
        }
        let stat = std::fs::read_to_string(p.join("schedstat")).unwrap_or_default();
        sum += stat
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    sum
}

pub(crate) struct CpuUse {
    pub(crate) tern_ms: u64,
    pub(crate) bench_ms: u64,
    /// Busy share of the whole machine by other processes, %.
    pub(crate) other_pct: f64,
    /// tern's data-path threads waiting for a CPU, ms.
    pub(crate) dp_wait_ms: f64,
    /// What "other" is made of: irq + softirq and steal, % of the machine, and the other
    /// processes that used the most CPU (name, ms).
    pub(crate) irq_pct: f64,
    pub(crate) steal_pct: f64,
    pub(crate) top: Vec<(String, u64)>,
}

impl CpuUse {
    pub(crate) fn other(&self) -> String {
        let mut s = format!(
            "{:.0} % (irq+softirq {:.0} %, steal {:.0} %",
            self.other_pct, self.irq_pct, self.steal_pct
        );
        for (n, ms) in &self.top {
            let _ = write!(s, ", {n} {ms} ms");
        }
        s.push(')');
        s
    }
}

pub(crate) fn cpu_between(a: &CpuSnap, b: &CpuSnap, tck: u64) -> CpuUse {
    let ms = |t: u64| t * 1000 / tck;
    let total = (b.total - a.total).max(1) as f64;
    let other = (b.busy - a.busy).saturating_sub((b.tern - a.tern) + (b.bench - a.bench));
    let me = std::process::id();
    let mut top: Vec<(String, u64)> = b
        .procs
        .iter()
        .filter(|(pid, _)| **pid != me && **pid != b.tern_pid)
        .filter_map(|(pid, (name, t))| {
            let before = a.procs.get(pid).map_or(0, |(_, t0)| *t0);
            let d = t.saturating_sub(before);
            (d > 0).then(|| (name.clone(), ms(d)))
        })
        .collect();
    top.sort_by_key(|x| std::cmp::Reverse(x.1));
    top.truncate(3);
    CpuUse {
        tern_ms: ms(b.tern - a.tern),
        bench_ms: ms(b.bench - a.bench),
        other_pct: other as f64 * 100.0 / total,
        dp_wait_ms: b.dp_wait_ns.saturating_sub(a.dp_wait_ns) as f64 / 1e6,
        irq_pct: (b.irq - a.irq) as f64 * 100.0 / total,
        steal_pct: (b.steal - a.steal) as f64 * 100.0 / total,
        top,
    }
}

/// Lower the priority of the calling thread (`ADS_NICE`, default 10): the ADS server stands
/// in for a control plane on another machine and should not take CPU from tern or the load.
pub(crate) fn nice_this_thread() {
    let nice = env_usize("ADS_NICE", 10);
    if nice == 0 {
        return;
    }
    if let Ok(link) = std::fs::read_link("/proc/thread-self")
        && let Some(tid) = link.file_name().and_then(|t| t.to_str())
    {
        let _ = Command::new("renice")
            .args(["-n", &nice.to_string(), "-p", tid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Ask tern's allocator to give free pages back (`malloc_trim(0)` through gdb), to tell
/// memory tern holds from memory glibc keeps after frees. `None` without gdb or with
/// `TRIM_PROBE=0`.
pub(crate) fn trim_probe(pid: u32) -> Option<()> {
    if env_usize("TRIM_PROBE", 1) == 0 {
        return None;
    }
    let ok = Command::new("gdb")
        .args([
            "-p",
            &pid.to_string(),
            "-batch",
            "-ex",
            "call (int) malloc_trim(0)",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?
        .success();
    ok.then_some(())
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    // Below the ephemeral range (shared/BENCHMARKING.md); the port is checked free by binding.
    let seed = std::process::id() as usize;
    for i in 0..2000 {
        let port = 20_000 + ((seed * 7919 + i * 104_729) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port in 20000..32000")
}
