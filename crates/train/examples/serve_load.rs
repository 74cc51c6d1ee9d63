//! A bounded load client for `train serve` (README "Serving: train serve"): starts the server
//! on 127.0.0.1 twice on the same run, with batching on (`--max-batch 32 --max-wait-ms 5`, the
//! defaults) and off (`--max-batch 1`), sends the same N single-text requests from C concurrent
//! clients to each, and prints throughput, p50/p99 latency, errors and the server's RSS before
//! before and after each of `--rounds` identical rounds (3; latency and throughput are the
//! first round's). Localhost only; it stops by itself.
//!
//! ```text
//! cargo build --release -p train
//! cargo run --release -p train --example serve_load -- --run runs/sst2-... \
//!     --texts ../shared/data/sst2/validation.jsonl [--requests 5000] [--concurrency 64] [--rounds 3]
//! ```

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    run: PathBuf,
    texts: Option<PathBuf>,
    requests: usize,
    concurrency: usize,
    bin: PathBuf,
    threads: Option<usize>,
    rounds: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        run: PathBuf::new(),
        texts: None,
        requests: 5000,
        concurrency: 64,
        bin: PathBuf::from("target/release/train"),
        threads: None,
        rounds: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k}: missing value"));
        match k.as_str() {
            "--run" => a.run = PathBuf::from(v()?),
            "--texts" => a.texts = Some(PathBuf::from(v()?)),
            "--requests" => a.requests = v()?.parse().context("--requests")?,
            "--concurrency" => a.concurrency = v()?.parse().context("--concurrency")?,
            "--bin" => a.bin = PathBuf::from(v()?),
            "--threads" => a.threads = Some(v()?.parse().context("--threads")?),
            "--rounds" => a.rounds = v()?.parse().context("--rounds")?,
            other => bail!(
                "unknown argument {other:?}; usage: serve_load --run DIR [--texts FILE] [--requests N] \
                 [--concurrency C] [--bin target/release/train] [--threads N] [--rounds R]"
            ),
        }
    }
    if a.run.as_os_str().is_empty() {
        bail!("--run DIR is required (a finished classification run)");
    }
    if a.requests == 0 || a.concurrency == 0 || a.concurrency > 1024 || a.rounds == 0 || a.rounds > 100 {
        bail!("--requests ≥ 1, --concurrency in 1..=1024 and --rounds in 1..=100");
    }
    Ok(a)
}

/// Sentences to send: a JSONL file's `text` fields or a text file's lines; a built-in set
/// without `--texts`.
fn load_texts(path: Option<&PathBuf>) -> Result<Vec<String>> {
    let Some(p) = path else {
        return Ok([
            "a gorgeous , witty , seductive movie .",
            "the film is strictly routine .",
            "it 's a charming and often affecting journey .",
            "unflinchingly bleak and desperate",
            "the acting , costumes , music , cinematography and sound are all astounding given the production 's austere locales .",
            "it 's slow -- very , very slow .",
        ]
        .map(String::from)
        .to_vec());
    };
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        if line.trim_start().starts_with('{') {
            let v: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("{}:{}: not JSON", p.display(), i + 1))?;
            let t = v["text"].as_str().with_context(|| format!("{}:{}: no \"text\" string", p.display(), i + 1))?;
            out.push(t.to_string());
        } else {
            out.push(line.to_string());
        }
    }
    if out.is_empty() {
        bail!("{}: no texts", p.display());
    }
    Ok(out)
}

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(a: &Args, flags: &[&str]) -> Result<Server> {
        let mut cmd = Command::new(&a.bin);
        cmd.arg("serve").arg("--run").arg(&a.run).args(["--addr", "127.0.0.1:0"]).args(flags);
        if let Some(t) = a.threads {
            cmd.args(["--threads", &t.to_string()]);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} (build it: cargo build --release -p train)", a.bin.display()))?;
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(x) = l.strip_prefix("listening on ") {
                        break x.trim().to_string();
                    }
                    eprintln!("server: {l}");
                }
                _ => bail!("the server exited before listening"),
            }
        };
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        Ok(Server { child, addr })
    }

    /// Resident memory in KiB (Linux /proc).
    fn rss_kib(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
    }

    fn stop(mut self) -> Result<()> {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        let st = self.child.wait()?;
        if !st.success() {
            bail!("the server exited with {st}");
        }
        Ok(())
    }
}

struct Figures {
    seconds: f64,
    latencies: Vec<f64>,
    errors: usize,
    rss_before: Option<u64>,
    rss_after: Option<u64>,
    /// After each further identical round (memory that keeps growing would show here).
    rss_again: Vec<Option<u64>>,
    again_errors: usize,
    mean_batch: Option<f64>,
}

fn fire(addr: &str, texts: &[String], n: usize, concurrency: usize) -> (f64, Vec<f64>, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut all = Vec::with_capacity(n);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..concurrency)
            .map(|_| {
                let next = next.clone();
                let errors = errors.clone();
                s.spawn(move || {
                    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).build();
                    let url = format!("{addr}/v1/predict");
                    let mut lat = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        let body = serde_json::json!({"texts": [texts[i % texts.len()]]});
                        let t = Instant::now();
                        let ok = match agent.post(&url).send_json(body) {
                            Ok(r) => r.status() == 200 && r.into_string().is_ok(),
                            Err(_) => false,
                        };
                        if ok {
                            lat.push(t.elapsed().as_secs_f64());
                        } else {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    lat
                })
            })
            .collect();
        for h in hs {
            all.extend(h.join().unwrap());
        }
    });
    (start.elapsed().as_secs_f64(), all, errors.load(Ordering::Relaxed))
}

fn metric(addr: &str, key: &str) -> Option<f64> {
    let text = ureq::get(&format!("{addr}/metrics")).call().ok()?.into_string().ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().parse().ok())
}

fn measure(a: &Args, flags: &[&str], texts: &[String]) -> Result<Figures> {
    let server = Server::start(a, flags)?;
    // Warm-up (first-touch allocations, thread pools), not counted.
    let (_, _, warm_errors) = fire(&server.addr, texts, 200.min(a.requests), a.concurrency.min(8));
    if warm_errors > 0 {
        bail!("{warm_errors} warm-up requests failed");
    }
    let name = a.run.canonicalize()?.file_name().unwrap().to_string_lossy().into_owned();
    let count_key = format!("sluice_batch_size_count{{model=\"{name}\"}}");
    let sum_key = format!("sluice_batch_size_sum{{model=\"{name}\"}}");
    let (c0, s0) = (metric(&server.addr, &count_key), metric(&server.addr, &sum_key));
    let rss_before = server.rss_kib();
    let (seconds, mut latencies, errors) = fire(&server.addr, texts, a.requests, a.concurrency);
    let rss_after = server.rss_kib();
    let mean_batch = match (c0, s0, metric(&server.addr, &count_key), metric(&server.addr, &sum_key)) {
        (Some(c0), Some(s0), Some(c1), Some(s1)) if c1 > c0 => Some((s1 - s0) / (c1 - c0)),
        _ => None,
    };
    let mut again_errors = 0;
    let mut rss_again = Vec::new();
    for _ in 1..a.rounds {
        again_errors += fire(&server.addr, texts, a.requests, a.concurrency).2;
        rss_again.push(server.rss_kib());
    }
    server.stop()?;
    latencies.sort_by(|x, y| x.total_cmp(y));
    Ok(Figures { seconds, latencies, errors, rss_before, rss_after, rss_again, again_errors, mean_batch })
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i]
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let texts = load_texts(a.texts.as_ref())?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!(
        "serve_load: {} requests (1 text each, {} distinct texts), {} concurrent clients, run {}, {}",
        a.requests,
        texts.len(),
        a.concurrency,
        a.run.display(),
        cpu
    );
    let modes: [(&str, &[&str]); 2] = [
        ("batching on (--max-batch 32 --max-wait-ms 5)", &[]),
        ("batching off (--max-batch 1)", &["--max-batch", "1"]),
    ];
    let mut rows = Vec::new();
    for (label, flags) in modes {
        let f = measure(&a, flags, &texts)?;
        rows.push((label, f));
    }
    println!();
    println!("| mode | requests/s | p50 ms | p99 ms | errors | mean batch | RSS before → after each round (MiB) |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for (label, f) in &rows {
        let ok = f.latencies.len();
        let mib = |k: Option<u64>| k.map(|k| format!("{:.1}", k as f64 / 1024.0)).unwrap_or_else(|| "?".into());
        println!(
            "| {label} | {:.0} | {:.2} | {:.2} | {} | {} | {} → {} |",
            ok as f64 / f.seconds,
            pct(&f.latencies, 50.0) * 1e3,
            pct(&f.latencies, 99.0) * 1e3,
            f.errors + f.again_errors,
            f.mean_batch.map(|b| format!("{b:.1}")).unwrap_or_else(|| "?".into()),
            mib(f.rss_before),
            std::iter::once(f.rss_after).chain(f.rss_again.iter().copied()).map(mib).collect::<Vec<_>>().join(" → ")
        );
    }
    if rows.len() == 2 {
        let thr = |f: &Figures| f.latencies.len() as f64 / f.seconds;
        println!("\nthroughput ratio on/off: {:.2}×", thr(&rows[0].1) / thr(&rows[1].1));
    }
    if rows.iter().any(|(_, f)| f.errors + f.again_errors > 0) {
        bail!("some requests failed");
    }
    Ok(())
}
