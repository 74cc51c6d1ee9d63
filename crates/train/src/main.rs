//! `train`: the command-line front door. Thin: parsing, logging, then the library.

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use train::config;
use train::overrides::Override;
use train::rundir::RunDir;
use train::trainer::Options;

#[derive(Parser)]
#[command(name = "train", version, about = "Train, evaluate and use LSTM models (sluice)")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Args)]
struct TrainArgs {
    /// The run's TOML config (see configs/).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config key: --set section.key=value (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    sets: Vec<String>,
    /// Run directory (default: <run.out_dir>/<run.name>-<UTC timestamp>).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// No progress bar or per-epoch lines.
    #[arg(long)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Re-evaluate a finished run from its best checkpoint.
    Eval {
        #[arg(long)]
        run: PathBuf,
        #[arg(long, default_value = "test")]
        split: String,
    },
    /// Predict with a finished run: texts to classify (stdin lines when none are given),
    /// audio files, or forecasts written with --csv, depending on the run's task.
    Predict {
        #[arg(long)]
        run: PathBuf,
        #[command(flatten)]
        args: train::task::PredictArgs,
    },
    /// Run a hyperparameter sweep: every trial of sweep.toml as a run under --dir, then
    /// results.csv and results.md (see configs/*.sweep.toml).
    Sweep(train::sweep::SweepArgs),
    /// Translate with a finished translation run (stdin lines when no TEXT is given);
    /// --attention FILE.svg draws the first sentence's attention matrix.
    Translate(train::task::translate::TranslateArgs),
    /// Summarise documents with a finished summarisation run (stdin lines when no TEXT is
    /// given); --json adds p_gen per output word and the attention.
    Summarize(train::task::summarize::SummarizeArgs),
    /// Tag texts with a finished sequence-labelling run (stdin lines when no TEXT is given):
    /// `word/TAG` per token, and the entities with their spans for entity runs.
    Tag(train::task::tag::TagArgs),
    /// Show a classifier run's gates (o_t by default) per token and unit on given sentences:
    /// a heatmap (--out FILE.svg), a terminal view, or the numbers (--json).
    Inspect(train::inspect::InspectArgs),
    /// Magnitude-prune a run's recurrent matrices at each --sparsity, fine-tune with the masks
    /// held, and tabulate accuracy against sparsity (<run>/pruned-<s>/, prune_results.md).
    Prune(train::prune::PruneArgs),
    /// Write a copy of a finished run whose checkpoint holds int8, bf16 or block-sparse
    /// tensors (<run>/export-<format> by default); eval, predict and the other subcommands read it.
    Export(train::export::ExportArgs),
    /// Time training steps and inference: our fused LSTM, our op-by-op cell and candle-nn's
    /// LSTM in one process (configs/bench_a.toml, configs/bench_b.toml); --json ends with one
    /// JSON object.
    Bench(train::bench::BenchArgs),
    /// Serve finished runs over HTTP: JSON API with dynamic batching, /healthz, /metrics and
    /// a web page at / that shows the gates (README "Serving: train serve").
    Serve(train::serve::ServeArgs),
    /// Transcribe WAV files with a finished speech-to-text run: text per file; --json adds
    /// each character's time span from the CTC alignment.
    Transcribe(train::task::transcribe::TranscribeArgs),
    /// Continue an interrupted run.
    Resume {
        #[arg(long)]
        run: PathBuf,
        #[arg(long)]
        quiet: bool,
    },
}

// Every training step allocates and frees tens of megabytes (activations saved for the
// backward, gradients, candle's op outputs). glibc hands large blocks back to the kernel on
// free, so each step page-faulted them in again: a third of a config-A step was kernel time,
// with TLB shootdowns across the worker threads. mimalloc keeps and reuses them.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v3's `mi_option_purge_delay` (include/mimalloc.h; the -sys crate has no constant
/// for it). By default freed memory is handed back to the OS after 10 ms, which a training
/// step outlasts, so every step faulted its buffers in again (a fifth of an SST-2 epoch in the
/// kernel's page zeroing); -1 keeps it for reuse. Peak memory is unchanged.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // SAFETY: sets a process-wide allocator option before any thread starts.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    if let Err(e) = real_main() {
        eprintln!("error: {}", render(&e));
        std::process::exit(1);
    }
}

/// The context chain on one line. Library errors often print their source inside their own
/// message as well, so a cause already spelled out is not repeated.
fn render(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn init_logging(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => {
            let a = cli.train;
            init_logging(a.quiet);
            let Some(path) = a.config else {
                bail!("no --config given: try `train --config configs/sst2.toml` (or `train --help`)");
            };
            let sets = a.sets.iter().map(|s| Override::parse(s)).collect::<Result<Vec<_>>>()?;
            let cfg = config::load(&path, &sets)?.config;
            configure_threads(cfg.run.threads);
            let root = a.run_dir.unwrap_or_else(|| RunDir::default_path(&cfg.run.out_dir, &cfg.run.name));
            let dir = RunDir::create(root)?;
            train::atomic::write(&dir.config(), cfg.to_toml()?.as_bytes())?;
            eprintln!("run directory: {}", dir.root.display());
            let summary = match train::launch::run(&cfg, &dir, false, &Options { quiet: a.quiet }) {
                Ok(s) => s,
                Err(e) => {
                    // Nothing trained yet (bad data, bad model config): leave no half-made run
                    // behind. Once a resume state exists the directory is kept for `resume`.
                    if !dir.resume_state().exists() {
                        let _ = std::fs::remove_dir_all(&dir.root);
                    }
                    return Err(e);
                }
            };
            print_summary(&summary);
        }
        Some(Command::Resume { run, quiet }) => {
            init_logging(quiet);
            let dir = RunDir::open(&run)?;
            let cfg = config::load_recorded(&dir.root)?;
            configure_threads(cfg.run.threads);
            let summary = train::launch::run(&cfg, &dir, true, &Options { quiet })?;
            print_summary(&summary);
        }
        Some(Command::Eval { run, split }) => {
            init_logging(true);
            let dir = RunDir::open(&run)?;
            let cfg = config::load_recorded(&dir.root)?;
            configure_threads(cfg.run.threads);
            let m = train::launch::eval(&dir, &split)?;
            println!("{}", serde_json::to_string_pretty(&m)?);
        }
        Some(Command::Translate(args)) => {
            init_logging(true);
            configure_threads(threads_of(&args.run.join("config.toml"), &[]));
            train::task::translate::cli(&args)?;
        }
        Some(Command::Summarize(args)) => {
            init_logging(true);
            configure_threads(threads_of(&args.run.join("config.toml"), &[]));
            train::task::summarize::cli(&args)?;
        }
        Some(Command::Tag(args)) => {
            init_logging(true);
            configure_threads(threads_of(&args.run.join("config.toml"), &[]));
            train::task::tag::cli(&args)?;
        }
        Some(Command::Transcribe(args)) => {
            init_logging(true);
            configure_threads(threads_of(&args.run.join("config.toml"), &[]));
            train::task::transcribe::cli(&args)?;
        }
        Some(Command::Sweep(args)) => {
            init_logging(true);
            train::sweep::cli(&args)?;
        }
        Some(Command::Inspect(args)) => {
            init_logging(true);
            configure_threads(threads_of(&args.run.join("config.toml"), &[]));
            train::inspect::cli(&args)?;
        }
        Some(Command::Prune(args)) => {
            init_logging(args.quiet);
            configure_threads(threads_of(&args.run.join("config.toml"), &args.sets));
            train::prune::cli(&args)?;
        }
        Some(Command::Export(args)) => {
            init_logging(true);
            train::export::cli(&args)?;
        }
        Some(Command::Bench(args)) => {
            init_logging(true);
            configure_threads(threads_of(&args.config, &args.sets));
            train::bench::cli(&args)?;
        }
        Some(Command::Serve(args)) => {
            init_logging(true);
            let threads = args.threads.unwrap_or_else(|| threads_of(&args.runs[0].join("config.toml"), &[]));
            configure_threads(threads);
            train::serve::cli(&args)?;
        }
        Some(Command::Predict { run, args }) => {
            init_logging(true);
            let dir = RunDir::open(&run)?;
            configure_threads(threads_of(&dir.config(), &[]));
            train::task::predict(&dir, &args)?;
        }
    }
    Ok(())
}

/// Sizes every thread pool from `run.threads` (0 = every core). candle reads its counts from
/// the environment, which only the binary may change, and only here: each subcommand calls
/// this once, from the main thread, before any tensor op or pool has started a thread.
fn configure_threads(requested: usize) -> usize {
    let n = train::threads::resolve(requested);
    for (key, value) in train::threads::candle_env(n) {
        // SAFETY: `set_var` races with any other thread reading or writing the environment.
        // None exists yet: `main` has only parsed arguments, set up logging (no threads) and
        // read config files; rayon's and candle's pools start on the first tensor op, after this.
        unsafe { std::env::set_var(key, value) };
    }
    train::threads::init(n)
}

/// `run.threads` of the config at `path` with `sets` applied, for subcommands whose library
/// side reads the config itself. A config that does not load counts as 0 (all cores): the
/// subcommand then refuses it with its own message before any work is done.
fn threads_of(path: &Path, sets: &[String]) -> usize {
    let sets: Result<Vec<Override>> = sets.iter().map(|s| Override::parse(s)).collect();
    sets.and_then(|sets| config::load(path, &sets)).map(|l| l.config.run.threads).unwrap_or(0)
}

fn print_summary(summary: &serde_json::Map<String, serde_json::Value>) {
    let get = |split: &str, k: &str| summary.get(split).and_then(|s| s.get(k)).and_then(|v| v.as_f64());
    if let (Some(v), Some(t)) = (get("validation", "accuracy"), get("test", "accuracy")) {
        println!("validation accuracy {v:.4}, test accuracy {t:.4}");
    }
    if let (Some(w), Some(c)) = (get("test", "wer"), get("test", "cer")) {
        println!("test WER {w:.2}%, CER {c:.2}%");
    }
}
