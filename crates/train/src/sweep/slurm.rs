//! `train sweep --backend slurm`: one sweep = one Slurm job array. Every trial's config is
//! checked and frozen under `<dir>/slurm/trials/<trial>.toml`; `<dir>/slurm/array.sbatch` runs
//! array task *i* as trial *i* (`train --config <trial config> --run-dir <dir>/<trial>`, or
//! `train resume` when the run directory already holds a run); a dependent job
//! (`--dependency=afterany:<array>`, `<dir>/slurm/collect.sbatch`) writes results.csv and
//! results.md when the array ends. Job ids go into sweep.json, so `--status`,
//! `--collect` and `--retry-failed` need only `--dir`.
//!
//! Run directories, the sweep directory and the `train` binary must be visible at the same
//! paths on every node (a shared filesystem); `--binary` names the binary's path on the nodes.

use super::record::{SlurmRecord, Submission, SweepRecord};
use super::runner::{plan, Plan};
use crate::config;
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

/// The Slurm side of `train sweep` (flags of the same names).
#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` (Slurm's formats: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`).
    pub time: Option<String>,
    /// `--cpus-per-trial` (default: the base config's `run.threads`, or 1 when that is 0).
    pub cpus_per_trial: Option<usize>,
    /// `--mem` per trial, e.g. `8G`.
    pub mem: Option<String>,
    /// `--max-parallel`: the array's `%K` throttle.
    pub max_parallel: Option<usize>,
    /// Further `#SBATCH` options (`--slurm-arg`, repeatable).
    pub slurm_args: Vec<String>,
    /// The `train` executable on the nodes (default: this one).
    pub binary: Option<PathBuf>,
}

impl SlurmOptions {
    /// Checks the values Slurm would otherwise reject only at submission (or silently
    /// misread in an `#SBATCH` line).
    pub fn validate(&self) -> Result<()> {
        if let Some(p) = &self.partition {
            if p.is_empty() || p.chars().any(|c| c.is_whitespace() || c == '\'' || c == '"') {
                bail!("--partition {p:?}: expected a partition name (see `sinfo`)");
            }
        }
        if let Some(t) = &self.time {
            if !valid_time(t) {
                bail!("--time {t:?}: expected Slurm's time format, e.g. 02:00:00 (HH:MM:SS), 90 (minutes) or 1-12:00:00 (D-HH:MM:SS)");
            }
        }
        if let Some(m) = &self.mem {
            if !valid_mem(m) {
                bail!("--mem {m:?}: expected a size such as 8G, 512M or 16000 (megabytes)");
            }
        }
        if self.cpus_per_trial == Some(0) {
            bail!("--cpus-per-trial 0: expected at least 1");
        }
        if self.max_parallel == Some(0) {
            bail!("--max-parallel 0: expected at least 1 trial at a time");
        }
        for a in &self.slurm_args {
            if !a.starts_with('-') || a.chars().any(|c| c.is_whitespace()) {
                bail!("--slurm-arg {a:?}: expected one sbatch option without spaces, e.g. --slurm-arg=--account=proj or --slurm-arg=--qos=short");
            }
            for ours in ["--array", "--job-name", "--output", "--chdir", "--cpus-per-task", "--dependency"] {
                if a == ours || a.starts_with(&format!("{ours}=")) {
                    bail!("--slurm-arg {a}: the sweep sets {ours} itself");
                }
            }
        }
        Ok(())
    }
}

fn valid_time(t: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.len() <= 4 && s.chars().all(|c| c.is_ascii_digit());
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, t),
    };
    if days.is_some_and(|d| !digits(d)) {
        return false;
    }
    let parts: Vec<&str> = rest.split(':').collect();
    parts.len() <= 3 && parts.iter().all(|p| digits(p))
}

fn valid_mem(m: &str) -> bool {
    let num = m.strip_suffix(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']).unwrap_or(m);
    !num.is_empty() && num.chars().all(|c| c.is_ascii_digit()) && num != "0"
}

/// An executable named `name` on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// `sbatch` on PATH, or an error saying what to do.
pub fn sbatch() -> Result<PathBuf> {
    which("sbatch").ok_or_else(|| {
        anyhow!(
            "sbatch not found on PATH: --backend slurm submits with Slurm's client commands (run it on a cluster's login node, or start a local cluster with scripts/slurm_local.sh start); nothing was submitted. --dry-run prints the job script without Slurm, --backend local runs the trials here"
        )
    })
}

/// Single-quotes `s` for bash.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The `--array` spec for these task ids: runs of consecutive ids as ranges, `%K` appended.
pub fn array_spec(indices: &[usize], max_parallel: Option<usize>) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let mut j = i;
        while j + 1 < indices.len() && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        parts.push(if j > i { format!("{}-{}", indices[i], indices[j]) } else { indices[i].to_string() });
        i = j + 1;
    }
    let mut s = parts.join(",");
    if let Some(k) = max_parallel {
        s.push_str(&format!("%{k}"));
    }
    s
}

/// What the job scripts need to know.
#[derive(Debug, Clone)]
pub struct ScriptParams {
    /// The sweep's name (job names are `sluice-<name>` and `sluice-<name>-collect`).
    pub name: String,
    /// The sweep directory, absolute.
    pub dir: PathBuf,
    /// The jobs' working directory (relative paths in configs resolve against it), absolute.
    pub workdir: PathBuf,
    /// The `train` executable on the nodes.
    pub binary: PathBuf,
    /// Trial names, by array task id.
    pub trials: Vec<String>,
    /// CPUs per trial.
    pub cpus: usize,
    /// The Slurm options.
    pub opts: SlurmOptions,
}

impl ScriptParams {
    fn common_lines(&self, out: &mut String) {
        if let Some(p) = &self.opts.partition {
            out.push_str(&format!("#SBATCH --partition={p}\n"));
        }
        if let Some(t) = &self.opts.time {
            out.push_str(&format!("#SBATCH --time={t}\n"));
        }
        out.push_str(&format!("#SBATCH --chdir={}\n", self.workdir.display()));
        for a in &self.opts.slurm_args {
            out.push_str(&format!("#SBATCH {a}\n"));
        }
    }

    /// `<dir>/slurm/array.sbatch`: array task *i* trains (or resumes) trial *i*.
    pub fn array_script(&self) -> String {
        let n = self.trials.len();
        let mut s = String::from("#!/bin/bash\n");
        s.push_str(&format!(
            "# Sweep `{}`: {n} trials, one per array task (written by `train sweep --backend slurm`).\n\
             # Task i trains trial i in <sweep dir>/<trial>/ from <sweep dir>/slurm/trials/<trial>.toml,\n\
             # or resumes it when that directory already holds a run (a retried or preempted trial).\n\
             # `train sweep --dir <sweep dir> --retry-failed` resubmits this script for unfinished trials only.\n",
            self.name
        ));
        s.push_str(&format!("#SBATCH --job-name=sluice-{}\n", self.name));
        s.push_str(&format!("#SBATCH --array={}\n", array_spec(&(0..n).collect::<Vec<_>>(), self.opts.max_parallel)));
        s.push_str(&format!("#SBATCH --cpus-per-task={}\n", self.cpus));
        if let Some(m) = &self.opts.mem {
            s.push_str(&format!("#SBATCH --mem={m}\n"));
        }
        self.common_lines(&mut s);
        s.push_str(&format!("#SBATCH --output={}/slurm/logs/%A_%a.out\n", self.dir.display()));
        s.push_str("set -euo pipefail\n");
        s.push_str(&format!("TRAIN={}\n", sh_quote(&self.binary.display().to_string())));
        s.push_str(&format!("SWEEP_DIR={}\n", sh_quote(&self.dir.display().to_string())));
        s.push_str("TRIALS=(\n");
        for t in &self.trials {
            s.push_str(&format!("  {}\n", sh_quote(t)));
        }
        s.push_str(")\n");
        s.push_str(
            r#"TRIAL=${TRIALS[$SLURM_ARRAY_TASK_ID]}
RUN=$SWEEP_DIR/$TRIAL
echo "trial $TRIAL: array task $SLURM_ARRAY_TASK_ID of job $SLURM_ARRAY_JOB_ID on $(hostname), ${SLURM_CPUS_PER_TASK:-1} CPUs"
if [ -e "$RUN/summary.json" ]; then
  echo "already finished"
  exit 0
fi
if [ -e "$RUN/config.toml" ]; then
  # Started before (killed, preempted, timed out): continue from its last saved state.
  echo "resuming"
  exec "$TRAIN" resume --run "$RUN" --quiet
fi
exec "$TRAIN" --config "$SWEEP_DIR/slurm/trials/$TRIAL.toml" --run-dir "$RUN" --quiet
"#,
        );
        s
    }

    /// `<dir>/slurm/collect.sbatch`: `train sweep --dir <dir> --collect`, submitted to run
    /// after the array ends (whatever its tasks' outcome).
    pub fn collect_script(&self) -> String {
        let mut s = String::from("#!/bin/bash\n");
        s.push_str(&format!(
            "# Sweep `{}`: writes results.csv and results.md once the trial array has ended.\n",
            self.name
        ));
        s.push_str(&format!("#SBATCH --job-name=sluice-{}-collect\n", self.name));
        s.push_str("#SBATCH --cpus-per-task=1\n");
        self.common_lines(&mut s);
        s.push_str(&format!("#SBATCH --output={}/slurm/logs/collect_%j.out\n", self.dir.display()));
        s.push_str("set -euo pipefail\n");
        s.push_str(&format!(
            "exec {} sweep --dir {} --collect\n",
            sh_quote(&self.binary.display().to_string()),
            sh_quote(&self.dir.display().to_string())
        ));
        s
    }
}

/// Runs `sbatch --parsable ARGS SCRIPT` in `workdir`; returns the job id.
pub fn submit(sbatch: &Path, args: &[String], script: &Path, workdir: &Path) -> Result<String> {
    let out = std::process::Command::new(sbatch)
        .arg("--parsable")
        .args(args)
        .arg(script)
        .current_dir(workdir)
        .output()
        .with_context(|| format!("running {}", sbatch.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().replace('\n', "; ");
    if !out.status.success() {
        bail!("sbatch rejected {} ({}): {stderr}", script.display(), out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    // --parsable prints "jobid" or "jobid;cluster".
    let id = stdout.trim().split(';').next().unwrap_or("").trim().to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!(
            "sbatch accepted {} but printed no job id (stdout {:?}, stderr {stderr:?})",
            script.display(),
            stdout.trim()
        );
    }
    Ok(id)
}

/// What `train sweep --backend slurm` was asked.
pub struct SubmitArgs<'a> {
    /// The base config.
    pub config: &'a Path,
    /// The sweep file.
    pub sweep: &'a Path,
    /// `--dir`.
    pub dir: Option<&'a Path>,
    /// `--set`s for every trial.
    pub sets: &'a [String],
    /// `--metric`.
    pub metric: Option<&'a str>,
    /// `--dry-run`: print the job scripts, write and submit nothing.
    pub dry_run: bool,
    /// The Slurm options.
    pub slurm: &'a SlurmOptions,
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir().context("reading the working directory")?.join(p))
    }
}

/// Checks the sweep, writes its trial configs and job scripts, submits the array and the
/// collect job; returns the sweep directory.
pub fn submit_sweep(a: &SubmitArgs) -> Result<PathBuf> {
    a.slurm.validate()?;
    let mut cpus = a.slurm.cpus_per_trial;
    let p = plan(a.config, a.sweep, a.dir, a.sets, a.metric, |base| {
        *cpus.get_or_insert(if base.run.threads > 0 { base.run.threads } else { 1 })
    })?;
    let cpus = cpus.expect("plan called share");
    let dir = absolute(&p.dir)?;
    let workdir = std::env::current_dir().context("reading the working directory")?;
    for (what, path) in [("sweep directory", &dir), ("working directory", &workdir)] {
        if path.display().to_string().chars().any(|c| c.is_whitespace()) {
            bail!(
                "the {what} {} has whitespace in its path, which #SBATCH lines cannot hold; choose another",
                path.display()
            );
        }
    }
    let binary = match &a.slurm.binary {
        Some(b) => absolute(b)?,
        None => std::env::current_exe().context("locating the train executable")?,
    };
    let params = ScriptParams {
        name: super::spec::sanitize(&p.spec.name),
        dir: dir.clone(),
        workdir: workdir.clone(),
        binary: binary.clone(),
        trials: p.trials.iter().map(|t| t.name.clone()).collect(),
        cpus,
        opts: a.slurm.clone(),
    };
    if a.dry_run {
        println!("{}", params.array_script());
        println!("{}", params.collect_script());
        eprintln!(
            "dry run: nothing written or submitted; a submission writes the scripts above and {} trial configs under {}",
            p.trials.len(),
            dir.join("slurm").display()
        );
        return Ok(dir);
    }
    let sbatch = sbatch()?;
    let mut record = p.record(a.config, a.sweep, a.sets, "slurm");
    let mut todo: Vec<usize> = (0..p.trials.len()).collect();
    if let Some(old) = SweepRecord::read_if_present(&dir)? {
        record.check_same_sweep(&old, &dir)?;
        if let Some(sl) = &old.slurm {
            bail!(
                "{} was already submitted to Slurm (array job {}); nothing was submitted again: `train sweep --dir {} --status` shows its trials, `--retry-failed` resubmits the failed ones",
                dir.display(),
                sl.job_id,
                dir.display()
            );
        }
        // Run before with the local backend: submit only what it left unfinished.
        todo.retain(|&i| !dir.join(&p.trials[i].name).join("summary.json").exists());
        if todo.is_empty() {
            bail!(
                "every trial of {} has finished already; nothing was submitted (`train sweep --dir {} --collect` rewrites the results)",
                dir.display(),
                dir.display()
            );
        }
    }
    write_files(&p, &params)?;
    record.slurm = Some(SlurmRecord {
        job_id: String::new(),
        script: "slurm/array.sbatch".into(),
        collect_script: "slurm/collect.sbatch".into(),
        max_parallel: a.slurm.max_parallel,
        cpus_per_trial: cpus,
        binary: binary.display().to_string(),
        submissions: Vec::new(),
    });
    // sweep.json names no job until sbatch accepts one, so a rejected submission can be
    // corrected and retried with the same command.
    let mut pending = record.clone();
    pending.slurm = None;
    pending.write(&dir)?;
    let sub = submit_array(&sbatch, &dir, &workdir, &todo, a.slurm.max_parallel, &mut record)?;
    eprintln!(
        "submitted {} trials of sweep `{}` as Slurm array job {} ({} at a time); collect job: {}",
        todo.len(),
        p.spec.name,
        sub.job_id,
        a.slurm.max_parallel.map(|k| k.to_string()).unwrap_or_else(|| "as many as fit".into()),
        sub.collect_job_id.as_deref().unwrap_or("none")
    );
    eprintln!("follow it with `train sweep --dir {} --status`", dir.display());
    println!("{}", sub.job_id);
    Ok(dir)
}

/// Writes the trial configs, the two job scripts and the log directory.
fn write_files(p: &Plan, params: &ScriptParams) -> Result<()> {
    let slurm_dir = params.dir.join("slurm");
    std::fs::create_dir_all(slurm_dir.join("trials"))
        .and_then(|_| std::fs::create_dir_all(slurm_dir.join("logs")))
        .with_context(|| format!("creating {}", slurm_dir.display()))?;
    for (t, cfg) in p.trials.iter().zip(&p.configs) {
        let text = cfg.to_toml()?;
        let path = slurm_dir.join("trials").join(format!("{}.toml", t.name));
        // The trial runs from this file: it must load back to the very config checked here,
        // or the Slurm run would differ from the same trial run locally.
        let back = config::parse(&text, &path, &[])?.to_toml()?;
        if back != text {
            bail!("sweep trial {}: its resolved config does not read back unchanged (a bug; please report it)", t.name);
        }
        crate::atomic::write(&path, text.as_bytes())?;
    }
    write_script(&slurm_dir.join("array.sbatch"), &params.array_script())?;
    write_script(&slurm_dir.join("collect.sbatch"), &params.collect_script())
}

fn write_script(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    crate::atomic::write(path, text.as_bytes())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

/// Submits the array for `indices` and its collect job, recording both in sweep.json as
/// soon as each is accepted.
pub(super) fn submit_array(
    sbatch: &Path,
    dir: &Path,
    workdir: &Path,
    indices: &[usize],
    max_parallel: Option<usize>,
    record: &mut SweepRecord,
) -> Result<Submission> {
    let slurm_dir = dir.join("slurm");
    let array = array_spec(indices, max_parallel);
    let job_id = submit(sbatch, &[format!("--array={array}")], &slurm_dir.join("array.sbatch"), workdir)
        .context("nothing was submitted")?;
    let mut sub = Submission {
        job_id: job_id.clone(),
        array,
        indices: indices.to_vec(),
        collect_job_id: None,
        submitted: crate::rundir::utc_timestamp(std::time::SystemTime::now()),
    };
    {
        let sl = record.slurm.as_mut().expect("a Slurm record");
        sl.job_id = job_id.clone();
        sl.submissions.push(sub.clone());
    }
    record.write(dir)?;
    match submit(sbatch, &[format!("--dependency=afterany:{job_id}")], &slurm_dir.join("collect.sbatch"), workdir) {
        Ok(c) => {
            sub.collect_job_id = Some(c);
            let sl = record.slurm.as_mut().expect("a Slurm record");
            *sl.submissions.last_mut().expect("just pushed") = sub.clone();
            record.write(dir)?;
        }
        Err(e) => eprintln!(
            "warning: the array was submitted (job {job_id}) but its collect job was not: {e:#}; run `train sweep --dir {} --collect` when the array has ended",
            dir.display()
        ),
    }
    Ok(sub)
}

#[cfg(test)]
#[path = "slurm_tests.rs"]
mod tests;
