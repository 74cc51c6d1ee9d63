//! The run directory: the contract scripts and users read.
//!
//! ```text
//! runs/<name>-<UTC timestamp>/
//!   config.toml              resolved config (overrides applied)
//!   tokenizer.json           (translation: tokenizer_src.json + tokenizer_tgt.json unless joint)
//!   normalizer.json          (audio with train-set normalisation)
//!   metrics.jsonl            one JSON object per evaluation
//!   summary.json             final metrics keyed by split, run facts
//!   checkpoints/best.safetensors, last.safetensors   model weights
//!   checkpoints/resume.safetensors                   weights + optimizer + position + RNG
//!   checkpoints/clock.json                           wall-clock totals for the summary
//! ```
//! Every file is replaced atomically (see [`crate::atomic`]).
//!
//! An existing run is loaded one way by every subcommand that reads one (eval, predict,
//! resume, inspect, prune, translate): [`RunDir::load_config`] reads `config.toml` and checks
//! it against the run's other files ([`RunDir::check`]), refusing a mismatch with a message
//! naming the file and the difference.

mod check;

use crate::atomic;
use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::fs;
use std::path::{Path, PathBuf};

/// A run directory: the paths of its files and their atomic writers.
pub struct RunDir {
    /// The directory itself.
    pub root: PathBuf,
}

impl RunDir {
    /// A new run directory; refuses to reuse one that already holds a run.
    pub fn create(root: PathBuf) -> Result<Self> {
        if root.join("config.toml").exists() {
            bail!(
                "{} already holds a run; use `train resume --run {}` or choose another --run-dir",
                root.display(),
                root.display()
            );
        }
        fs::create_dir_all(root.join("checkpoints"))
            .with_context(|| format!("creating run directory {}", root.display()))?;
        Ok(Self { root })
    }

    /// A run directory for a library user's own task ([`crate::trainer::Trainer`]): created
    /// (with `checkpoints/`) if missing, used as it is otherwise; no `config.toml` needed.
    pub fn ensure(root: PathBuf) -> Result<Self> {
        fs::create_dir_all(root.join("checkpoints"))
            .with_context(|| format!("creating run directory {}", root.display()))?;
        Ok(Self { root })
    }

    /// An existing run (it has a `config.toml`); see [`RunDir::load_config`] to read it.
    pub fn open(root: &Path) -> Result<Self> {
        if !root.join("config.toml").exists() {
            bail!("{} is not a run directory (no config.toml)", root.display());
        }
        Ok(Self { root: root.to_path_buf() })
    }

    /// `<out_dir>/<name>-<UTC timestamp>`, the default place of a new run.
    pub fn default_path(out_dir: &Path, name: &str) -> PathBuf {
        out_dir.join(format!("{name}-{}", utc_timestamp(std::time::SystemTime::now())))
    }

    /// The resolved config the run was trained with.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    /// The tokenizer (the joint one for translation with `tokenizer.joint`).
    pub fn tokenizer(&self) -> PathBuf {
        self.root.join("tokenizer.json")
    }
    /// One JSON object per evaluation.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    /// Final metrics and run facts.
    pub fn summary(&self) -> PathBuf {
        self.root.join("summary.json")
    }
    /// Weights of the best validation epoch.
    pub fn best(&self) -> PathBuf {
        self.root.join("checkpoints/best.safetensors")
    }
    /// Weights of the latest evaluation.
    pub fn last(&self) -> PathBuf {
        self.root.join("checkpoints/last.safetensors")
    }
    /// Weights, optimizer moments, cursor and RNG state for `train resume`.
    pub fn resume_state(&self) -> PathBuf {
        self.root.join("checkpoints/resume.safetensors")
    }
    /// Translation's source tokenizer (without `tokenizer.joint`).
    pub fn tokenizer_src(&self) -> PathBuf {
        self.root.join("tokenizer_src.json")
    }
    /// Translation's target tokenizer (without `tokenizer.joint`).
    pub fn tokenizer_tgt(&self) -> PathBuf {
        self.root.join("tokenizer_tgt.json")
    }
    /// Audio's feature normaliser fitted on the training split.
    pub fn normalizer(&self) -> PathBuf {
        self.root.join("normalizer.json")
    }
    /// Wall-clock totals of the resume state (kept apart so checkpoints stay byte-identical).
    pub fn clock(&self) -> PathBuf {
        self.root.join("checkpoints/clock.json")
    }

    /// Lines of `metrics.jsonl` as recorded so far.
    pub fn metric_lines(&self) -> Result<Vec<String>> {
        match fs::read_to_string(self.metrics()) {
            Ok(t) => Ok(t.lines().map(str::to_string).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.metrics().display())),
        }
    }

    /// Rewrites `metrics.jsonl` with `lines`. Whole-file atomic replace rather than append,
    /// so a kill can never leave half a line, and a resumed run can drop lines written after
    /// its resume point.
    pub fn write_metric_lines(&self, lines: &[String]) -> Result<()> {
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        atomic::write(&self.metrics(), text.as_bytes())
    }

    /// Writes `summary.json` (pretty JSON).
    pub fn write_summary(&self, summary: &Map<String, Value>) -> Result<()> {
        atomic::write_json(&self.summary(), summary)
    }
}

/// `YYYYMMDD-HHMMSS` in UTC, from the civil-from-days algorithm (no date crate needed).
pub fn utc_timestamp(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "19700101-000000");
        // 2026-11-27 06:07:36 UTC
        assert_eq!(utc_timestamp(UNIX_EPOCH + Duration::from_secs(1_795_759_656)), "20261127-060736");
        // a leap day
        assert_eq!(utc_timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)), "20000229-000000");
    }

    #[test]
    fn refuses_to_overwrite_a_run() {
        let d = tempfile::tempdir().unwrap();
        let r = RunDir::create(d.path().join("r")).unwrap();
        fs::write(r.config(), "").unwrap();
        assert!(RunDir::create(d.path().join("r")).is_err());
        r.write_metric_lines(&["{\"a\":1}".into()]).unwrap();
        assert_eq!(r.metric_lines().unwrap(), vec!["{\"a\":1}".to_string()]);
    }
}
