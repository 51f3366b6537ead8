//! A dependency-free reader of the Prometheus text exposition format 0.0.4, strict enough to
//! reject what a real scraper would: every sample belongs to the family of the `# TYPE` line
//! before it, names and labels are well-formed, values parse, families are declared once, and
//! histogram buckets are cumulative up to `+Inf`, which equals `_count`.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: String,
}

/// The families (name -> type) and samples of a scrape.
#[derive(Debug, Default)]
pub struct Scrape {
    pub families: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// The value of the sample with this name and exactly these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<&str> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && s.labels
                        .iter()
                        .zip(labels)
                        .all(|(a, b)| a.0 == b.0 && a.1 == b.1)
            })
            .map(|s| s.value.as_str())
    }
}

fn name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        })
}

fn parse_labels(mut rest: &str) -> Result<Vec<(String, String)>, &'static str> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (lname, after) = rest.split_once("=\"").ok_or("bad label")?;
        if !name_ok(lname) || lname.contains(':') {
            return Err("bad label name");
        }
        let mut value = String::new();
        let mut end = None;
        let mut chars = after.char_indices();
        while let Some((j, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    _ => return Err("bad escape"),
                },
                '"' => {
                    end = Some(j);
                    break;
                }
                '\n' => return Err("raw newline"),
                c => value.push(c),
            }
        }
        let end = end.ok_or("unterminated label value")?;
        out.push((lname.to_string(), value));
        rest = &after[end + 1..];
        if !rest.is_empty() {
            rest = rest.strip_prefix(',').ok_or("labels not comma-separated")?;
        }
    }
    Ok(out)
}

/// Parse and check a scrape.
pub fn parse(text: &str) -> Result<Scrape, String> {
    let mut scrape = Scrape::default();
    let mut current: Option<(String, String)> = None;
    let mut last_bucket: Option<(Vec<(String, String)>, u64)> = None;
    for (i, line) in text.lines().enumerate() {
        let err = |m: &str| format!("line {}: {m}: {line}", i + 1);
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| err("bad TYPE"))?;
            let kinds = ["counter", "gauge", "histogram", "summary", "untyped"];
            if !name_ok(name) || !kinds.contains(&kind) {
                return Err(err("bad TYPE"));
            }
            if scrape
                .families
                .insert(name.to_string(), kind.to_string())
                .is_some()
            {
                return Err(err("family declared twice"));
            }
            current = Some((name.to_string(), kind.to_string()));
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| err("no value"))?;
        if !["+Inf", "-Inf", "NaN"].contains(&value) && value.parse::<f64>().is_err() {
            return Err(err("bad value"));
        }
        let (name, labels) = match series.find('{') {
            Some(b) => {
                let l = series[b..]
                    .strip_prefix('{')
                    .and_then(|l| l.strip_suffix('}'))
                    .ok_or_else(|| err("bad labels"))?;
                (&series[..b], parse_labels(l).map_err(err)?)
            }
            None => (series, Vec::new()),
        };
        let (family, kind) = current.as_ref().ok_or_else(|| err("sample before TYPE"))?;
        let in_family = match kind.as_str() {
            "histogram" => [
                format!("{family}_bucket"),
                format!("{family}_sum"),
                format!("{family}_count"),
            ]
            .contains(&name.to_string()),
            _ => name == family,
        };
        if !in_family || !name_ok(name) {
            return Err(err("sample outside its family"));
        }
        if kind == "histogram" && name.ends_with("_bucket") {
            let (le, rest) = labels
                .split_last()
                .ok_or_else(|| err("bucket without le"))?;
            if le.0 != "le" || (le.1 != "+Inf" && le.1.parse::<f64>().is_err()) {
                return Err(err("bad le"));
            }
            let v: u64 = value.parse().map_err(|_| err("bucket count"))?;
            if let Some((k, prev)) = &last_bucket
                && k == rest
                && v < *prev
            {
                return Err(err("buckets not cumulative"));
            }
            last_bucket = Some((rest.to_vec(), v));
        }
        if kind == "histogram" && name.ends_with("_count") {
            let v: u64 = value.parse().map_err(|_| err("count"))?;
            if last_bucket.as_ref().map(|(_, b)| *b) != Some(v) {
                return Err(err("+Inf bucket differs from _count"));
            }
            last_bucket = None;
        }
        scrape.samples.push(Sample {
            name: name.to_string(),
            labels,
            value: value.to_string(),
        });
    }
    Ok(scrape)
}

/// The Python interpreter with `prometheus_client` (Prometheus' own Python client, whose
/// parser reads the text format): `PROM_PYTHON`, else `target/envoy-venv/bin/python`, where
/// `.ci/run` installs it. Without one the caller skips with a notice, except in CI.
fn prometheus_client_python() -> Option<std::path::PathBuf> {
    super::python_with("PROM_PYTHON", "prometheus_client.parser")
}

/// A sample as `prometheus_client` reads it: name, labels in order, value.
type ParsedSample = (String, Vec<(String, String)>, f64);

/// Parse `text` with `prometheus_client`'s text parser and check that it reads exactly the
/// samples (names, labels in order, values) that [`parse`] reads. `None`: skipped (no parser).
pub fn check_with_prometheus_client(text: &str) -> Option<()> {
    use std::io::Write as _;
    let python = prometheus_client_python()?;
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        print(json.dumps([fam.type, s.name, list(s.labels.items()), s.value]))
"#;

    let mut child = std::process::Command::new(python)
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the scrape");
    let out = child.wait_with_output().expect("python runs");
    assert!(
        out.status.success(),
        "prometheus_client rejects the scrape: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut theirs: Vec<ParsedSample> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        let labels = v[2]
            .as_array()
            .expect("labels")
            .iter()
            .map(|kv| {
                (
                    kv[0].as_str().expect("name").to_owned(),
                    kv[1].as_str().expect("value").to_owned(),
                )
            })
            .collect();
        let type_ = v[0].as_str().expect("type");
        assert_ne!(type_, "unknown", "a sample outside its family: {line}");
        theirs.push((
            v[1].as_str().expect("name").to_owned(),
            labels,
            v[3].as_f64().expect("value"),
        ));
    }
    assert_eq!(theirs.len(), ours.samples.len(), "sample counts differ");
    for (t, o) in theirs.iter().zip(&ours.samples) {
        // prometheus_client names every counter sample `<family>_total`, adding the suffix
        // where the exposition has none (as Envoy's counters mostly have not).
        let family = ours.families.get(&o.name).map(String::as_str);
        let name = if family == Some("counter") && !o.name.ends_with("_total") {
            format!("{}_total", o.name)
        } else {
            o.name.clone()
        };
        assert_eq!((&t.0, &t.1), (&name, &o.labels));
        let v: f64 = if o.value == "+Inf" {
            f64::INFINITY
        } else {
            o.value.parse().expect("a number")
        };
        assert_eq!(t.2, v, "{}", o.name);
    }
    Some(())
}
