//! Running a sweep: every trial's config is checked first, then the trials run as child
//! `train` processes (`--jobs` at a time), each skipped, resumed or started by what its run
//! directory holds.

use super::report::{metric_of, read_summary, write_results};
use super::spec::{load_spec, sanitize, trial_sets, trials};
use crate::config;
use crate::overrides::Override;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `train sweep` runs (its arguments, plus the executable for tests).
pub struct SweepOptions {
    /// The base run config.
    pub config: PathBuf,
    /// The sweep file.
    pub sweep: PathBuf,
    /// Default: `<base run.out_dir>/sweep-<name>`.
    pub dir: Option<PathBuf>,
    /// Trials run at once.
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
    /// Already finished before this invocation.
    Skipped,
    /// Ran (or resumed) to completion now.
    Ran,
    /// The child process failed.
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
