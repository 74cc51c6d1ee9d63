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

mod report;
mod runner;
mod spec;

pub use report::{collect, markdown, mean_std, metric_of, read_summary, write_results, Row};
pub use runner::{run, Outcome, SweepOptions};
pub use spec::{load_spec, parse_spec, show, trial_sets, trials, Adjust, Dist, RandomSpec, SweepSpec, Trial};

use anyhow::Result;
use std::path::PathBuf;
use std::time::Instant;

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
