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
