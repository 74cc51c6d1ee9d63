//! `train sweep --backend slurm`, end to end. Two halves:
//!
//! - against fake `sbatch`/`squeue` scripts the test writes on PATH (always runs, no Slurm
//!   needed): the job scripts, sweep.json's job ids, `--dry-run`, `--status`,
//!   `--retry-failed`, and the errors (no sbatch, a rejected submission, another sweep's
//!   directory) with nothing submitted twice;
//! - against a real single-node Slurm cluster started by scripts/slurm_local.sh (Debian's
//!   slurm-wlm and munge; skipped with a message when `sbatch` is absent outside CI, required
//!   in CI): a 4-trial sweep whose results.csv matches `--backend local`, one trial killed
//!   with `scancel` mid-run and finished by `--retry-failed` with the same checkpoint bytes.
//!
//! Registered in crates/train/Cargo.toml.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const SWEEP: &str = r#"
name = "tiny"
metric = "validation.accuracy"
seeds = [1, 2]
[grid]
"model.variant" = ["vanilla", "nog"]
"#;

const NAMES: [&str; 4] =
    ["variant-vanilla_seed-1", "variant-vanilla_seed-2", "variant-nog_seed-1", "variant-nog_seed-2"];

fn write_sweep(dir: &Path, file: &str, text: &str) -> PathBuf {
    let p = dir.join(file);
    fs::write(&p, text).unwrap();
    p
}

fn sweep_args<'a>(cfg: &'a Path, spec: &'a Path, dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "sweep",
        "--config",
        cfg.to_str().unwrap(),
        "--sweep",
        spec.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn fail(out: &Output, want: &str) -> String {
    assert!(!out.status.success(), "expected a failure with {want:?}; stdout:\n{}", stdout(out));
    let err = stderr(out);
    assert!(err.starts_with("error: ") && err.contains(want), "expected {want:?} in:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn write_exe(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A fake Slurm: `sbatch` appends its arguments to `calls.log`, rejects a script asking for
/// partition `nope` like the real one, and answers job ids 100, 101, ...; `squeue` prints
/// `queue.txt` (written by the test). PATH holds nothing else, so no real Slurm is reached.
fn fake_slurm(dir: &Path) -> PathBuf {
    let bin = dir.join("fakebin");
    fs::create_dir_all(&bin).unwrap();
    let b = bin.display();
    write_exe(
        &bin.join("sbatch"),
        &format!(
            r##"echo "$*" >> {b}/calls.log
for last; do :; done
while IFS= read -r line; do
  case "$line" in
    "#SBATCH --partition=nope") echo "sbatch: error: invalid partition specified: nope" >&2
      echo "sbatch: error: Batch job submission failed: Invalid partition name specified" >&2; exit 1 ;;
  esac
done < "$last"
n=100
[ -f {b}/next_id ] && read -r n < {b}/next_id
echo $((n + 1)) > {b}/next_id
echo "$n""##
        ),
    );
    write_exe(
        &bin.join("squeue"),
        &format!("[ -f {b}/queue.txt ] && while IFS= read -r l; do echo \"$l\"; done < {b}/queue.txt; exit 0"),
    );
    bin
}

fn calls(bin: &Path) -> Vec<String> {
    fs::read_to_string(bin.join("calls.log")).unwrap_or_default().lines().map(str::to_string).collect()
}

fn record(dir: &Path) -> serde_json::Value {
    json(dir.join("sweep.json"))
}

#[test]
fn slurm_submission_status_retry_and_errors_against_a_fake_slurm() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let spec = write_sweep(tmp.path(), "s.sweep.toml", SWEEP);
    let dir = tmp.path().join("sw");
    let bin = fake_slurm(tmp.path());
    let path = bin.to_str().unwrap();
    let empty = tmp.path().join("empty");
    fs::create_dir_all(&empty).unwrap();

    // --dry-run prints the job scripts and needs no Slurm at all.
    let out = train(
        &sweep_args(&cfg, &spec, &dir, &["--backend", "slurm", "--max-parallel", "2", "--dry-run"]),
        &[("PATH", empty.to_str().unwrap())],
    );
    ok(&out);
    let text = stdout(&out);
    for want in [
        "#SBATCH --array=0-3%2\n",
        "#SBATCH --cpus-per-task=1\n",
        "'variant-nog_seed-2'\n",
        "sweep --dir '",
        "--collect\n",
    ] {
        assert!(text.contains(want), "dry run lacks {want:?}:\n{text}");
    }
    assert!(!dir.exists(), "--dry-run must not create the sweep directory");

    // No sbatch on PATH: a clear error, nothing written.
    let out = train(&sweep_args(&cfg, &spec, &dir, &["--backend", "slurm"]), &[("PATH", empty.to_str().unwrap())]);
    fail(&out, "sbatch not found on PATH");
    assert!(!dir.exists());

    // A rejected submission names sbatch's reason and records no job.
    let out = train(&sweep_args(&cfg, &spec, &dir, &["--backend", "slurm", "--partition", "nope"]), &[("PATH", path)]);
    fail(&out, "invalid partition specified: nope");
    assert!(fail(&out, "nothing was submitted").contains("sbatch rejected"));
    assert!(record(&dir).get("slurm").is_none(), "a rejected submission must not be recorded as a job");
    assert_eq!(calls(&bin).len(), 1);
    let out = train(&["sweep", "--dir", dir.to_str().unwrap(), "--status"], &[("PATH", path)]);
    ok(&out);
    assert!(
        stdout(&out).contains("(Slurm, not submitted: sbatch refused it), 4 trials: 4 pending"),
        "{}",
        stdout(&out)
    );

    // Corrected, the same command submits the array and the collect job after it.
    let out = train(
        &sweep_args(
            &cfg,
            &spec,
            &dir,
            &[
                "--backend",
                "slurm",
                "--max-parallel",
                "2",
                "--mem",
                "1G",
                "--time",
                "00:10:00",
                "--slurm-arg=--qos=short",
            ],
        ),
        &[("PATH", path)],
    );
    ok(&out);
    assert_eq!(stdout(&out).trim(), "100");
    let c = calls(&bin);
    assert_eq!(c.len(), 3, "{c:?}");
    assert!(c[1].starts_with("--parsable --array=0-3%2 ") && c[1].ends_with("slurm/array.sbatch"), "{c:?}");
    assert!(
        c[2].starts_with("--parsable --dependency=afterany:100 ") && c[2].ends_with("slurm/collect.sbatch"),
        "{c:?}"
    );
    let r = record(&dir);
    assert_eq!(r["backend"], "slurm");
    assert_eq!(r["slurm"]["job_id"], "100");
    assert_eq!(r["slurm"]["submissions"][0]["collect_job_id"], "101");
    assert_eq!(r["slurm"]["submissions"][0]["indices"], serde_json::json!([0, 1, 2, 3]));
    let script = fs::read_to_string(dir.join("slurm/array.sbatch")).unwrap();
    for want in ["#SBATCH --mem=1G\n", "#SBATCH --time=00:10:00\n", "#SBATCH --qos=short\n"] {
        assert!(script.contains(want), "{want:?} missing:\n{script}");
    }
    for n in NAMES {
        let t = fs::read_to_string(dir.join("slurm/trials").join(format!("{n}.toml"))).unwrap();
        assert!(t.contains("threads = 1") && t.contains(&format!("seed = {}", &n[n.len() - 1..])), "{n}:\n{t}");
    }

    // Nothing is submitted twice: the same command again, or another sweep into the same dir.
    let out = train(&sweep_args(&cfg, &spec, &dir, &["--backend", "slurm"]), &[("PATH", path)]);
    fail(&out, "already submitted to Slurm (array job 100)");
    let other = write_sweep(tmp.path(), "o.sweep.toml", &SWEEP.replace("\"nog\"", "\"cifg\""));
    let out = train(&sweep_args(&cfg, &other, &dir, &["--backend", "slurm"]), &[("PATH", path)]);
    fail(&out, "holds another sweep");
    let out = train(&sweep_args(&cfg, &other, &dir, &[]), &[("PATH", path)]);
    fail(&out, "holds another sweep");
    assert_eq!(calls(&bin).len(), 3, "a refused command must not call sbatch");

    // --status: one trial running, one queued, one ended (Slurm forgot it) after starting,
    // one finished.
    fs::write(bin.join("queue.txt"), "100|0|RUNNING\n100|1|PENDING\n").unwrap();
    fs::create_dir_all(dir.join(NAMES[2])).unwrap();
    fs::write(dir.join(NAMES[2]).join("config.toml"), "").unwrap();
    fs::create_dir_all(dir.join(NAMES[3])).unwrap();
    fs::write(dir.join(NAMES[3]).join("summary.json"), r#"{"validation": {"accuracy": 0.75}}"#).unwrap();
    let out = train(&["sweep", "--dir", dir.to_str().unwrap(), "--status"], &[("PATH", path)]);
    ok(&out);
    let st = stdout(&out);
    assert!(st.contains("4 trials: 1 running, 1 pending, 1 failed, 1 finished"), "{st}");
    let line =
        |name: &str| st.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}:\n{st}")).to_string();
    assert!(line(NAMES[0]).contains("running") && line(NAMES[0]).contains("100_0 RUNNING"), "{st}");
    assert!(line(NAMES[2]).contains("failed") && line(NAMES[2]).contains("slurm/logs/100_2.out"), "{st}");
    assert!(line(NAMES[3]).contains("finished") && line(NAMES[3]).contains("validation.accuracy 0.7500"), "{st}");

    // --retry-failed resubmits the failed trial only, keeping the throttle.
    let out = train(&["sweep", "--dir", dir.to_str().unwrap(), "--retry-failed"], &[("PATH", path)]);
    ok(&out);
    assert_eq!(stdout(&out).trim(), "102");
    let c = calls(&bin);
    assert_eq!(c.len(), 5, "{c:?}");
    assert!(c[3].starts_with("--parsable --array=2%2 ") && c[4].contains("--dependency=afterany:102"), "{c:?}");
    let r = record(&dir);
    assert_eq!(r["slurm"]["job_id"], "102");
    assert_eq!(r["slurm"]["submissions"][1]["indices"], serde_json::json!([2]));
    // Now queued under the new job: nothing left to retry, and no call to sbatch.
    fs::write(bin.join("queue.txt"), "100|0|RUNNING\n100|1|PENDING\n102|2|PENDING\n").unwrap();
    let out = train(&["sweep", "--dir", dir.to_str().unwrap(), "--retry-failed"], &[("PATH", path)]);
    ok(&out);
    assert!(stderr(&out).contains("nothing to retry"), "{}", stderr(&out));
    assert_eq!(calls(&bin).len(), 5);
    // squeue that cannot reach the controller: refuse rather than resubmit running trials.
    write_exe(&bin.join("squeue"), "echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2; exit 1");
    let out = train(&["sweep", "--dir", dir.to_str().unwrap(), "--retry-failed"], &[("PATH", path)]);
    fail(&out, "Unable to contact slurm controller");
    assert_eq!(calls(&bin).len(), 5);
    // --status still answers, from the run directories, and says why.
    let out = train(&["sweep", "--dir", dir.to_str().unwrap(), "--status"], &[("PATH", path)]);
    ok(&out);
    assert!(stderr(&out).contains("warning: squeue failed") && stdout(&out).contains("1 finished"), "{}", stderr(&out));

    // --collect works from the directory alone (one finished trial so far).
    let out = train(&["sweep", "--dir", dir.to_str().unwrap(), "--collect"], &[("PATH", empty.to_str().unwrap())]);
    ok(&out);
    assert_eq!(fs::read_to_string(dir.join("results.csv")).unwrap().lines().count(), 2);

    // Flags of the other backend, and a status without a sweep directory, are named.
    let out = train(&sweep_args(&cfg, &spec, &tmp.path().join("x"), &["--partition", "debug"]), &[]);
    fail(&out, "--partition is for --backend slurm");
    let out = train(&["sweep", "--dir", tmp.path().join("nowhere").to_str().unwrap(), "--status"], &[]);
    fail(&out, "nowhere a sweep directory made by `train sweep`");
}

/// `scripts/slurm_local.sh` with its own state directory and ports; stopped when dropped,
/// so a failing test leaves no daemons behind.
struct Cluster {
    env: Vec<(String, String)>,
    script: PathBuf,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/slurm_local.sh");
        let port = free_port_pair();
        let env = vec![
            ("SLUICE_SLURM_DIR".to_string(), dir.display().to_string()),
            ("SLUICE_SLURM_PORT".to_string(), port.to_string()),
        ];
        let c = Cluster { env, script };
        let out = c.script_cmd("start").output().unwrap();
        assert!(out.status.success(), "slurm_local.sh start failed:\n{}", stderr(&out));
        assert!(stdout(&out).contains(&format!("export SLURM_CONF={}", c.conf())), "{}", stdout(&out));
        // Idempotent: a second start leaves the running cluster alone.
        let again = c.script_cmd("start").output().unwrap();
        assert!(again.status.success() && stderr(&again).contains("already running"), "{}", stderr(&again));
        c
    }

    fn script_cmd(&self, what: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(&self.script).arg(what);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn conf(&self) -> String {
        format!("{}/slurm.conf", self.env[0].1)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.script_cmd("stop").output();
    }
}

/// A port whose successor is free too (slurmctld and slurmd).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p < 65535 && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free pair of ports");
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// results.csv without its wall_seconds column (the only one that may differ between runs).
fn results_without_wall(dir: &Path) -> String {
    let text = fs::read_to_string(dir.join("results.csv")).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let wall = header.iter().position(|c| *c == "wall_seconds").unwrap();
    text.lines()
        .map(|l| l.split(',').enumerate().filter(|(i, _)| *i != wall).map(|(_, f)| f).collect::<Vec<_>>().join(","))
        .collect::<Vec<_>>()
        .join("\n")
}

fn checkpoints(run: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().to_string(), fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn a_real_slurm_sweep_matches_the_local_one_and_a_cancelled_trial_resumes_to_the_same_bytes() {
    let have_sbatch =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|d| d.join("sbatch").exists());
    if !have_sbatch {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but sbatch is not on PATH: .ci/run installs slurm-wlm and munge for this test");
        }
        eprintln!("skipping the real-Slurm test: sbatch not found (apt-get install -y slurm-wlm munge to run it; CI always does)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&tmp.path().join("slurm"));
    let conf = cluster.conf();
    let env = [("SLURM_CONF", conf.as_str())];
    let cfg = write_config(tmp.path(), "");
    let spec = write_sweep(tmp.path(), "s.sweep.toml", SWEEP);
    // 60 epochs (720 steps, a resume state every 5) so a trial runs long enough to be
    // cancelled well before its end even on a fast machine.
    let sets = ["--set", "train.epochs=60"];

    let local = tmp.path().join("local");
    let mut args = sweep_args(&cfg, &spec, &local, &["--jobs", "2"]);
    args.extend_from_slice(&sets);
    ok(&train(&args, &env));

    let sl = tmp.path().join("slurm-sweep");
    let mut args = sweep_args(&cfg, &spec, &sl, &["--backend", "slurm", "--max-parallel", "2", "--time", "00:05:00"]);
    args.extend_from_slice(&sets);
    let out = train(&args, &env);
    ok(&out);
    let job = stdout(&out).trim().to_string();
    let victim = sl.join(NAMES[3]);
    // Cancel the last trial once it has saved a resume state, long before its end.
    wait_for("the last trial's first resume state", Duration::from_secs(90), || {
        victim.join("checkpoints/resume.safetensors").exists()
    });
    let out = Command::new("scancel").arg(format!("{job}_3")).env("SLURM_CONF", &conf).output().unwrap();
    assert!(out.status.success(), "scancel: {}", stderr(&out));
    let status = || {
        let out = train(&["sweep", "--dir", sl.to_str().unwrap(), "--status"], &env);
        ok(&out);
        stdout(&out)
    };
    wait_for("the array and its collect job to end", Duration::from_secs(90), || {
        let s = status();
        !s.contains("running") && !s.contains("pending") && sl.join("results.csv").exists()
    });
    let s = status();
    assert!(s.contains("3 finished, 1 failed") || s.contains("1 failed, 3 finished"), "{s}");
    assert!(s.lines().any(|l| l.starts_with(NAMES[3]) && l.contains("failed") && l.contains("CANCELLED")), "{s}");
    assert!(!victim.join("summary.json").exists(), "the cancelled trial finished anyway");
    assert_eq!(fs::read_to_string(sl.join("results.csv")).unwrap().lines().count(), 4, "collect job: 3 finished runs");

    let out = train(&["sweep", "--dir", sl.to_str().unwrap(), "--retry-failed"], &env);
    ok(&out);
    assert!(stderr(&out).contains(&format!("resubmitted 1 failed trials ({})", NAMES[3])), "{}", stderr(&out));
    let retry = stdout(&out).trim().to_string();
    assert_ne!(retry, job);
    wait_for("the retried trial and the new collect job", Duration::from_secs(90), || {
        status().contains("4 trials: 4 finished")
            && fs::read_to_string(sl.join("results.csv")).is_ok_and(|t| t.lines().count() == 5)
    });
    let log = fs::read_to_string(sl.join(format!("slurm/logs/{retry}_3.out"))).unwrap();
    assert!(log.contains("resuming"), "the retried trial started over:\n{log}");

    assert_eq!(results_without_wall(&sl), results_without_wall(&local), "Slurm and local results differ");
    for n in NAMES {
        let (a, b) = (checkpoints(&local.join(n)), checkpoints(&sl.join(n)));
        assert_eq!(a.len(), 3, "{n}: {:?}", a.iter().map(|x| &x.0).collect::<Vec<_>>());
        assert!(a == b, "{n}: checkpoints differ between the local and the Slurm sweep");
    }
    drop(cluster);
}
