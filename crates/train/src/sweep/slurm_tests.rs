use super::*;

fn params(opts: SlurmOptions) -> ScriptParams {
    ScriptParams {
        name: "tiny".into(),
        dir: PathBuf::from("/shared/sw"),
        workdir: PathBuf::from("/shared/proj"),
        binary: PathBuf::from("/shared/bin/train"),
        trials: vec!["a_seed-1".into(), "b_seed-1".into(), "c'd_seed-1".into()],
        cpus: 2,
        opts,
    }
}

fn fake(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn array_specs_compress_runs_and_throttle() {
    assert_eq!(array_spec(&[0, 1, 2, 3], Some(2)), "0-3%2");
    assert_eq!(array_spec(&[1, 3, 4, 5, 9], None), "1,3-5,9");
    assert_eq!(array_spec(&[7], Some(1)), "7%1");
}

#[test]
fn the_array_script_maps_tasks_to_trials_and_is_valid_bash() {
    let opts = SlurmOptions {
        partition: Some("gpu".into()),
        time: Some("01:30:00".into()),
        mem: Some("8G".into()),
        max_parallel: Some(2),
        slurm_args: vec!["--account=proj".into(), "--qos=short".into()],
        ..Default::default()
    };
    let p = params(opts);
    let s = p.array_script();
    for line in [
        "#SBATCH --job-name=sluice-tiny\n",
        "#SBATCH --array=0-2%2\n",
        "#SBATCH --cpus-per-task=2\n",
        "#SBATCH --mem=8G\n",
        "#SBATCH --partition=gpu\n",
        "#SBATCH --time=01:30:00\n",
        "#SBATCH --chdir=/shared/proj\n",
        "#SBATCH --account=proj\n#SBATCH --qos=short\n",
        "#SBATCH --output=/shared/sw/slurm/logs/%A_%a.out\n",
        "TRAIN='/shared/bin/train'\n",
        "  'c'\\''d_seed-1'\n",
        "exec \"$TRAIN\" resume --run \"$RUN\" --quiet\n",
        "exec \"$TRAIN\" --config \"$SWEEP_DIR/slurm/trials/$TRIAL.toml\" --run-dir \"$RUN\" --quiet\n",
    ] {
        assert!(s.contains(line), "missing {line:?} in\n{s}");
    }
    // sbatch reads #SBATCH lines only before the first command.
    let first_cmd = s.lines().position(|l| !l.starts_with('#')).unwrap();
    assert!(s.lines().skip(first_cmd).all(|l| !l.starts_with("#SBATCH")), "{s}");
    let c = p.collect_script();
    assert!(c.contains("exec '/shared/bin/train' sweep --dir '/shared/sw' --collect\n"), "{c}");
    assert!(c.contains("#SBATCH --partition=gpu\n") && c.contains("#SBATCH --account=proj\n"), "{c}");
    assert!(!c.contains("--mem") && !c.contains("--array"), "{c}");
    for text in [s, c] {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("x.sh");
        std::fs::write(&f, text).unwrap();
        assert!(std::process::Command::new("bash").arg("-n").arg(&f).status().unwrap().success());
    }
}

#[test]
fn the_array_script_runs_trials_and_resumes_started_ones() {
    // The script itself, with a fake `train` that prints its arguments.
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake(tmp.path(), "train", "echo \"$@\"");
    let dir = tmp.path().join("sw");
    std::fs::create_dir_all(dir.join("b_seed-1")).unwrap();
    std::fs::write(dir.join("b_seed-1/config.toml"), "").unwrap();
    std::fs::create_dir_all(dir.join("c'd_seed-1")).unwrap();
    std::fs::write(dir.join("c'd_seed-1/summary.json"), "{}").unwrap();
    let mut p = params(SlurmOptions::default());
    p.dir = dir.clone();
    p.binary = bin;
    let script = tmp.path().join("array.sbatch");
    std::fs::write(&script, p.array_script()).unwrap();
    let run = |task: &str| {
        let o = std::process::Command::new("bash")
            .arg(&script)
            .env("SLURM_ARRAY_TASK_ID", task)
            .env("SLURM_ARRAY_JOB_ID", "12")
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let d = dir.display();
    assert!(run("0").contains(&format!("--config {d}/slurm/trials/a_seed-1.toml --run-dir {d}/a_seed-1 --quiet")));
    assert!(run("1").contains(&format!("resume --run {d}/b_seed-1 --quiet")));
    assert!(run("2").contains("already finished"));
}

#[test]
fn bad_slurm_options_are_named() {
    let e = |o: SlurmOptions| format!("{:#}", o.validate().unwrap_err());
    assert!(e(SlurmOptions { time: Some("2h".into()), ..Default::default() }).contains("--time \"2h\""));
    assert!(e(SlurmOptions { mem: Some("8GB".into()), ..Default::default() }).contains("--mem \"8GB\""));
    assert!(e(SlurmOptions { partition: Some("a b".into()), ..Default::default() }).contains("--partition"));
    assert!(e(SlurmOptions { max_parallel: Some(0), ..Default::default() }).contains("--max-parallel 0"));
    assert!(e(SlurmOptions { cpus_per_trial: Some(0), ..Default::default() }).contains("--cpus-per-trial 0"));
    assert!(
        e(SlurmOptions { slurm_args: vec!["account=x".into()], ..Default::default() }).contains("one sbatch option")
    );
    assert!(e(SlurmOptions { slurm_args: vec!["--array=0-3".into()], ..Default::default() })
        .contains("sets --array itself"));
    for t in ["90", "30:00", "02:00:00", "1-12", "1-12:00", "1-12:00:00"] {
        SlurmOptions { time: Some(t.into()), ..Default::default() }.validate().unwrap();
    }
    for m in ["8G", "512M", "16000", "1t"] {
        SlurmOptions { mem: Some(m.into()), ..Default::default() }.validate().unwrap();
    }
}

#[test]
fn submit_reads_the_job_id_and_reports_rejections() {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("a.sbatch");
    std::fs::write(&script, "#!/bin/bash\n").unwrap();
    let ok = fake(tmp.path(), "sbatch-ok", "echo \"$@\" > args.txt; echo '42;cluster'");
    assert_eq!(submit(&ok, &["--array=0-3%2".into()], &script, tmp.path()).unwrap(), "42");
    let args = std::fs::read_to_string(tmp.path().join("args.txt")).unwrap();
    assert_eq!(args.trim(), format!("--parsable --array=0-3%2 {}", script.display()));
    let bad = fake(
        tmp.path(),
        "sbatch-bad",
        "echo 'sbatch: error: invalid partition specified: nope' >&2; echo 'sbatch: error: Batch job submission failed: Invalid partition name specified' >&2; exit 1",
    );
    let e = format!("{:#}", submit(&bad, &[], &script, tmp.path()).unwrap_err());
    assert!(e.contains("sbatch rejected") && e.contains("invalid partition specified: nope"), "{e}");
    let mute = fake(tmp.path(), "sbatch-mute", "echo 'Submitted batch job 42'");
    let e = format!("{:#}", submit(&mute, &[], &script, tmp.path()).unwrap_err());
    assert!(e.contains("printed no job id"), "{e}");
}
