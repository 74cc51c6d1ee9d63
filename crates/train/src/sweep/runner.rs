//! Running a sweep: every trial's config is checked first, then the trials run as child
//! `train` processes (`--jobs` at a time), each skipped, resumed or started by what its run
//! directory holds.

use super::record::{SweepRecord, TrialRecord};
use super::report::{metric_of, read_summary, write_results};
use super::spec::{load_spec_text, sanitize, trial_sets, trials, SweepSpec, Trial};
use crate::config::{self, Config};
use crate::overrides::Override;
use anyhow::{bail, Context, Result};
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

/// A sweep ready to run: every trial's config checked, its `--set` list fixed.
pub(super) struct Plan {
    /// The sweep file (with `--metric` applied).
    pub spec: SweepSpec,
    /// The sweep file's text, recorded in sweep.json.
    pub spec_text: String,
    /// The base config with the common `--set`s.
    pub base: Config,
    /// The sweep directory.
    pub dir: PathBuf,
    /// Every trial, in order.
    pub trials: Vec<Trial>,
    /// Each trial's full `--set` list (common sets, thread count, the trial's own).
    pub sets: Vec<Vec<String>>,
    /// Each trial's resolved config.
    pub configs: Vec<Config>,
}

impl Plan {
    /// What sweep.json records for this plan.
    pub fn record(&self, config: &Path, sweep: &Path, sets: &[String], backend: &str) -> SweepRecord {
        SweepRecord {
            name: self.spec.name.clone(),
            config: config.display().to_string(),
            sweep: sweep.display().to_string(),
            sets: sets.to_vec(),
            metric: self.spec.metric.clone(),
            trials: self.trials.iter().map(TrialRecord::from).collect(),
            backend: Some(backend.into()),
            base_seed: Some(self.base.run.seed),
            spec_toml: Some(self.spec_text.clone()),
            slurm: None,
        }
    }
}

/// Loads the sweep and the base config and checks every trial's config. `share` gives the
/// thread count of a trial whose threads the user did not choose, from the base config.
pub(super) fn plan(
    config_path: &Path,
    sweep: &Path,
    dir: Option<&Path>,
    common: &[String],
    metric: Option<&str>,
    share: impl FnOnce(&Config) -> usize,
) -> Result<Plan> {
    let (mut spec, spec_text) = load_spec_text(sweep)?;
    if let Some(m) = metric {
        if !m.contains('.') {
            bail!("--metric {m:?}: expected split.metric, e.g. validation.accuracy");
        }
        spec.metric = m.to_string();
    }
    let base_sets: Vec<Override> = common.iter().map(|s| Override::parse(s)).collect::<Result<_>>()?;
    let base = config::load(config_path, &base_sets)?.config;
    let dir =
        dir.map(Path::to_path_buf).unwrap_or_else(|| base.run.out_dir.join(format!("sweep-{}", sanitize(&spec.name))));
    let trials = trials(&spec, base.run.seed);
    if trials.is_empty() {
        bail!("{}: the sweep has no trials", sweep.display());
    }
    let threads = share(&base).max(1);
    // A trial gets its share of the cores unless the thread count is set (--set, the sweep)
    // or the base config already asks for no more than its share.
    let user_threads = common.iter().any(|s| s.trim_start().starts_with("run.threads"))
        || spec.grid.iter().any(|(k, _)| k == "run.threads")
        || (base.run.threads > 0 && base.run.threads <= threads);

    // Every trial's config must load before anything runs: a typo in the sweep file should
    // fail now with the key named, not after an hour of trials.
    let (mut all_sets, mut configs) = (Vec::new(), Vec::new());
    for t in &trials {
        let mut sets = common.to_vec();
        if !user_threads {
            sets.push(format!("run.threads={threads}"));
        }
        sets.extend(trial_sets(t));
        let parsed: Vec<Override> = sets.iter().map(|s| Override::parse(s)).collect::<Result<_>>()?;
        let cfg = config::load(config_path, &parsed).with_context(|| format!("sweep trial {}", t.name))?;
        configs.push(cfg.config);
        all_sets.push(sets);
    }
    Ok(Plan { spec, spec_text, base, dir, trials, sets: all_sets, configs })
}

/// Runs (or completes) a sweep and writes its results; returns the sweep directory.
pub fn run(opts: &SweepOptions) -> Result<PathBuf> {
    let jobs = opts.jobs.max(1);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let p = plan(&opts.config, &opts.sweep, opts.dir.as_deref(), &opts.sets, opts.metric.as_deref(), |_| cores / jobs)?;
    let (spec, dir, trials) = (&p.spec, &p.dir, &p.trials);
    let plans: Vec<(&Trial, &Vec<String>)> = p.trials.iter().zip(&p.sets).collect();
    if opts.dry_run {
        for (t, sets) in &plans {
            println!("{}\t--set {}", t.name, sets.join(" --set "));
        }
        return Ok(dir.clone());
    }
    let mut record = p.record(&opts.config, &opts.sweep, &opts.sets, "local");
    if let Some(old) = SweepRecord::read_if_present(dir)? {
        record.check_same_sweep(&old, dir)?;
        // Trials a Slurm array still runs must not be run here at the same time.
        if let Some(sl) = &old.slurm {
            let active = super::status::active_tasks(sl)?;
            if !active.is_empty() {
                bail!(
                    "{}: Slurm job {} still has {} queued or running trials (`train sweep --dir {} --status`); wait for it or scancel it first",
                    dir.display(),
                    sl.job_id,
                    active.len(),
                    dir.display()
                );
            }
        }
        record.slurm = old.slurm;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating sweep directory {}", dir.display()))?;
    record.write(dir)?;

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
                let (t, sets) = plans[i];
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
    write_results(dir, spec, trials)?;
    let failed: Vec<&str> = outcomes
        .into_inner()
        .expect("outcome lock")
        .iter()
        .zip(trials)
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
    Ok(dir.clone())
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
