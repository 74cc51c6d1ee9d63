//! The sweep file: parsing `[grid]`, `[random]`, `seeds` and `[[adjust]]`, and expanding them
//! into trials (settings × seeds) with stable directory names.

use crate::config::{self, MetricMode};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use toml::Value;

/// A distribution of the `[random]` section.
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    /// Uniform in [low, high].
    Uniform(f64, f64),
    /// Log-uniform in [low, high] (low > 0).
    LogUniform(f64, f64),
    /// Inclusive integer range.
    IntUniform(i64, i64),
    /// One of the listed values, uniformly.
    Choice(Vec<Value>),
}

/// The `[random]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomSpec {
    /// Draws per grid point.
    pub trials: usize,
    /// Seed of the sweep's own generator.
    pub seed: u64,
    /// Each key's distribution, in file order.
    pub keys: Vec<(String, Dist)>,
}

/// A parsed sweep file.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSpec {
    /// The sweep's name (default: the sweep file's stem).
    pub name: String,
    /// `split.metric`, e.g. `validation.accuracy`.
    pub metric: String,
    /// Whether a larger metric ranks higher.
    pub mode: MetricMode,
    /// Explicit seeds, or `None` with a count in `seed_count`.
    pub seeds: Option<Vec<u64>>,
    /// How many seeds from the base seed on, when `seeds` is a count.
    pub seed_count: usize,
    /// Further `split.metric` columns of results.md.
    pub report: Vec<String>,
    /// `[grid]`: each key's values, in file order.
    pub grid: Vec<(String, Vec<Value>)>,
    /// `[random]`, when present.
    pub random: Option<RandomSpec>,
    /// `[[adjust]]`: extra overrides for the settings matching every `if` pair.
    pub adjust: Vec<Adjust>,
}

/// Conditional overrides: `[[adjust]] if = { "model.variant" = "nfg" }, set = { "model.forget_bias" = 0.0 }`.
/// They do not change trial names (they follow from the setting).
#[derive(Debug, Clone, PartialEq)]
pub struct Adjust {
    /// Key = value pairs a setting must all have.
    pub when: Vec<(String, Value)>,
    /// Overrides added to matching settings.
    pub set: Vec<(String, Value)>,
}

/// One run of the sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// Directory name under the sweep directory.
    pub name: String,
    /// The setting's overrides (without the seed), in key order.
    pub overrides: Vec<(String, Value)>,
    /// Overrides from matching `[[adjust]]` entries.
    pub adjusted: Vec<(String, Value)>,
    /// The run's `run.seed`.
    pub seed: u64,
}

impl Trial {
    /// The setting's label: the overrides as `key=value` joined by spaces.
    pub fn setting(&self) -> String {
        if self.overrides.is_empty() {
            return "(base)".into();
        }
        self.overrides.iter().map(|(k, v)| format!("{k}={}", show(v))).collect::<Vec<_>>().join(" ")
    }
}

/// A TOML value as it reads in names and tables (strings unquoted).
pub fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Float(f) => format!("{f}"),
        other => other.to_string(),
    }
}

/// Flattens nested tables into dotted keys, so `train.lr = [..]` (a TOML dotted key) and
/// `"train.lr" = [..]` mean the same. A table holding only tables is a section to descend
/// into; in `[random]` (`dists`) any other table (a distribution such as
/// `{ uniform = [a, b] }`) is a leaf, in `[grid]` every table is a section.
fn flatten(prefix: &str, t: &toml::Table, dists: bool, out: &mut Vec<(String, Value)>) {
    for (k, v) in t {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            Value::Table(sub) if !dists || (!sub.is_empty() && sub.values().all(Value::is_table)) => {
                flatten(&key, sub, dists, out)
            }
            other => out.push((key, other.clone())),
        }
    }
}

fn pair(file: &str, key: &str, v: &Value) -> Result<(f64, f64)> {
    let a = v.as_array().filter(|a| a.len() == 2);
    let nums: Option<Vec<f64>> =
        a.and_then(|a| a.iter().map(|x| x.as_float().or_else(|| x.as_integer().map(|i| i as f64))).collect());
    match nums.as_deref() {
        Some([lo, hi]) if lo <= hi => Ok((*lo, *hi)),
        _ => bail!("{file}: [random] key `{key}`: expected [low, high] with low ≤ high, got {v}"),
    }
}

fn parse_dist(file: &str, key: &str, v: &Value) -> Result<Dist> {
    let t = v.as_table().filter(|t| t.len() == 1).ok_or_else(|| {
        anyhow!("{file}: [random] key `{key}`: expected one of {{ uniform = [a, b] }}, {{ log_uniform = [a, b] }}, {{ int_uniform = [a, b] }}, {{ choice = [..] }}, got {v}")
    })?;
    let (kind, arg) = t.iter().next().expect("one entry");
    Ok(match kind.as_str() {
        "uniform" => {
            let (a, b) = pair(file, key, arg)?;
            Dist::Uniform(a, b)
        }
        "log_uniform" => {
            let (a, b) = pair(file, key, arg)?;
            if a <= 0.0 {
                bail!("{file}: [random] key `{key}`: log_uniform needs a positive low end, got {a}");
            }
            Dist::LogUniform(a, b)
        }
        "int_uniform" => {
            let (a, b) = pair(file, key, arg)?;
            if a.fract() != 0.0 || b.fract() != 0.0 {
                bail!("{file}: [random] key `{key}`: int_uniform needs integers, got {arg}");
            }
            Dist::IntUniform(a as i64, b as i64)
        }
        "choice" => match arg.as_array() {
            Some(a) if !a.is_empty() => Dist::Choice(a.clone()),
            _ => bail!("{file}: [random] key `{key}`: choice needs a non-empty list, got {arg}"),
        },
        other => bail!("{file}: [random] key `{key}`: unknown distribution `{other}` (expected uniform, log_uniform, int_uniform or choice)"),
    })
}

/// Reads and checks a sweep file.
pub fn load_spec(path: &Path) -> Result<SweepSpec> {
    load_spec_text(path).map(|(spec, _)| spec)
}

/// [`load_spec`], also returning the file's text (recorded in sweep.json).
pub fn load_spec_text(path: &Path) -> Result<(SweepSpec, String)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading sweep file {}", path.display()))?;
    let stem = path.file_stem().map(|s| s.to_string_lossy().trim_end_matches(".sweep").to_string()).unwrap_or_default();
    let spec = parse_spec(&text, &path.display().to_string(), &stem)?;
    Ok((spec, text))
}

/// Parses a sweep file's text; `file` names it in errors, `default_name` is the sweep's name when it sets none.
pub fn parse_spec(text: &str, file: &str, default_name: &str) -> Result<SweepSpec> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        anyhow!("{file}:{}: {}", line.unwrap_or(0), e.message().trim())
    })?;
    let mut spec = SweepSpec {
        name: default_name.to_string(),
        metric: "validation.accuracy".into(),
        mode: MetricMode::Max,
        seeds: None,
        seed_count: 1,
        report: Vec::new(),
        grid: Vec::new(),
        random: None,
        adjust: Vec::new(),
    };
    for (k, v) in &table {
        let where_ = || match config::locate(text, k) {
            Some(l) => format!("{file}:{l}"),
            None => file.to_string(),
        };
        match k.as_str() {
            "name" => spec.name = v.as_str().ok_or_else(|| anyhow!("{}: `name`: expected a string", where_()))?.into(),
            "metric" => {
                let m = v.as_str().ok_or_else(|| anyhow!("{}: `metric`: expected a string", where_()))?;
                if !m.contains('.') {
                    bail!("{}: `metric`: expected split.metric (e.g. \"validation.accuracy\"), got {m:?}", where_());
                }
                spec.metric = m.into();
            }
            "mode" => {
                spec.mode = match v.as_str() {
                    Some("max") => MetricMode::Max,
                    Some("min") => MetricMode::Min,
                    _ => bail!("{}: `mode`: expected \"max\" or \"min\", got {v}", where_()),
                }
            }
            "seeds" => match v {
                Value::Integer(n) if *n > 0 => spec.seed_count = *n as usize,
                Value::Array(a) if !a.is_empty() => {
                    let s: Option<Vec<u64>> =
                        a.iter().map(|x| x.as_integer().filter(|i| *i >= 0).map(|i| i as u64)).collect();
                    spec.seeds =
                        Some(s.ok_or_else(|| anyhow!("{}: `seeds`: expected non-negative integers", where_()))?);
                }
                _ => bail!("{}: `seeds`: expected a positive count or a non-empty list of seeds, got {v}", where_()),
            },
            "report" => {
                let r: Option<Vec<String>> =
                    v.as_array().and_then(|a| a.iter().map(|x| x.as_str().map(str::to_string)).collect());
                spec.report =
                    r.ok_or_else(|| anyhow!("{}: `report`: expected a list of \"split.metric\" strings", where_()))?;
            }
            "grid" => {
                let t = v.as_table().ok_or_else(|| anyhow!("{}: `grid` must be a table", where_()))?;
                let mut flat = Vec::new();
                flatten("", t, false, &mut flat);
                for (key, vals) in flat {
                    match vals {
                        Value::Array(a) if !a.is_empty() => spec.grid.push((key, a)),
                        other => bail!("{file}: [grid] key `{key}`: expected a non-empty list of values, got {other}"),
                    }
                }
            }
            "adjust" => {
                let list = v
                    .as_array()
                    .ok_or_else(|| anyhow!("{}: `adjust` must be an array of tables ([[adjust]])", where_()))?;
                for (i, a) in list.iter().enumerate() {
                    let t = a.as_table().ok_or_else(|| anyhow!("{file}: [[adjust]] #{}: expected a table", i + 1))?;
                    let part = |name: &str| -> Result<Vec<(String, Value)>> {
                        let sub = t.get(name).and_then(Value::as_table).ok_or_else(|| {
                            anyhow!(
                                "{file}: [[adjust]] #{}: needs `{name} = {{ \"section.key\" = value, ... }}`",
                                i + 1
                            )
                        })?;
                        let mut flat = Vec::new();
                        flatten("", sub, false, &mut flat);
                        Ok(flat)
                    };
                    if let Some(k) = t.keys().find(|k| *k != "if" && *k != "set") {
                        bail!("{file}: [[adjust]] #{}: unknown key `{k}` (expected `if` and `set`)", i + 1);
                    }
                    spec.adjust.push(Adjust { when: part("if")?, set: part("set")? });
                }
            }
            "random" => {
                let t = v.as_table().ok_or_else(|| anyhow!("{}: `random` must be a table", where_()))?;
                let mut r = RandomSpec { trials: 0, seed: 0, keys: Vec::new() };
                let mut flat = Vec::new();
                flatten("", t, true, &mut flat);
                for (key, val) in flat {
                    match key.as_str() {
                        "trials" => {
                            r.trials = val.as_integer().filter(|n| *n > 0).ok_or_else(|| {
                                anyhow!("{file}: [random] `trials`: expected a positive integer, got {val}")
                            })? as usize
                        }
                        "seed" => {
                            r.seed = val.as_integer().filter(|n| *n >= 0).ok_or_else(|| {
                                anyhow!("{file}: [random] `seed`: expected a non-negative integer, got {val}")
                            })? as u64
                        }
                        _ => {
                            let d = parse_dist(file, &key, &val)?;
                            r.keys.push((key, d));
                        }
                    }
                }
                if r.trials == 0 {
                    bail!("{file}: [random] needs `trials` (how many settings to draw)");
                }
                spec.random = Some(r);
            }
            other => bail!(
                "{}: unknown key `{other}` (expected name, metric, mode, seeds, report, [grid], [random], [[adjust]])",
                where_()
            ),
        }
    }
    if let Some(r) = &spec.random {
        if let Some((k, _)) = r.keys.iter().find(|(k, _)| spec.grid.iter().any(|(g, _)| g == k)) {
            bail!("{file}: key `{k}` is in both [grid] and [random]");
        }
    }
    Ok(spec)
}

/// Rounds to 4 significant digits (random draws), so names and configs agree exactly.
fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    format!("{x:.3e}").parse().unwrap_or(x)
}

fn draw(d: &Dist, rng: &mut model::rng::SeededRng) -> Value {
    match d {
        Dist::Uniform(a, b) => Value::Float(round_sig(rng.uniform(*a, *b))),
        Dist::LogUniform(a, b) => Value::Float(round_sig(rng.uniform(a.ln(), b.ln()).exp().clamp(*a, *b))),
        Dist::IntUniform(a, b) => Value::Integer(a + rng.below((b - a + 1) as u64) as i64),
        Dist::Choice(c) => c[rng.below(c.len() as u64) as usize].clone(),
    }
}

/// A value made safe for a directory name (anything but `[A-Za-z0-9._+-]` becomes `_`).
pub(super) fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || "._-+".contains(c) { c } else { '_' }).collect()
}

/// Every trial of the sweep, settings in grid order (random draws inside each grid point),
/// seeds innermost. `base_seed` is the base config's `run.seed` (used when `seeds` is a count).
pub fn trials(spec: &SweepSpec, base_seed: u64) -> Vec<Trial> {
    let mut settings: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for (key, values) in &spec.grid {
        settings = settings
            .into_iter()
            .flat_map(|s| {
                values.iter().map(move |v| {
                    let mut s = s.clone();
                    s.push((key.clone(), v.clone()));
                    s
                })
            })
            .collect();
    }
    if let Some(r) = &spec.random {
        let mut rng = model::rng::SeededRng::new(r.seed, "sweep");
        settings = settings
            .into_iter()
            .flat_map(|s| {
                (0..r.trials)
                    .map(|_| {
                        let mut s = s.clone();
                        for (k, d) in &r.keys {
                            s.push((k.clone(), draw(d, &mut rng)));
                        }
                        s
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
    }
    let seeds = spec.seeds.clone().unwrap_or_else(|| (0..spec.seed_count as u64).map(|i| base_seed + i).collect());
    // Short names (the key's last part) unless two keys share it.
    let keys: Vec<&String> = spec
        .grid
        .iter()
        .map(|(k, _)| k)
        .chain(spec.random.iter().flat_map(|r| r.keys.iter().map(|(k, _)| k)))
        .collect();
    let short = |k: &str| {
        let last = k.rsplit('.').next().unwrap_or(k);
        if keys.iter().filter(|o| o.rsplit('.').next() == Some(last)).count() > 1 {
            k.to_string()
        } else {
            last.to_string()
        }
    };
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for s in settings {
        let label: Vec<String> = s.iter().map(|(k, v)| format!("{}-{}", short(k), sanitize(&show(v)))).collect();
        for &seed in &seeds {
            let mut name = label.clone();
            name.push(format!("seed-{seed}"));
            let mut name = name.join("_");
            // Two random draws may round to the same values: keep both directories apart.
            let base = name.clone();
            let mut k = 2;
            while !seen.insert(name.clone()) {
                name = format!("{base}_dup{k}");
                k += 1;
            }
            let adjusted = spec
                .adjust
                .iter()
                .filter(|a| a.when.iter().all(|(k, v)| s.iter().any(|(sk, sv)| sk == k && sv == v)))
                .flat_map(|a| a.set.iter().cloned())
                .collect();
            out.push(Trial { name, overrides: s.clone(), adjusted, seed });
        }
    }
    out
}

/// `--set` arguments of a trial: the setting's overrides and its seed.
pub fn trial_sets(t: &Trial) -> Vec<String> {
    let mut v: Vec<String> = t.overrides.iter().chain(&t.adjusted).map(|(k, val)| format!("{k}={val}")).collect();
    v.push(format!("run.seed={}", t.seed));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
name = "t"
seeds = [1, 2]
metric = "validation.accuracy"
[grid]
"model.variant" = ["vanilla", "nog"]
model.hidden = [8, 16]
[random]
trials = 2
seed = 3
"train.lr" = { log_uniform = [1e-4, 1e-2] }
"model.pooling" = { choice = ["last", "max"] }
"#;

    #[test]
    fn grid_times_random_times_seeds() {
        let spec = parse_spec(SPEC, "s.toml", "s").unwrap();
        assert_eq!(spec.grid.len(), 2);
        let ts = trials(&spec, 42);
        assert_eq!(ts.len(), 2 * 2 * 2 * 2);
        assert_eq!(ts, trials(&spec, 42), "draws are seeded");
        for t in &ts {
            let lr = t.overrides.iter().find(|(k, _)| k == "train.lr").unwrap().1.as_float().unwrap();
            assert!((1e-4..=1e-2).contains(&lr), "{lr}");
            assert_eq!(lr, round_sig(lr));
            assert!(t.name.contains(&format!("seed-{}", t.seed)));
        }
        assert!(
            ts[0].name.starts_with("hidden-8_variant-nog_lr-") || ts[0].name.starts_with("hidden-8_variant-"),
            "{}",
            ts[0].name
        );
        // Seeds innermost: consecutive trials share a setting.
        assert_eq!(ts[0].setting(), ts[1].setting());
        assert_ne!(ts[1].setting(), ts[2].setting());
        let names: std::collections::HashSet<_> = ts.iter().map(|t| &t.name).collect();
        assert_eq!(names.len(), ts.len());
    }

    #[test]
    fn adjust_adds_overrides_to_matching_settings() {
        let spec = parse_spec(
            "[grid]\n\"model.variant\" = [\"vanilla\", \"nfg\"]\n[[adjust]]\nif = { \"model.variant\" = \"nfg\" }\nset = { \"model.forget_bias\" = 0.0 }\n",
            "s.toml",
            "s",
        )
        .unwrap();
        let ts = trials(&spec, 1);
        assert_eq!(ts[0].name, "variant-vanilla_seed-1");
        assert_eq!(trial_sets(&ts[0]), vec!["model.variant=\"vanilla\"", "run.seed=1"]);
        assert_eq!(ts[1].name, "variant-nfg_seed-1");
        assert_eq!(trial_sets(&ts[1]), vec!["model.variant=\"nfg\"", "model.forget_bias=0.0", "run.seed=1"]);
        let e = format!("{:#}", parse_spec("[[adjust]]\nif = { a = 1 }\n", "s.toml", "s").unwrap_err());
        assert!(e.contains("needs `set"), "{e}");
    }

    #[test]
    fn seed_count_counts_from_the_base_seed() {
        let spec = parse_spec("seeds = 3\n", "s.toml", "s").unwrap();
        let ts = trials(&spec, 10);
        assert_eq!(ts.iter().map(|t| t.seed).collect::<Vec<_>>(), vec![10, 11, 12]);
        assert_eq!(ts[0].name, "seed-10");
        assert_eq!(trial_sets(&ts[0]), vec!["run.seed=10".to_string()]);
    }

    #[test]
    fn bad_specs_name_the_problem() {
        let e = |t: &str| format!("{:#}", parse_spec(t, "s.toml", "s").unwrap_err());
        assert!(e("[grid]\n\"model.hidden\" = 8\n").contains("[grid] key `model.hidden`"));
        assert!(e("[random]\n\"train.lr\" = { uniform = [1, 2] }\n").contains("needs `trials`"));
        assert!(e("[random]\ntrials = 2\n\"train.lr\" = { log_uniform = [0, 1] }\n").contains("positive low end"));
        assert!(e("[random]\ntrials = 2\n\"train.lr\" = { gauss = [0, 1] }\n").contains("unknown distribution"));
        assert!(e("seed = 3\n").contains("s.toml:1: unknown key `seed`"));
        assert!(e("metric = \"accuracy\"\n").contains("split.metric"));
        assert!(e("seeds = 0\n").contains("seeds"));
    }
}
