//! A sweep directory after the fact: `--status` (each trial's state from its run directory
//! and, for a Slurm sweep, `squeue`/`sacct`), `--collect` (results.csv and results.md, as the
//! local backend writes them) and `--retry-failed` (resubmits only the trials that ended
//! without finishing; they resume from their last saved state).

use super::record::{SlurmRecord, SweepRecord};
use super::report::{metric_of, read_summary, write_results};
use super::slurm::{sbatch, submit_array, which};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;

/// Where a trial stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialState {
    /// Its run has `summary.json`.
    Finished,
    /// Slurm runs it now.
    Running,
    /// Waiting in Slurm's queue, or (local sweep) not started yet.
    Pending,
    /// Ended without finishing (killed, cancelled, timed out, failed); `--retry-failed`
    /// (Slurm) or rerunning the sweep (local) continues it.
    Failed,
    /// Local sweep: started, not finished (running now, or interrupted).
    Incomplete,
}

impl TrialState {
    /// The word `--status` prints.
    pub fn label(self) -> &'static str {
        match self {
            Self::Finished => "finished",
            Self::Running => "running",
            Self::Pending => "pending",
            Self::Failed => "failed",
            Self::Incomplete => "incomplete",
        }
    }
}

/// A Slurm array task's state as `squeue`/`sacct` reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    /// e.g. `RUNNING`, `PENDING`, `CANCELLED`, `TIMEOUT`, `FAILED`, `COMPLETED`.
    pub state: String,
    /// sacct's `ExitCode` when known.
    pub exit_code: Option<String>,
}

impl TaskState {
    fn active(&self) -> bool {
        matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "CONFIGURING"
                | "COMPLETING"
                | "REQUEUED"
                | "REQUEUE_HOLD"
                | "REQUEUE_FED"
                | "RESIZING"
                | "SUSPENDED"
                | "STOPPED"
                | "SIGNALING"
                | "STAGE_OUT"
        )
    }
}

/// Task ids of an array element field: `3`, `2-5`, `1,4-6%2`.
fn expand_ids(field: &str) -> Vec<usize> {
    let field = field.trim().trim_start_matches('[').split('%').next().unwrap_or("").trim_end_matches(']');
    let mut out = Vec::new();
    for part in field.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<usize>().ok()),
        }
    }
    out
}

/// Parses `squeue -h -r -t all -o %F|%K|%T` lines into (array job id, task id) → state.
pub fn parse_squeue(text: &str) -> HashMap<(String, usize), TaskState> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.trim().split('|').collect();
        if let [job, ids, state] = f[..] {
            let state = state.split_whitespace().next().unwrap_or("").to_string();
            for i in expand_ids(ids) {
                out.insert((job.to_string(), i), TaskState { state: state.clone(), exit_code: None });
            }
        }
    }
    out
}

/// Parses `sacct -n -P -X -o JobID,State,ExitCode` lines (`12_3|CANCELLED by 0|0:15`).
pub fn parse_sacct(text: &str) -> HashMap<(String, usize), TaskState> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.trim().split('|').collect();
        if let [id, state, code] = f[..] {
            if let Some((job, ids)) = id.split_once('_') {
                let state = state.split_whitespace().next().unwrap_or("").to_string();
                for i in expand_ids(ids) {
                    out.insert((job.to_string(), i), TaskState { state: state.clone(), exit_code: Some(code.into()) });
                }
            }
        }
    }
    out
}

/// What Slurm says about every task of the sweep's submissions. `None` when `squeue` is
/// not on PATH (the states then come from the run directories alone).
pub fn slurm_states(sl: &SlurmRecord) -> Result<Option<HashMap<(String, usize), TaskState>>> {
    let Some(squeue) = which("squeue") else { return Ok(None) };
    let ids: Vec<&str> = sl.submissions.iter().map(|s| s.job_id.as_str()).collect();
    if ids.is_empty() {
        return Ok(Some(HashMap::new()));
    }
    let out = std::process::Command::new(&squeue)
        .args(["-h", "-r", "-t", "all", "-o", "%F|%K|%T", "-j", &ids.join(",")])
        .output()
        .with_context(|| format!("running {}", squeue.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut states = if out.status.success() {
        parse_squeue(&String::from_utf8_lossy(&out.stdout))
    } else if stderr.contains("Invalid job id") {
        // Every job has left the controller's memory (MinJobAge): nothing is queued or running.
        HashMap::new()
    } else {
        // Without the queue we cannot tell a running trial from a dead one: refuse to guess.
        bail!("squeue failed ({}): {}", out.status, stderr.trim().replace('\n', "; "));
    };
    // Ended tasks squeue has forgotten: sacct knows them where accounting is enabled.
    if let Some(sacct) = which("sacct") {
        if let Ok(o) = std::process::Command::new(sacct)
            .args(["-n", "-P", "-X", "-o", "JobID,State,ExitCode", "-j", &ids.join(",")])
            .output()
        {
            if o.status.success() {
                for (k, v) in parse_sacct(&String::from_utf8_lossy(&o.stdout)) {
                    states.entry(k).or_insert(v);
                }
            }
        }
    }
    Ok(Some(states))
}

/// The array tasks of the sweep's latest submission of each trial that Slurm still queues
/// or runs (empty when `squeue` is not on PATH).
pub fn active_tasks(sl: &SlurmRecord) -> Result<Vec<usize>> {
    let Some(states) = slurm_states(sl)? else { return Ok(Vec::new()) };
    Ok(latest_jobs(sl)
        .into_iter()
        .filter(|(i, job)| states.get(&(job.clone(), *i)).is_some_and(TaskState::active))
        .map(|(i, _)| i)
        .collect())
}

/// Trial index → the array job that last ran it.
fn latest_jobs(sl: &SlurmRecord) -> Vec<(usize, String)> {
    let mut m: HashMap<usize, String> = HashMap::new();
    for s in &sl.submissions {
        for &i in &s.indices {
            m.insert(i, s.job_id.clone());
        }
    }
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort();
    v
}

/// One line of `--status`.
#[derive(Debug, Clone)]
pub struct TrialStatus {
    /// The trial's name.
    pub name: String,
    /// Its state.
    pub state: TrialState,
    /// The Slurm task (`job_index`) and what Slurm says, for a Slurm sweep.
    pub slurm: Option<String>,
    /// The metric for a finished trial, else the last evaluation and where the log is.
    pub detail: String,
}

/// Every trial's state. With `strict`, a `squeue` that fails is an error (a retry must not
/// guess); otherwise it is reported and the run directories alone decide.
pub fn trial_statuses(dir: &Path, record: &SweepRecord, strict: bool) -> Result<Vec<TrialStatus>> {
    let slurm = match &record.slurm {
        Some(sl) => {
            let states = match slurm_states(sl) {
                Ok(s) => s,
                Err(e) if !strict => {
                    eprintln!("warning: {e:#}; the states below come from the run directories alone");
                    None
                }
                Err(e) => return Err(e),
            };
            Some((sl, states, latest_jobs(sl).into_iter().collect::<HashMap<_, _>>()))
        }
        None => None,
    };
    let mut out = Vec::new();
    for (i, t) in record.trials.iter().enumerate() {
        let run = dir.join(&t.name);
        let finished = run.join("summary.json").exists();
        let started = run.join("config.toml").exists();
        let task = slurm.as_ref().and_then(|(_, states, jobs)| {
            let job = jobs.get(&i)?;
            let st = states.as_ref().and_then(|s| s.get(&(job.clone(), i)).cloned());
            Some((job.clone(), st))
        });
        let state = match (&slurm, &task) {
            _ if finished => TrialState::Finished,
            (Some((_, Some(_), _)), Some((_, Some(st)))) if st.active() => {
                if st.state == "PENDING" || st.state.starts_with("REQUEUE") {
                    TrialState::Pending
                } else {
                    TrialState::Running
                }
            }
            // Slurm answered and the task is not queued or running: it ended unfinished.
            (Some((_, Some(_), _)), _) => TrialState::Failed,
            // No squeue here, or a local sweep: the run directory is all we know.
            _ if started => TrialState::Incomplete,
            _ => TrialState::Pending,
        };
        let slurm_col = task.as_ref().map(|(job, st)| {
            let what = match st {
                Some(s) => match &s.exit_code {
                    Some(c) if c != "0:0" => format!("{} exit {c}", s.state),
                    _ => s.state.clone(),
                },
                None => "gone".into(),
            };
            format!("{job}_{i} {what}")
        });
        let detail = if finished {
            match read_summary(&run) {
                Ok(s) => match metric_of(&s, &record.metric) {
                    Some(v) => format!("{} {v:.4}", record.metric),
                    None => format!("{} absent from summary.json", record.metric),
                },
                Err(e) => format!("{e:#}"),
            }
        } else {
            let mut d = last_evaluation(&run).unwrap_or_default();
            if let Some((job, _)) = &task {
                if state != TrialState::Pending {
                    let log = dir.join("slurm/logs").join(format!("{job}_{i}.out"));
                    if !d.is_empty() {
                        d.push_str("; ");
                    }
                    d.push_str(&format!("log {}", log.display()));
                }
            }
            d
        };
        out.push(TrialStatus { name: t.name.clone(), state, slurm: slurm_col, detail });
    }
    Ok(out)
}

/// "last evaluation epoch E step S" from metrics.jsonl, if any.
fn last_evaluation(run: &Path) -> Option<String> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).ok()?;
    let v: serde_json::Value = serde_json::from_str(text.lines().last()?).ok()?;
    Some(format!("last evaluation: epoch {} step {}", v.get("epoch")?, v.get("step")?))
}

/// `train sweep --dir D --status`: prints a table of the trials and a count per state.
pub fn status(dir: &Path) -> Result<()> {
    let record = SweepRecord::read(dir)?;
    let rows = trial_statuses(dir, &record, false)?;
    let backend = match (&record.slurm, record.backend.as_deref()) {
        (Some(sl), _) => format!("Slurm array job {}", sl.job_id),
        (None, Some("slurm")) => "Slurm, not submitted: sbatch refused it".to_string(),
        _ => "local".to_string(),
    };
    let mut counts: Vec<(TrialState, usize)> = Vec::new();
    for r in &rows {
        match counts.iter_mut().find(|(s, _)| *s == r.state) {
            Some((_, n)) => *n += 1,
            None => counts.push((r.state, 1)),
        }
    }
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(5).max(5);
    let ws = rows.iter().filter_map(|r| r.slurm.as_ref().map(String::len)).max().unwrap_or(0);
    let mut text = format!(
        "sweep `{}` ({backend}), {} trials: {}\n",
        record.name,
        rows.len(),
        counts.iter().map(|(s, n)| format!("{n} {}", s.label())).collect::<Vec<_>>().join(", ")
    );
    for r in &rows {
        let slurm = r.slurm.as_deref().map(|s| format!("{s:ws$}  ")).unwrap_or_default();
        let line = format!("{:w$}  {:10}  {slurm}{}", r.name, r.state.label(), r.detail);
        text.push_str(line.trim_end());
        text.push('\n');
    }
    print_out(&text)?;
    if record.slurm.is_some() && which("squeue").is_none() {
        eprintln!("note: squeue is not on PATH, so unfinished trials show what their run directories hold (incomplete or pending)");
    }
    if rows.iter().any(|r| r.state == TrialState::Incomplete) && record.slurm.is_none() {
        eprintln!("incomplete trials are running now or were interrupted; rerunning the sweep's command resumes the interrupted ones");
    }
    if rows.iter().any(|r| r.state == TrialState::Failed) {
        eprintln!("`train sweep --dir {} --retry-failed` resubmits the failed trials", dir.display());
    }
    Ok(())
}

/// `train sweep --dir D --collect`: writes results.csv and results.md for the finished
/// trials and prints results.md.
pub fn collect(dir: &Path, metric: Option<&str>) -> Result<()> {
    let record = SweepRecord::read(dir)?;
    let (spec, trials) = record.spec_and_trials(dir, metric)?;
    write_results(dir, &spec, &trials)?;
    let done = trials.iter().filter(|t| dir.join(&t.name).join("summary.json").exists()).count();
    eprintln!("{done} of {} trials finished; results in {}", trials.len(), dir.join("results.csv").display());
    let md = std::fs::read_to_string(dir.join("results.md")).unwrap_or_default();
    print_out(&format!("{md}\n"))
}

/// Writes to stdout; a reader that has stopped reading (`--status | head -1`) is not an error.
fn print_out(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

/// `train sweep --dir D --retry-failed`: resubmits the trials that ended unfinished (not
/// those still queued or running, nor finished ones) as a new array over the same script,
/// plus a new collect job. `max_parallel` replaces the recorded throttle when given.
pub fn retry_failed(dir: &Path, max_parallel: Option<usize>) -> Result<()> {
    let mut record = SweepRecord::read(dir)?;
    let Some(sl) = record.slurm.clone() else {
        bail!(
            "{} was run with --backend local: rerun the same `train sweep` command to continue its unfinished trials",
            dir.display()
        );
    };
    if sl.submissions.is_empty() {
        bail!("{}: sweep.json records no accepted submission; submit it with --backend slurm first", dir.display());
    }
    let sbatch = sbatch()?;
    if which("squeue").is_none() {
        bail!("squeue not found on PATH: without it a running trial cannot be told from a failed one, so nothing was resubmitted");
    }
    let rows = trial_statuses(dir, &record, true)?;
    let failed: Vec<usize> =
        rows.iter().enumerate().filter(|(_, r)| r.state == TrialState::Failed).map(|(i, _)| i).collect();
    if failed.is_empty() {
        let active = rows.iter().filter(|r| matches!(r.state, TrialState::Running | TrialState::Pending)).count();
        eprintln!(
            "nothing to retry: {} trials finished, {active} queued or running",
            rows.iter().filter(|r| r.state == TrialState::Finished).count()
        );
        return Ok(());
    }
    for &i in &failed {
        let cfg = dir.join("slurm/trials").join(format!("{}.toml", record.trials[i].name));
        if !cfg.exists() && !dir.join(&record.trials[i].name).join("config.toml").exists() {
            bail!("{}: missing, so trial {} cannot be rerun", cfg.display(), record.trials[i].name);
        }
    }
    let script = dir.join(&sl.script);
    if !script.exists() {
        bail!("{}: missing, so nothing can be resubmitted", script.display());
    }
    let workdir = std::env::current_dir().context("reading the working directory")?;
    let k = max_parallel.or(sl.max_parallel);
    if let Some(s) = record.slurm.as_mut() {
        s.max_parallel = k;
    }
    let sub = submit_array(&sbatch, dir, &workdir, &failed, k, &mut record)?;
    eprintln!(
        "resubmitted {} failed trials ({}) as Slurm array job {}; they resume from their last saved state; collect job: {}",
        failed.len(),
        failed.iter().map(|&i| record.trials[i].name.as_str()).collect::<Vec<_>>().join(", "),
        sub.job_id,
        sub.collect_job_id.as_deref().unwrap_or("none")
    );
    println!("{}", sub.job_id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_and_sacct_lines_parse_per_task() {
        let q = parse_squeue("12|0|RUNNING\n12|1|PENDING\n12|2-3%2|PENDING\nnoise\n");
        assert_eq!(q[&("12".into(), 0)].state, "RUNNING");
        assert_eq!(q[&("12".into(), 3)].state, "PENDING");
        assert_eq!(q.len(), 4);
        let a = parse_sacct("12_0|COMPLETED|0:0\n12_1|CANCELLED by 0|0:15\n12_[2-3]|PENDING|0:0\n13|COMPLETED|0:0\n");
        assert_eq!(a[&("12".into(), 1)], TaskState { state: "CANCELLED".into(), exit_code: Some("0:15".into()) });
        assert_eq!(a[&("12".into(), 3)].state, "PENDING");
        assert_eq!(a.len(), 4, "the plain job 13 is not an array task");
        assert!(q[&("12".into(), 1)].active() && !a[&("12".into(), 1)].active());
    }

    #[test]
    fn array_ids_expand() {
        assert_eq!(expand_ids("[1,4-6%2]"), vec![1, 4, 5, 6]);
        assert_eq!(expand_ids("7"), vec![7]);
        assert!(expand_ids("N/A").is_empty());
    }
}
