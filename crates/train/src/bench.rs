//! `train bench`: full training steps and inference of a classifier (embedding → LSTM → last
//! state → linear → cross-entropy → backward → optimizer) timed for three LSTM paths in one
//! process: our fused op (`fused`), our op-by-op cell (`ops`, `model.fused = false`) and
//! candle-nn's `LSTM` (`candle_nn`, its `seq` method, with candle-nn's `AdamW`).
//!
//! Shapes come from a normal config file (`[model]`, `[train]`, `[run]`) plus a `[bench]`
//! section; batches are random token ids from our seeded generator, every row full length.
//! Inference runs on a copy of the model whose weights are detached (a frozen model, the
//! counterpart of PyTorch's `no_grad`), so no graph is recorded.
//!
//! The compressed paths (`int8`, `bf16`, `sparse50`, `sparse90`) time inference only, on the
//! fused path's model with its weights compressed in memory (`model::compress`).
//!
//! With `--json` the last stdout line is one object:
//! `{"train_tokens_per_s": {..}, "infer_tokens_per_s": {..}, "peak_rss_mb": .., "cpu": ..}`; a
//! path that did not run (`--paths`, or training of an inference-only path) is `null`; `cpu`
//! is the CPU's model name (`lscpu`'s), `cpu_info` its vendor, family, model and SIMD features.

use crate::config::{self, Config};
use crate::loss::cross_entropy;
use crate::optim::{Optimizer, Param};
use crate::overrides::Override;
use anyhow::{anyhow, bail, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Module, Optimizer as _, VarBuilder, VarMap, RNN};
use model::classifier::{Classifier, ClassifierConfig};
use model::rng::SeededRng;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

/// `train bench`'s arguments.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// A bench config (configs/bench_a.toml, configs/bench_b.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// Override a config key: --set section.key=value (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub sets: Vec<String>,
    /// Print one JSON object as the last line.
    #[arg(long)]
    pub json: bool,
    /// Which paths to run, comma-separated: fused, ops, candle_nn, and the inference-only
    /// compressed paths int8, bf16, sparse50, sparse90 (the fused model's weights compressed in
    /// memory; sparseNN = recurrent matrices pruned to NN% in 8×1 blocks). Default fused,ops,candle_nn.
    #[arg(long, default_value = "fused,ops,candle_nn")]
    pub paths: String,
}

const PATHS: [&str; 7] = ["fused", "ops", "candle_nn", "int8", "bf16", "sparse50", "sparse90"];
/// The paths that only run inference.
const INFER_ONLY: [&str; 4] = ["int8", "bf16", "sparse50", "sparse90"];

/// Median, 10th and 90th percentile of step times in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Median step time.
    pub median: f64,
    /// 10th percentile.
    pub p10: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Timed steps.
    pub steps: usize,
}

fn timing(mut v: Vec<f64>) -> Timing {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) };
    Timing { median, p10: v[n / 10], p90: v[(n * 9) / 10], steps: n }
}

fn time_steps(warmup: usize, steps: usize, mut f: impl FnMut(usize) -> Result<()>) -> Result<Timing> {
    for i in 0..warmup {
        f(i)?;
    }
    let mut v = Vec::with_capacity(steps);
    for i in 0..steps {
        let t = Instant::now();
        f(warmup + i)?;
        v.push(t.elapsed().as_secs_f64());
    }
    Ok(timing(v))
}

/// Peak resident set size of this process (VmHWM) in MB; None off Linux.
pub fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn load_average() -> Option<String> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

struct Batch {
    ids: Tensor,
    labels: Vec<u32>,
}

fn batches(cfg: &Config, n: usize, dev: &Device) -> Result<Vec<Batch>> {
    let (b, t, vocab) = (cfg.train.batch_size, cfg.bench.seq_len, cfg.bench.vocab as u64);
    let mut rng = SeededRng::new(cfg.run.seed, "bench/batches");
    (0..n)
        .map(|_| {
            let ids: Vec<u32> = (0..b * t).map(|_| rng.below(vocab) as u32).collect();
            let labels: Vec<u32> = (0..b).map(|_| rng.below(2) as u32).collect();
            Ok(Batch { ids: Tensor::from_vec(ids, (b, t), dev)?, labels })
        })
        .collect()
}

fn classifier_config(cfg: &Config, fused: bool) -> ClassifierConfig {
    let m = &cfg.model;
    ClassifierConfig {
        vocab_size: cfg.bench.vocab,
        embedding_dim: m.embedding_dim,
        num_classes: 2,
        lstm: model::config::LstmConfig { fused, ..m.lstm(m.embedding_dim) },
        embedding_dropout: m.embedding_dropout,
        head_dropout: m.head_dropout,
        variational: m.variational,
        pooling: m.pooling,
    }
}

fn params_of(varmap: &VarMap) -> Vec<Param> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|n| Param {
            name: n.clone(),
            var: data[n].clone(),
            penalised: n.ends_with("weight") || n.contains(".weight_"),
        })
        .collect()
}

/// A builder over detached copies of the map's tensors (shared storage, no gradient).
fn frozen(varmap: &VarMap, dev: &Device) -> VarBuilder<'static> {
    let data = varmap.data().lock().expect("varmap lock");
    let ts: HashMap<String, Tensor> = data.iter().map(|(k, v)| (k.clone(), v.as_tensor().detach())).collect();
    VarBuilder::from_tensors(ts, DType::F32, dev)
}

/// Training and inference timings of one path.
pub struct PathResult {
    /// Full training steps (forward, backward, optimizer); None for inference-only paths.
    pub train: Option<Timing>,
    /// Forward passes of the frozen model.
    pub infer: Timing,
    /// Medians of the training step's parts (our paths).
    pub split: Option<String>,
}

fn bench_ours(cfg: &Config, fused: bool, data: &[Batch], steps: usize, dev: &Device) -> Result<PathResult> {
    let bc = &cfg.bench;
    let ccfg = classifier_config(cfg, fused);
    let varmap = VarMap::new();
    let mut net = Classifier::new(&ccfg, model::init::seeded_var_builder(&varmap, cfg.run.seed, DType::F32, dev))?;
    // As in `train`: the optimizer reads the embedding table's used rows.
    let embedding_grad = net.sparse_embedding_grad();
    let params = params_of(&varmap);
    let mut opt = Optimizer::new(&cfg.train);
    let mut rng = SeededRng::new(cfg.run.seed, "bench/dropout");
    let lengths = vec![bc.seq_len; cfg.train.batch_size];
    let mut split: [Vec<f64>; 3] = Default::default();
    let train = time_steps(bc.warmup, steps, |i| {
        let b = &data[i % data.len()];
        let t0 = Instant::now();
        let out = net.forward(&b.ids, &lengths, true, Some(&mut rng), false)?;
        let loss = cross_entropy(&out.logits, &b.labels, &[])?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        let sparse: Vec<_> = embedding_grad.take().map(|r| ("embedding.weight".to_string(), r)).into_iter().collect();
        opt.step_sparse(&params, &grads, &sparse, cfg.train.lr)?;
        let t3 = Instant::now();
        let l = loss.to_scalar::<f32>()?;
        if !l.is_finite() {
            bail!("loss is {l}");
        }
        if i >= bc.warmup {
            for (k, d) in [t1 - t0, t2 - t1, t3 - t2].into_iter().enumerate() {
                split[k].push(d.as_secs_f64());
            }
        }
        Ok(())
    })?;
    let [f, b, o] = split.map(|v| timing(v).median * 1e3);
    let split = format!("forward {f:.2} ms, backward {b:.2} ms, optimizer {o:.2} ms");
    let inet = Classifier::new(&ccfg, frozen(&varmap, dev))?;
    let infer = time_steps(bc.warmup, steps, |i| {
        let b = &data[i % data.len()];
        let out = inet.forward(&b.ids, &lengths, false, None, false)?;
        std::hint::black_box(out.logits.to_vec2::<f32>()?);
        Ok(())
    })?;
    Ok(PathResult { train: Some(train), infer, split: Some(split) })
}

/// Inference of the fused path's model (same seed, same batches) with its weights compressed
/// in memory: `int8`, `bf16`, or `sparse50`/`sparse90` (each W_ih, W_hh pruned to that share
/// in 8×1 blocks first). The split line gives the recurrent product alone at one step's shape
/// (batch × hidden times W_hhᵀ): the path's kernel against candle's f32 matmul on the same
/// (pruned) weights.
fn bench_compressed(cfg: &Config, path: &str, data: &[Batch], steps: usize, dev: &Device) -> Result<PathResult> {
    use model::compress::{sparse, Format};
    let bc = &cfg.bench;
    let ccfg = classifier_config(cfg, true);
    let varmap = VarMap::new();
    Classifier::new(&ccfg, model::init::seeded_var_builder(&varmap, cfg.run.seed, DType::F32, dev))?;
    let format = match path {
        "int8" => Format::Int8,
        "bf16" => Format::Bf16,
        _ => {
            let s = if path == "sparse50" { 0.5 } else { 0.9 };
            let block = sparse::Block { rows: 8, cols: 1 };
            let data = varmap.data().lock().expect("varmap lock");
            for (name, var) in data.iter().filter(|(n, _)| crate::prune::is_pruned_matrix(n)) {
                let (rows, cols) = var.dims2()?;
                let w = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
                let mask = sparse::block_mask(&w, rows, cols, block, s);
                let pruned: Vec<f32> = w.iter().zip(&mask).map(|(a, b)| a * b).collect();
                var.set(&Tensor::from_vec(pruned, (rows, cols), dev)?).map_err(|e| anyhow!("{name}: {e}"))?;
            }
            Format::Sparse
        }
    };
    let c = model::compress::compress_varmap(&varmap, format)?;
    let mut inet = Classifier::new(&ccfg, frozen(&varmap, dev))?;
    if !inet.attach_compressed(&c)? {
        bail!(
            "{path}: the compressed kernels cover the vanilla LSTM only (model.variant = vanilla, model.cell = lstm)"
        );
    }
    let lengths = vec![bc.seq_len; cfg.train.batch_size];
    let infer = time_steps(bc.warmup, steps, |i| {
        let b = &data[i % data.len()];
        let out = inet.forward(&b.ids, &lengths, false, None, false)?;
        std::hint::black_box(out.logits.to_vec2::<f32>()?);
        Ok(())
    })?;
    // The recurrent product alone, layer 0 forward direction.
    let name = "lstm.weight_hh_l0";
    let w = c.matrices.get(name).ok_or_else(|| anyhow!("{name} was not compressed"))?;
    let (n, k, b) = (w.rows(), w.cols(), cfg.train.batch_size);
    let mut rng = SeededRng::new(cfg.run.seed, "bench/h");
    let h: Vec<f32> = (0..b * k).map(|_| rng.uniform01() as f32 - 0.5).collect();
    let dense = {
        let data = varmap.data().lock().expect("varmap lock");
        data[name].as_tensor().t()?.contiguous()?
    };
    let ht = Tensor::from_vec(h.clone(), (b, k), dev)?;
    let reps = 200;
    let t_dense = time_steps(3, 9, |_| {
        for _ in 0..reps {
            std::hint::black_box(ht.matmul(&dense)?);
        }
        Ok(())
    })?;
    let mut out = vec![0f32; b * n];
    let mut scratch = model::compress::Scratch::default();
    let t_ours = time_steps(3, 9, |_| {
        for _ in 0..reps {
            w.add_product(&h, k, b, &mut out, n, &mut scratch);
        }
        std::hint::black_box(&out);
        Ok(())
    })?;
    let (d, o) = (t_dense.median / reps as f64 * 1e6, t_ours.median / reps as f64 * 1e6);
    let split = format!(
        "recurrent product {b}×{k}·({n}×{k})ᵀ: {path} {o:.1} µs, candle f32 matmul {d:.1} µs ({:.2}x; ours on one thread, candle on its pool)",
        d / o
    );
    Ok(PathResult { train: None, infer, split: Some(split) })
}

/// candle-nn's stack: `embedding`, `rnn::lstm` (stacked by hand for several layers, its `seq`
/// over the sequence), the last step's h, `linear`, and candle-nn's `AdamW` (no decay = Adam).
struct NnModel {
    embedding: candle_nn::Embedding,
    layers: Vec<candle_nn::rnn::LSTM>,
    head: candle_nn::Linear,
}

impl NnModel {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let m = &cfg.model;
        let embedding = candle_nn::embedding(cfg.bench.vocab, m.embedding_dim, vb.pp("embedding"))?;
        let layers = (0..m.layers)
            .map(|k| {
                let input = if k == 0 { m.embedding_dim } else { m.hidden };
                let c = candle_nn::rnn::LSTMConfig { layer_idx: k, ..Default::default() };
                candle_nn::rnn::lstm(input, m.hidden, c, vb.pp("lstm"))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let head = candle_nn::linear(m.hidden, 2, vb.pp("head"))?;
        Ok(Self { embedding, layers, head })
    }

    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let mut x = self.embedding.forward(ids)?;
        let mut last = None;
        for (k, l) in self.layers.iter().enumerate() {
            let states = l.seq(&x)?;
            last = states.last().map(|s| s.h().clone());
            if k + 1 < self.layers.len() {
                x = l.states_to_tensor(&states)?;
            }
        }
        let h = last.ok_or_else(|| anyhow!("empty sequence"))?;
        Ok(self.head.forward(&h)?)
    }
}

fn bench_candle_nn(cfg: &Config, data: &[Batch], steps: usize, dev: &Device) -> Result<PathResult> {
    let bc = &cfg.bench;
    let varmap = VarMap::new();
    let net = NnModel::new(cfg, model::init::seeded_var_builder(&varmap, cfg.run.seed, DType::F32, dev))?;
    let t = &cfg.train;
    let p = candle_nn::ParamsAdamW { lr: t.lr, beta1: t.beta1, beta2: t.beta2, eps: t.eps, weight_decay: 0.0 };
    let mut opt = candle_nn::AdamW::new(varmap.all_vars(), p)?;
    let train = time_steps(bc.warmup, steps, |i| {
        let b = &data[i % data.len()];
        let logits = net.forward(&b.ids)?;
        let loss = cross_entropy(&logits, &b.labels, &[])?;
        opt.backward_step(&loss)?;
        std::hint::black_box(loss.to_scalar::<f32>()?);
        Ok(())
    })?;
    let inet = NnModel::new(cfg, frozen(&varmap, dev))?;
    let infer = time_steps(bc.warmup, steps, |i| {
        let b = &data[i % data.len()];
        std::hint::black_box(inet.forward(&b.ids)?.to_vec2::<f32>()?);
        Ok(())
    })?;
    Ok(PathResult { train: Some(train), infer, split: None })
}

/// LSTM FLOPs of one forward pass: 2·B·T·G·H·(I+H) per layer and direction (G = 4 gates).
pub fn lstm_forward_flops(cfg: &Config) -> f64 {
    let m = &cfg.model;
    let (b, t) = (cfg.train.batch_size as f64, cfg.bench.seq_len as f64);
    let dirs = if m.bidirectional { 2.0 } else { 1.0 };
    let h = m.hidden as f64;
    (0..m.layers)
        .map(|k| {
            let i = if k == 0 { m.embedding_dim as f64 } else { dirs * h };
            2.0 * b * t * 4.0 * h * (i + h) * dirs
        })
        .sum()
}

/// The `[bench]` section's ranges, with the file's name.
fn validate(cfg: &Config, source: &std::path::Path) -> Result<()> {
    cfg.bench.validate().map_err(|e| match e.key {
        Some(key) => anyhow!("{}: key `{key}`: {}", source.display(), e.message),
        None => anyhow!("{}: {}", source.display(), e.message),
    })
}

/// `train bench`: prints the table (and with `--json` one JSON object last).
pub fn cli(args: &BenchArgs) -> Result<()> {
    let sets = args.sets.iter().map(|s| Override::parse(s)).collect::<Result<Vec<_>>>()?;
    let cfg = config::load(&args.config, &sets)?.config;
    validate(&cfg, &args.config)?;
    let wanted: Vec<&str> = args.paths.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if let Some(bad) = wanted.iter().find(|p| !PATHS.contains(p)) {
        bail!(
            "--paths: unknown path `{bad}` (expected a comma-separated list of fused, ops, candle_nn, int8, bf16, sparse50, sparse90)"
        );
    }
    let threads = crate::threads::effective();
    let dev = cfg.run.device()?;
    let bc = &cfg.bench;
    let m = &cfg.model;
    let tokens = (cfg.train.batch_size * bc.seq_len) as f64;
    let slow = bc.slow_steps.min(bc.steps);
    let flops = lstm_forward_flops(&cfg);
    println!(
        "bench {}: batch {}, seq {}, embedding {}, hidden {}, layers {}{}, vocab {}, {:?}; {threads} threads; load average {}",
        args.config.display(),
        cfg.train.batch_size,
        bc.seq_len,
        m.embedding_dim,
        m.hidden,
        m.layers,
        if m.bidirectional { " (bidirectional)" } else { "" },
        bc.vocab,
        cfg.train.optimizer,
        load_average().unwrap_or_else(|| "?".into())
    );
    println!(
        "medians over {} steps ({} for ops and candle_nn) after {} warm-up; training = forward + backward + optimizer step",
        bc.steps, slow, bc.warmup
    );
    let data = batches(&cfg, 4, &dev)?;
    let mut results: HashMap<&str, PathResult> = HashMap::new();
    let mut rss_after_fused = None;
    for path in PATHS.iter().filter(|p| wanted.contains(p)) {
        if *path == "candle_nn"
            && (m.bidirectional
                || m.cell != model::config::CellKind::Lstm
                || m.variant != model::config::Variant::default())
        {
            println!("  candle_nn: skipped (candle-nn's LSTM is one direction of the vanilla cell)");
            continue;
        }
        let r = match *path {
            "fused" => bench_ours(&cfg, true, &data, bc.steps, &dev)?,
            "ops" => bench_ours(&cfg, false, &data, slow, &dev)?,
            "candle_nn" => bench_candle_nn(&cfg, &data, slow, &dev)?,
            p => bench_compressed(&cfg, p, &data, bc.steps, &dev)?,
        };
        let timings = [("training", r.train, 3.0 * flops), ("inference", Some(r.infer), flops)];
        for (what, t, f) in timings.into_iter().filter_map(|(w, t, f)| t.map(|t| (w, t, f))) {
            println!(
                "  {path:<10} {what:<10} {:>9.2} ms (p10 {:.2}, p90 {:.2}, {} steps) {:>10.0} tokens/s {:>7.1} LSTM GFLOP/s",
                t.median * 1e3,
                t.p10 * 1e3,
                t.p90 * 1e3,
                t.steps,
                tokens / t.median,
                f / t.median / 1e9
            );
        }
        match (&r.split, r.train.is_some()) {
            (Some(split), true) => println!("  {path:<10} training step medians: {split}"),
            (Some(split), false) => println!("  {path:<10} {split}"),
            _ => {}
        }
        if *path == "fused" {
            rss_after_fused = peak_rss_mb();
        }
        results.insert(path, r);
    }
    let ratio = |a: &str, b: &str, f: fn(&PathResult) -> Option<Timing>| match (
        results.get(a).and_then(f),
        results.get(b).and_then(f),
    ) {
        (Some(x), Some(y)) => format!("{:.2}x", y.median / x.median),
        _ => "-".into(),
    };
    println!(
        "  fused / candle_nn: training {}, inference {}; fused / ops: training {}, inference {}",
        ratio("fused", "candle_nn", |r| r.train),
        ratio("fused", "candle_nn", |r| Some(r.infer)),
        ratio("fused", "ops", |r| r.train),
        ratio("fused", "ops", |r| Some(r.infer)),
    );
    let compressed: Vec<String> = INFER_ONLY
        .iter()
        .filter(|p| results.contains_key(*p))
        .map(|p| format!("{p} {}", ratio(p, "fused", |r| Some(r.infer))))
        .collect();
    if !compressed.is_empty() {
        println!("  inference / fused: {}", compressed.join(", "));
    }
    let peak = peak_rss_mb();
    if let Some(p) = rss_after_fused {
        println!("  peak RSS after the fused path: {p:.0} MB; overall {:.0} MB", peak.unwrap_or(f64::NAN));
    }
    if args.json {
        let per = |f: fn(&PathResult) -> Option<Timing>| {
            let mut o = serde_json::Map::new();
            for p in PATHS {
                o.insert(p.into(), results.get(p).and_then(f).map_or(json!(null), |t| json!(tokens / t.median)));
            }
            serde_json::Value::Object(o)
        };
        let out = json!({
            "train_tokens_per_s": per(|r| r.train),
            "infer_tokens_per_s": per(|r| Some(r.infer)),
            "cpu": crate::cpu::model_name(),
            "cpu_info": crate::cpu::describe(),
            "peak_rss_mb": peak,
            "peak_rss_mb_fused": rss_after_fused,
            "threads": threads,
        });
        println!("{out}");
    }
    Ok(())
}
