//! `sweep.json`: what a sweep directory holds, written when a sweep starts (either backend)
//! and read back by `--status`, `--collect` and `--retry-failed`, which need nothing else
//! (the sweep file's text and the base seed are recorded, so the trials can be re-derived).

use super::spec::{parse_spec, trials, SweepSpec, Trial};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The file's name inside the sweep directory.
pub const FILE: &str = "sweep.json";

/// One trial as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrialRecord {
    /// Directory name under the sweep directory.
    pub name: String,
    /// The setting's label ([`Trial::setting`]).
    pub setting: String,
    /// The run's seed.
    pub seed: u64,
}

impl From<&Trial> for TrialRecord {
    fn from(t: &Trial) -> Self {
        Self { name: t.name.clone(), setting: t.setting(), seed: t.seed }
    }
}

/// One `sbatch` of the trial array (the first submission, then one per `--retry-failed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// The array job's id.
    pub job_id: String,
    /// The `--array` spec submitted, e.g. `0-3%2` or `1,3`.
    pub array: String,
    /// The trial indices (array task ids) it covers.
    pub indices: Vec<usize>,
    /// The dependent job that runs `--collect` when the array ends, if it was accepted.
    pub collect_job_id: Option<String>,
    /// UTC time of submission (`YYYYMMDD-HHMMSS`).
    pub submitted: String,
}

/// The Slurm side of a sweep submitted with `--backend slurm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmRecord {
    /// The latest array job's id.
    pub job_id: String,
    /// The array job script, relative to the sweep directory.
    pub script: String,
    /// The collect job script, relative to the sweep directory.
    pub collect_script: String,
    /// The `%K` throttle of the array, if any.
    pub max_parallel: Option<usize>,
    /// CPUs each trial asked for.
    pub cpus_per_trial: usize,
    /// The `train` executable the jobs run.
    pub binary: String,
    /// Every submission, oldest first.
    pub submissions: Vec<Submission>,
}

/// The contents of `sweep.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRecord {
    /// The sweep's name.
    pub name: String,
    /// The base config's path as given.
    pub config: String,
    /// The sweep file's path as given.
    pub sweep: String,
    /// `--set` overrides applied to every trial.
    #[serde(default)]
    pub sets: Vec<String>,
    /// The ranking metric (`split.metric`).
    pub metric: String,
    /// Every trial, in order (a trial's index is its Slurm array task id).
    pub trials: Vec<TrialRecord>,
    /// `local` or `slurm` (absent in directories written before backends existed).
    #[serde(default)]
    pub backend: Option<String>,
    /// The base config's `run.seed` (seed counts start there).
    #[serde(default)]
    pub base_seed: Option<u64>,
    /// The sweep file's text, so the sweep can be re-derived without it.
    #[serde(default)]
    pub spec_toml: Option<String>,
    /// The Slurm submissions, for a sweep sent to Slurm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmRecord>,
}

impl SweepRecord {
    /// Reads `dir/sweep.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let p = dir.join(FILE);
        let text = std::fs::read_to_string(&p).with_context(|| {
            format!("reading {} (is {} a sweep directory made by `train sweep`?)", p.display(), dir.display())
        })?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
    }

    /// `dir/sweep.json` if the directory has one.
    pub fn read_if_present(dir: &Path) -> Result<Option<Self>> {
        if dir.join(FILE).exists() {
            Self::read(dir).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Writes `dir/sweep.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let value = serde_json::to_value(self).context("serialising sweep.json")?;
        crate::atomic::write_json(&dir.join(FILE), &value)
    }

    /// The sweep file and its trials, re-derived from the recorded text and base seed and
    /// checked against the recorded trial list. `metric` overrides the recorded ranking metric.
    pub fn spec_and_trials(&self, dir: &Path, metric: Option<&str>) -> Result<(SweepSpec, Vec<Trial>)> {
        let (Some(text), Some(base_seed)) = (&self.spec_toml, self.base_seed) else {
            bail!(
                "{} was written by an older `train` that did not record the sweep file: rerun `train sweep --config {} --sweep {} --dir {}` (finished trials are skipped)",
                dir.join(FILE).display(),
                self.config,
                self.sweep,
                dir.display()
            );
        };
        let mut spec = parse_spec(text, &format!("{} (recorded sweep file)", dir.join(FILE).display()), &self.name)?;
        spec.metric = metric.map(str::to_string).unwrap_or_else(|| self.metric.clone());
        let ts = trials(&spec, base_seed);
        let derived: Vec<TrialRecord> = ts.iter().map(TrialRecord::from).collect();
        if derived != self.trials {
            bail!(
                "{}: the recorded trials do not follow from the recorded sweep file (was it edited by hand?)",
                dir.join(FILE).display()
            );
        }
        Ok((spec, ts))
    }

    /// Refuses to reuse a sweep directory for a different sweep: the name and every trial
    /// (name, setting, seed) must match what `self` (the new sweep) plans.
    pub fn check_same_sweep(&self, old: &SweepRecord, dir: &Path) -> Result<()> {
        if old.name == self.name && old.trials == self.trials {
            return Ok(());
        }
        let first_diff = if old.name != self.name {
            format!("it is named `{}`, the new one `{}`", old.name, self.name)
        } else if old.trials.len() != self.trials.len() {
            format!("it has {} trials, the new one {}", old.trials.len(), self.trials.len())
        } else {
            let (i, (a, b)) =
                old.trials.iter().zip(&self.trials).enumerate().find(|(_, (a, b))| a != b).expect("a difference");
            format!("its trial #{} is `{}`, the new sweep's `{}`", i + 1, a.name, b.name)
        };
        bail!(
            "{} holds another sweep (from {} with {}): {first_diff}; choose another --dir for {}",
            dir.display(),
            old.sweep,
            old.config,
            self.sweep
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(spec_text: &str) -> SweepRecord {
        let spec = parse_spec(spec_text, "s.toml", "s").unwrap();
        let ts = trials(&spec, 3);
        SweepRecord {
            name: spec.name.clone(),
            config: "base.toml".into(),
            sweep: "s.toml".into(),
            sets: vec![],
            metric: spec.metric.clone(),
            trials: ts.iter().map(TrialRecord::from).collect(),
            backend: Some("slurm".into()),
            base_seed: Some(3),
            spec_toml: Some(spec_text.into()),
            slurm: None,
        }
    }

    #[test]
    fn round_trips_and_rederives_its_trials() {
        let tmp = tempfile::tempdir().unwrap();
        let r = record("seeds = 2\n[grid]\n\"model.hidden\" = [4, 8]\n");
        r.write(tmp.path()).unwrap();
        let back = SweepRecord::read(tmp.path()).unwrap();
        assert_eq!(back, r);
        let (spec, ts) = back.spec_and_trials(tmp.path(), Some("test.loss")).unwrap();
        assert_eq!(spec.metric, "test.loss");
        assert_eq!(ts.len(), 4);
        assert_eq!(ts[1].name, "hidden-4_seed-4");
    }

    #[test]
    fn another_sweep_is_refused_with_the_difference_named() {
        let a = record("seeds = 2\n[grid]\n\"model.hidden\" = [4, 8]\n");
        let b = record("seeds = 2\n[grid]\n\"model.hidden\" = [4, 16]\n");
        let e = format!("{:#}", b.check_same_sweep(&a, Path::new("D")).unwrap_err());
        assert!(e.contains("D holds another sweep") && e.contains("trial #3 is `hidden-8_seed-3`"), "{e}");
        let c = record("seeds = 1\n[grid]\n\"model.hidden\" = [4, 8]\n");
        let e = format!("{:#}", c.check_same_sweep(&a, Path::new("D")).unwrap_err());
        assert!(e.contains("it has 4 trials, the new one 2"), "{e}");
        a.check_same_sweep(&a.clone(), Path::new("D")).unwrap();
    }

    #[test]
    fn older_records_still_parse_but_cannot_be_collected() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join(FILE),
            r#"{"name":"t","config":"c.toml","sweep":"s.toml","sets":[],"metric":"validation.accuracy","trials":[{"name":"seed-1","setting":"(base)","seed":1}]}"#,
        )
        .unwrap();
        let r = SweepRecord::read(tmp.path()).unwrap();
        assert!(r.slurm.is_none() && r.backend.is_none());
        let e = format!("{:#}", r.spec_and_trials(tmp.path(), None).unwrap_err());
        assert!(e.contains("older `train`") && e.contains("--sweep s.toml"), "{e}");
    }
}
