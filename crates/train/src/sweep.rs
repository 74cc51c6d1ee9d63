//! Hyperparameter sweeps: `train sweep --config base.toml --sweep sweep.toml [--dir DIR] [--jobs N]`.
//!
//! The sweep file names the settings to try; each (setting, seed) is a trial, run as a normal
//! run directory under the sweep directory by a child `train` process (so trials are isolated,
//! can run in parallel, and each one resumes exactly like any run):
//!
//! ```toml
//! name = "ablation"            # default: the sweep file's stem
//! metric = "validation.accuracy"   # ranks settings in results.md (split.metric of summary.json)
//! mode = "max"                 # "max" | "min"
//! seeds = [1, 2, 3]            # or a count n: seeds base, base+1, ..., base+n-1 (base = run.seed)
//! report = ["test.accuracy"]   # further columns of results.md (default: the metric's test twin)
//!
//! [grid]                       # full cross product, keys are dotted config keys
//! "model.variant" = ["vanilla", "nog", "noaf"]
//! "model.hidden" = [64, 128]
//!
//! [random]                     # `trials` draws per grid point, from the sweep's own seeded RNG
//! trials = 8
//! seed = 0                     # default 0
//! "train.lr" = { log_uniform = [1e-4, 1e-2] }
//! "model.dropout" = { uniform = [0.0, 0.5] }
//! "model.layers" = { int_uniform = [1, 3] }      # inclusive
//! "model.pooling" = { choice = ["last", "max"] }
//!
//! [[adjust]]                   # extra overrides where a setting matches (names unchanged)
//! if = { "model.variant" = "nfg" }
//! set = { "model.forget_bias" = 0.0 }
//! ```
//!
//! Random floats are rounded to 4 significant digits, so the value in the directory name is
//! the value that ran. A trial whose directory has `summary.json` is skipped on a rerun; one
//! with `config.toml` but no summary is resumed (`train resume`); the rest start afresh.
//! At the end `results.csv` (one row per finished run) and `results.md` (mean ± sample std over
//! seeds per setting, ranked by `metric`) are written into the sweep directory.

use crate::config::{self, MetricMode};
use crate::overrides::Override;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use toml::Value;

/// A distribution of the `[random]` section.
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    Uniform(f64, f64),
    LogUniform(f64, f64),
    /// Inclusive integer range.
    IntUniform(i64, i64),
    Choice(Vec<Value>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RandomSpec {
    pub trials: usize,
    pub seed: u64,
    pub keys: Vec<(String, Dist)>,
}

/// A parsed sweep file.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSpec {
    pub name: String,
    /// `split.metric`, e.g. `validation.accuracy`.
    pub metric: String,
    pub mode: MetricMode,
    /// Explicit seeds, or `None` with a count in `seed_count`.
    pub seeds: Option<Vec<u64>>,
    pub seed_count: usize,
    pub report: Vec<String>,
    pub grid: Vec<(String, Vec<Value>)>,
    pub random: Option<RandomSpec>,
    /// `[[adjust]]`: extra overrides for the settings matching every `if` pair.
    pub adjust: Vec<Adjust>,
}

/// Conditional overrides: `[[adjust]] if = { "model.variant" = "nfg" }, set = { "model.forget_bias" = 0.0 }`.
/// They do not change trial names (they follow from the setting).
#[derive(Debug, Clone, PartialEq)]
pub struct Adjust {
    pub when: Vec<(String, Value)>,
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
    let text = std::fs::read_to_string(path).with_context(|| format!("reading sweep file {}", path.display()))?;
    let stem = path.file_stem().map(|s| s.to_string_lossy().trim_end_matches(".sweep").to_string()).unwrap_or_default();
    parse_spec(&text, &path.display().to_string(), &stem)
}

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

fn sanitize(s: &str) -> String {
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

pub struct SweepOptions {
    pub config: PathBuf,
    pub sweep: PathBuf,
    /// Default: `<base run.out_dir>/sweep-<name>`.
    pub dir: Option<PathBuf>,
    pub jobs: usize,
    /// Extra `--set` overrides for every trial (applied before the sweep's own).
    pub sets: Vec<String>,
    /// Overrides the sweep file's ranking metric.
    pub metric: Option<String>,
    /// Only print the trials.
    pub dry_run: bool,
    /// The `train` executable that runs each trial (default: this process's executable).
    pub exe: Option<PathBuf>,
}

/// What happened to a trial in this invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Skipped,
    Ran,
    Failed,
}

/// Runs (or completes) a sweep and writes its results; returns the sweep directory.
pub fn run(opts: &SweepOptions) -> Result<PathBuf> {
    let mut spec = load_spec(&opts.sweep)?;
    if let Some(m) = &opts.metric {
        if !m.contains('.') {
            bail!("--metric {m:?}: expected split.metric, e.g. validation.accuracy");
        }
        spec.metric = m.clone();
    }
    let base_sets: Vec<Override> = opts.sets.iter().map(|s| Override::parse(s)).collect::<Result<_>>()?;
    let base = config::load(&opts.config, &base_sets)?.config;
    let dir = opts.dir.clone().unwrap_or_else(|| base.run.out_dir.join(format!("sweep-{}", sanitize(&spec.name))));
    let trials = trials(&spec, base.run.seed);
    if trials.is_empty() {
        bail!("{}: the sweep has no trials", opts.sweep.display());
    }
    let jobs = opts.jobs.max(1);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // Jobs share the cores: each gets cores / jobs threads, unless the thread count is set
    // (--set, the sweep) or the base config already asks for no more than its share.
    let threads = (cores / jobs).max(1);
    let user_threads = opts.sets.iter().any(|s| s.trim_start().starts_with("run.threads"))
        || spec.grid.iter().any(|(k, _)| k == "run.threads")
        || (base.run.threads > 0 && base.run.threads <= threads);

    // Every trial's config must load before anything runs: a typo in the sweep file should
    // fail now with the key named, not after an hour of trials.
    let mut plans = Vec::new();
    for t in &trials {
        let mut sets = opts.sets.clone();
        if !user_threads {
            sets.push(format!("run.threads={threads}"));
        }
        sets.extend(trial_sets(t));
        let parsed: Vec<Override> = sets.iter().map(|s| Override::parse(s)).collect::<Result<_>>()?;
        config::load(&opts.config, &parsed).with_context(|| format!("sweep trial {}", t.name))?;
        plans.push((t.clone(), sets));
    }
    if opts.dry_run {
        for (t, sets) in &plans {
            println!("{}\t--set {}", t.name, sets.join(" --set "));
        }
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating sweep directory {}", dir.display()))?;
    let record = json!({
        "name": spec.name,
        "config": opts.config.display().to_string(),
        "sweep": opts.sweep.display().to_string(),
        "sets": opts.sets,
        "metric": spec.metric,
        "trials": trials.iter().map(|t| json!({"name": t.name, "setting": t.setting(), "seed": t.seed})).collect::<Vec<_>>(),
    });
    crate::atomic::write_json(&dir.join("sweep.json"), &record)?;

    let exe = match &opts.exe {
        Some(e) => e.clone(),
        None => std::env::current_exe().context("locating the train executable")?,
    };
    let total = plans.len();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let outcomes = std::sync::Mutex::new(vec![Outcome::Skipped; total]);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..jobs.min(total) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= total {
                    break;
                }
                let (t, sets) = &plans[i];
                let run_dir = dir.join(&t.name);
                let outcome = run_trial(&exe, &opts.config, &run_dir, sets);
                let k = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                let msg = match &outcome {
                    Ok(Outcome::Skipped) => "already finished".to_string(),
                    Ok(_) => match read_summary(&run_dir) {
                        Ok(s) => format!(
                            "{} {}",
                            spec.metric,
                            metric_of(&s, &spec.metric).map(|v| format!("{v:.4}")).unwrap_or("?".into())
                        ),
                        Err(e) => format!("{e:#}"),
                    },
                    Err(e) => format!("FAILED: {e:#} (log: {})", run_dir.join("train.log").display()),
                };
                eprintln!("[{k}/{total}] {}: {msg} ({:.0} s into the sweep)", t.name, started.elapsed().as_secs_f64());
                outcomes.lock().expect("outcome lock")[i] = outcome.unwrap_or(Outcome::Failed);
            });
        }
    });
    write_results(&dir, &spec, &trials)?;
    let failed: Vec<&str> = outcomes
        .into_inner()
        .expect("outcome lock")
        .iter()
        .zip(&trials)
        .filter(|(o, _)| **o == Outcome::Failed)
        .map(|(_, t)| t.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {total} trials failed: {} (their train.log says why; rerun the same command to retry them)",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(dir)
}

/// Runs one trial to completion in a child process: skip, resume or start.
fn run_trial(exe: &Path, config: &Path, run_dir: &Path, sets: &[String]) -> Result<Outcome> {
    if run_dir.join("summary.json").exists() {
        return Ok(Outcome::Skipped);
    }
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let log_path = run_dir.join("train.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut cmd = std::process::Command::new(exe);
    if run_dir.join("config.toml").exists() {
        cmd.args(["resume", "--run"]).arg(run_dir).arg("--quiet");
    } else {
        cmd.arg("--config").arg(config).arg("--run-dir").arg(run_dir).arg("--quiet");
        for s in sets {
            cmd.arg("--set").arg(s);
        }
    }
    let status =
        cmd.stdout(log.try_clone()?).stderr(log).status().with_context(|| format!("starting {}", exe.display()))?;
    if !status.success() {
        bail!("{status}");
    }
    Ok(Outcome::Ran)
}

fn read_summary(run_dir: &Path) -> Result<Json> {
    let p = run_dir.join("summary.json");
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

/// `split.metric` (or a top-level number such as `wall_seconds`) from a summary.
pub fn metric_of(summary: &Json, key: &str) -> Option<f64> {
    match key.split_once('.') {
        Some((split, m)) => summary.get(split)?.get(m)?.as_f64(),
        None => summary.get(key)?.as_f64(),
    }
}

/// A finished trial's numbers.
#[derive(Debug, Clone)]
pub struct Row {
    pub trial: Trial,
    /// `split.metric` → value, for every scalar metric of every split in summary.json.
    pub metrics: BTreeMap<String, f64>,
    pub wall_seconds: f64,
}

/// Rows of every trial whose run has finished, in trial order.
pub fn collect(dir: &Path, trials: &[Trial]) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for t in trials {
        let run_dir = dir.join(&t.name);
        if !run_dir.join("summary.json").exists() {
            continue;
        }
        let s = read_summary(&run_dir)?;
        let mut metrics = BTreeMap::new();
        for split in ["validation", "test"] {
            if let Some(obj) = s.get(split).and_then(Json::as_object) {
                for (k, v) in obj {
                    if let Some(x) = v.as_f64() {
                        metrics.insert(format!("{split}.{k}"), x);
                    }
                }
            }
        }
        for k in ["best_epoch", "epochs", "parameters"] {
            if let Some(x) = s.get(k).and_then(Json::as_f64) {
                metrics.insert(k.to_string(), x);
            }
        }
        let wall_seconds = s.get("wall_seconds").and_then(Json::as_f64).unwrap_or(f64::NAN);
        rows.push(Row { trial: t.clone(), metrics, wall_seconds });
    }
    Ok(rows)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Mean and sample standard deviation (n − 1; 0 for a single value).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Writes `results.csv` and `results.md` for the finished trials.
pub fn write_results(dir: &Path, spec: &SweepSpec, trials: &[Trial]) -> Result<()> {
    let rows = collect(dir, trials)?;
    let keys: Vec<String> = spec
        .grid
        .iter()
        .map(|(k, _)| k.clone())
        .chain(spec.random.iter().flat_map(|r| r.keys.iter().map(|(k, _)| k.clone())))
        .collect();
    let mut metric_names: Vec<String> = rows.iter().flat_map(|r| r.metrics.keys().cloned()).collect();
    metric_names.sort();
    metric_names.dedup();

    let mut csv = String::new();
    let mut header = vec!["run".to_string()];
    header.extend(keys.iter().cloned());
    header.push("seed".into());
    header.extend(metric_names.iter().cloned());
    header.push("wall_seconds".into());
    csv.push_str(&header.iter().map(|h| csv_field(h)).collect::<Vec<_>>().join(","));
    csv.push('\n');
    for r in &rows {
        let mut f = vec![r.trial.name.clone()];
        for k in &keys {
            f.push(r.trial.overrides.iter().find(|(o, _)| o == k).map(|(_, v)| show(v)).unwrap_or_default());
        }
        f.push(r.trial.seed.to_string());
        for m in &metric_names {
            f.push(r.metrics.get(m).map(|v| format!("{v}")).unwrap_or_default());
        }
        f.push(format!("{:.1}", r.wall_seconds));
        csv.push_str(&f.iter().map(|x| csv_field(x)).collect::<Vec<_>>().join(","));
        csv.push('\n');
    }
    crate::atomic::write(&dir.join("results.csv"), csv.as_bytes())?;
    crate::atomic::write(&dir.join("results.md"), markdown(spec, &keys, &rows, trials.len()).as_bytes())
}

/// "mean ± std" with 4 decimals (whole numbers for counts and large values); the mean alone
/// for a single run or a value that does not vary.
fn mean_cell(m: f64, s: f64, n: usize) -> String {
    if m.is_nan() || n == 0 {
        return "–".into();
    }
    let big = m.abs() >= 100.0;
    let v = if big { format!("{m:.0}") } else { format!("{m:.4}") };
    if n < 2 || (big && s < 0.5) {
        v
    } else if big {
        format!("{v} ± {s:.0}")
    } else {
        format!("{v} ± {s:.4}")
    }
}

/// The ranked per-setting table.
pub fn markdown(spec: &SweepSpec, keys: &[String], rows: &[Row], total_trials: usize) -> String {
    let mut columns = vec![spec.metric.clone()];
    let report = if spec.report.is_empty() {
        spec.metric.strip_prefix("validation.").map(|m| vec![format!("test.{m}")]).unwrap_or_default()
    } else {
        spec.report.clone()
    };
    for r in report {
        if !columns.contains(&r) {
            columns.push(r);
        }
    }
    // Settings in first-seen order.
    let mut groups: Vec<(String, Vec<&Row>)> = Vec::new();
    for r in rows {
        let s = r.trial.setting();
        match groups.iter_mut().find(|(g, _)| *g == s) {
            Some((_, v)) => v.push(r),
            None => groups.push((s, vec![r])),
        }
    }
    struct Line<'a> {
        rows: Vec<&'a Row>,
        stats: Vec<(f64, f64)>,
        wall: f64,
    }
    let mut lines: Vec<Line> = groups
        .into_iter()
        .map(|(_, rows)| {
            let stats = columns
                .iter()
                .map(|c| {
                    let xs: Vec<f64> = rows.iter().filter_map(|r| r.metrics.get(c).copied()).collect();
                    mean_std(&xs)
                })
                .collect();
            let wall = rows.iter().map(|r| r.wall_seconds).sum::<f64>() / rows.len() as f64;
            Line { rows, stats, wall }
        })
        .collect();
    let better = |a: f64, b: f64| match spec.mode {
        MetricMode::Max => b.partial_cmp(&a),
        MetricMode::Min => a.partial_cmp(&b),
    };
    // NaN (metric missing) sorts last; ties keep the sweep file's order.
    lines.sort_by(|a, b| {
        let (x, y) = (a.stats[0].0, b.stats[0].0);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => better(x, y).unwrap_or(std::cmp::Ordering::Equal),
        }
    });
    let mut md = format!(
        "# Sweep `{}`\n\n{} finished runs of {} trials; settings ranked by {} ({}), mean ± sample std over seeds.\n\n",
        spec.name,
        rows.len(),
        total_trials,
        spec.metric,
        if spec.mode == MetricMode::Max { "higher is better" } else { "lower is better" }
    );
    let mut head = vec!["rank".to_string()];
    head.extend(keys.iter().map(|k| format!("`{k}`")));
    head.push("seeds".into());
    head.extend(columns.iter().cloned());
    head.push("wall s / run".into());
    md.push_str(&format!("| {} |\n", head.join(" | ")));
    md.push_str(&format!("|{}\n", head.iter().map(|_| "---|").collect::<String>()));
    for (i, l) in lines.iter().enumerate() {
        let t = &l.rows[0].trial;
        let mut f = vec![(i + 1).to_string()];
        for k in keys {
            f.push(t.overrides.iter().find(|(o, _)| o == k).map(|(_, v)| show(v)).unwrap_or_default());
        }
        f.push(l.rows.len().to_string());
        for (c, (m, s)) in columns.iter().zip(&l.stats) {
            let n = l.rows.iter().filter(|r| r.metrics.contains_key(c)).count();
            f.push(mean_cell(*m, *s, n));
        }
        f.push(format!("{:.0}", l.wall));
        md.push_str(&format!("| {} |\n", f.join(" | ")));
    }
    md
}

/// Arguments of `train sweep`.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// The base run config every trial starts from.
    #[arg(long)]
    pub config: PathBuf,
    /// The sweep file ([grid], [random], seeds, metric).
    #[arg(long)]
    pub sweep: PathBuf,
    /// Sweep directory (default: <run.out_dir>/sweep-<name>); rerun with the same one to
    /// skip finished trials and resume interrupted ones.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Trials run at once, each with run.threads = cores / jobs (unless --set run.threads is
    /// given or the base config asks for fewer).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Override a config key for every trial (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub sets: Vec<String>,
    /// Rank by this split.metric instead of the sweep file's.
    #[arg(long)]
    pub metric: Option<String>,
    /// List the trials and their overrides without running anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// `train sweep`.
pub fn cli(a: &SweepArgs) -> Result<()> {
    let started = Instant::now();
    let opts = SweepOptions {
        config: a.config.clone(),
        sweep: a.sweep.clone(),
        dir: a.dir.clone(),
        jobs: a.jobs,
        sets: a.sets.clone(),
        metric: a.metric.clone(),
        dry_run: a.dry_run,
        exe: None,
    };
    let dir = run(&opts)?;
    if !a.dry_run {
        eprintln!("sweep finished in {:.0} s: {}", started.elapsed().as_secs_f64(), dir.display());
        let md = std::fs::read_to_string(dir.join("results.md")).unwrap_or_default();
        println!("{md}");
    }
    Ok(())
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

    #[test]
    fn stats_and_ranking() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0]);
        assert_eq!(m, 2.0);
        assert!((s - 1.0).abs() < 1e-12);
        assert_eq!(mean_std(&[5.0]), (5.0, 0.0));
        let spec = parse_spec("seeds = [1, 2]\n[grid]\n\"model.variant\" = [\"a\", \"b\"]\n", "s.toml", "s").unwrap();
        let ts = trials(&spec, 0);
        let rows: Vec<Row> = ts
            .iter()
            .zip([0.6, 0.7, 0.9, 0.8])
            .map(|(t, acc)| Row {
                trial: t.clone(),
                metrics: [("validation.accuracy".to_string(), acc), ("test.accuracy".to_string(), acc - 0.1)]
                    .into_iter()
                    .collect(),
                wall_seconds: 10.0,
            })
            .collect();
        let md = markdown(&spec, &["model.variant".to_string()], &rows, 4);
        let lines: Vec<&str> = md.lines().filter(|l| l.starts_with("| 1") || l.starts_with("| 2")).collect();
        assert!(lines[0].starts_with("| 1 | b | 2 | 0.8500 ± 0.0707 | 0.7500 ± 0.0707 |"), "{md}");
        assert!(lines[1].starts_with("| 2 | a | 2 | 0.6500 ± 0.0707"), "{md}");
        assert_eq!(mean_cell(0.75, 0.0, 1), "0.7500");
        assert_eq!(mean_cell(1940098.0, 0.0, 2), "1940098");
        assert_eq!(mean_cell(f64::NAN, 0.0, 0), "–");
    }
}
