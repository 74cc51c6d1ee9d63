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

//!
//! `--backend slurm` submits the same trials as one Slurm job array instead (see [`slurm`]);
//! `--status`, `--collect` and `--retry-failed` then work from `--dir` alone (see [`status`]).

mod record;
mod report;
mod runner;
pub mod slurm;
mod spec;
pub mod status;

pub use record::{SlurmRecord, Submission, SweepRecord, TrialRecord};
pub use report::{collect, markdown, mean_std, metric_of, read_summary, write_results, Row};
pub use runner::{run, Outcome, SweepOptions};
pub use slurm::{ScriptParams, SlurmOptions};
pub use spec::{
    load_spec, load_spec_text, parse_spec, show, trial_sets, trials, Adjust, Dist, RandomSpec, SweepSpec, Trial,
};

use anyhow::{bail, Result};
use std::path::PathBuf;
use std::time::Instant;

/// Where the trials run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Backend {
    /// Child processes on this machine (`--jobs` at a time).
    #[default]
    Local,
    /// One Slurm job array, submitted with `sbatch`.
    Slurm,
}

/// Arguments of `train sweep`.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// The base run config every trial starts from.
    #[arg(long, required_unless_present_any = ["status", "collect", "retry_failed"])]
    pub config: Option<PathBuf>,
    /// The sweep file ([grid], [random], seeds, metric).
    #[arg(long, required_unless_present_any = ["status", "collect", "retry_failed"])]
    pub sweep: Option<PathBuf>,
    /// Sweep directory (default: <run.out_dir>/sweep-<name>); rerun with the same one to
    /// skip finished trials and resume interrupted ones.
    #[arg(long, required_if_eq_any = [("status", "true"), ("collect", "true"), ("retry_failed", "true")])]
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
    /// List the trials and their overrides (local) or print the job scripts (slurm) without
    /// running or submitting anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Where trials run: child processes here, or one Slurm job array (sbatch on PATH; the
    /// sweep directory and the binary on a filesystem every node sees).
    #[arg(long, value_enum, default_value_t = Backend::Local)]
    pub backend: Backend,
    /// Slurm partition of the trials and the collect job.
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm time limit per trial (HH:MM:SS, or any format sbatch takes).
    #[arg(long)]
    pub time: Option<String>,
    /// CPUs per trial, which is also each trial's run.threads (default: the base config's
    /// run.threads, 1 when that is 0).
    #[arg(long)]
    pub cpus_per_trial: Option<usize>,
    /// Memory per trial (sbatch --mem), e.g. 8G.
    #[arg(long)]
    pub mem: Option<String>,
    /// Trials Slurm runs at once (the array's %K throttle; default: as many as fit).
    #[arg(long)]
    pub max_parallel: Option<usize>,
    /// A further sbatch option for every job, e.g. --slurm-arg=--account=proj (repeatable).
    #[arg(long = "slurm-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub slurm_args: Vec<String>,
    /// The train executable as the compute nodes see it (default: this one).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Print each trial's state (finished, running, pending, failed) from its run directory
    /// and, for a Slurm sweep, squeue/sacct.
    #[arg(long, conflicts_with_all = ["collect", "retry_failed"])]
    pub status: bool,
    /// Write results.csv and results.md from the finished trials (a Slurm sweep's final
    /// dependent job runs this).
    #[arg(long, conflicts_with = "retry_failed")]
    pub collect: bool,
    /// Resubmit the trials of a Slurm sweep that ended without finishing; they resume from
    /// their last saved state.
    #[arg(long)]
    pub retry_failed: bool,
}

/// `train sweep`.
pub fn cli(a: &SweepArgs) -> Result<()> {
    if a.status || a.collect || a.retry_failed {
        let dir = a.dir.as_deref().expect("clap requires --dir");
        return if a.status {
            status::status(dir)
        } else if a.collect {
            collect_cli(dir, a.metric.as_deref())
        } else {
            status::retry_failed(dir, a.max_parallel)
        };
    }
    let (Some(config), Some(sweep)) = (&a.config, &a.sweep) else {
        bail!("--config and --sweep are required to start a sweep");
    };
    let slurm_only = [
        ("--partition", a.partition.is_some()),
        ("--time", a.time.is_some()),
        ("--cpus-per-trial", a.cpus_per_trial.is_some()),
        ("--mem", a.mem.is_some()),
        ("--max-parallel", a.max_parallel.is_some()),
        ("--slurm-arg", !a.slurm_args.is_empty()),
        ("--binary", a.binary.is_some()),
    ];
    if a.backend == Backend::Slurm {
        if a.jobs != 1 {
            bail!("--jobs is for --backend local; with --backend slurm, --max-parallel caps the trials run at once");
        }
        let opts = SlurmOptions {
            partition: a.partition.clone(),
            time: a.time.clone(),
            cpus_per_trial: a.cpus_per_trial,
            mem: a.mem.clone(),
            max_parallel: a.max_parallel,
            slurm_args: a.slurm_args.clone(),
            binary: a.binary.clone(),
        };
        slurm::submit_sweep(&slurm::SubmitArgs {
            config,
            sweep,
            dir: a.dir.as_deref(),
            sets: &a.sets,
            metric: a.metric.as_deref(),
            dry_run: a.dry_run,
            slurm: &opts,
        })?;
        return Ok(());
    }
    if let Some((flag, _)) = slurm_only.iter().find(|(_, given)| *given) {
        bail!("{flag} is for --backend slurm");
    }
    let started = Instant::now();
    let opts = SweepOptions {
        config: config.clone(),
        sweep: sweep.clone(),
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

fn collect_cli(dir: &std::path::Path, metric: Option<&str>) -> Result<()> {
    if let Some(m) = metric {
        if !m.contains('.') {
            bail!("--metric {m:?}: expected split.metric, e.g. validation.accuracy");
        }
    }
    status::collect(dir, metric)
}
