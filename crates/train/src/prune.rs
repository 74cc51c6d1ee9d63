//! `train prune`: magnitude pruning of the recurrent weight matrices, with the masks held
//! through fine-tuning (a sparse LSTM, seed §8.1).
//!
//! For each sparsity s and each matrix W_ih, W_hh of every layer and direction (tensors
//! `*weight_ih_l*` and `*weight_hh_l*`) on its own, the ⌊s·n⌉ entries of smallest |w| are set
//! to zero (ties broken by position, so the count is exact). Embeddings, biases, peepholes
//! and the head stay dense. Fine-tuning then keeps the pruned entries at exactly zero twice
//! over: their gradients are zeroed before the optimizer sees them (so gradient clipping and
//! Adam's moments see the pruned network), and the mask is multiplied in again after every
//! update (so no penalty or decay term can revive them).
//!
//! Each sparsity becomes a normal run directory `<run>/pruned-<s>/` (config, tokenizer,
//! metrics.jsonl, curves.svg, summary.json, checkpoints/best|last), so `train predict` and
//! `train eval` read it like any run. `<run>/prune_results.{json,md}` tabulate accuracy
//! against sparsity and non-zero parameter counts.

use crate::config::Config;
use crate::optim::Optimizer;
use crate::overrides::Override;
use crate::rundir::RunDir;
use crate::task::{self, SplitName};
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Tensor, Var};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::Instant;

/// Whether a parameter is one of the pruned recurrent matrices.
pub fn is_pruned_matrix(name: &str) -> bool {
    let base = name.rsplit('.').next().unwrap_or(name);
    base.starts_with("weight_ih_l") || base.starts_with("weight_hh_l")
}

/// The 0/1 mask keeping the largest-magnitude `1 − sparsity` of `w` (ties: earlier index pruned first).
pub fn magnitude_mask(w: &[f32], sparsity: f64) -> Vec<f32> {
    let n = w.len();
    let k = ((sparsity * n as f64).round() as usize).min(n);
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| w[a].abs().partial_cmp(&w[b].abs()).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b)));
    let mut mask = vec![1.0f32; n];
    for &i in &idx[..k] {
        mask[i] = 0.0;
    }
    mask
}

/// A pruned parameter and its mask (same shape and dtype).
pub struct Masked {
    /// The tensor's name.
    pub name: String,
    /// The pruned variable.
    pub var: Var,
    /// 0/1 mask, multiplied into the variable and its gradient.
    pub mask: Tensor,
}

/// Builds the masks for every recurrent matrix of `varmap` (entry by entry) and applies them.
pub fn prune_varmap(varmap: &candle_nn::VarMap, sparsity: f64) -> Result<Vec<Masked>> {
    prune_varmap_blocks(varmap, sparsity, None)
}

/// [`prune_varmap`] by blocks: with `block` (e.g. 8×1: 8 output rows × 1 input column), whole
/// blocks of each matrix with the smallest L1 norm are zeroed (`model::compress::sparse::block_mask`),
/// the layout the block-sparse kernel skips; `None` (or 1×1) prunes entry by entry as before.
pub fn prune_varmap_blocks(
    varmap: &candle_nn::VarMap,
    sparsity: f64,
    block: Option<model::compress::sparse::Block>,
) -> Result<Vec<Masked>> {
    let data = varmap.data().lock().map_err(|_| anyhow!("varmap lock poisoned"))?;
    let mut names: Vec<&String> = data.keys().filter(|n| is_pruned_matrix(n)).collect();
    names.sort();
    if names.is_empty() {
        bail!("the model has no recurrent weight matrices (weight_ih_l*/weight_hh_l*) to prune");
    }
    let mut out = Vec::new();
    for name in names {
        let var = data[name].clone();
        let w = var.as_tensor().to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let m = match block.filter(|b| b.rows * b.cols > 1) {
            Some(b) => {
                let (rows, cols) = var.dims2()?;
                model::compress::sparse::block_mask(&w, rows, cols, b, sparsity)
            }
            None => magnitude_mask(&w, sparsity),
        };
        let mask = Tensor::from_vec(m, var.shape(), var.device())?.to_dtype(var.dtype())?;
        var.set(&(var.as_tensor() * &mask)?)?;
        out.push(Masked { name: name.clone(), var, mask });
    }
    Ok(out)
}

/// Multiplies every mask into its parameter again.
pub fn reapply(masks: &[Masked]) -> Result<()> {
    for m in masks {
        m.var.set(&(m.var.as_tensor() * &m.mask)?)?;
    }
    Ok(())
}

/// (non-zero entries, entries) over the recurrent matrices, and over every parameter.
pub fn nonzero_counts(varmap: &candle_nn::VarMap) -> Result<((usize, usize), (usize, usize))> {
    let data = varmap.data().lock().map_err(|_| anyhow!("varmap lock poisoned"))?;
    let (mut rec, mut all) = ((0, 0), (0, 0));
    for (name, var) in data.iter() {
        let w = var.as_tensor().to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let nz = w.iter().filter(|x| **x != 0.0).count();
        all.0 += nz;
        all.1 += w.len();
        if is_pruned_matrix(name) {
            rec.0 += nz;
            rec.1 += w.len();
        }
    }
    Ok((rec, all))
}

/// Parses "0.5,0.8,0.9".
pub fn parse_sparsities(s: &str) -> Result<Vec<f64>> {
    let v: Vec<f64> = s
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let x: f64 = p.trim().parse().map_err(|_| anyhow!("--sparsity: {p:?} is not a number"))?;
            if !(0.0..1.0).contains(&x) {
                bail!("--sparsity: {x} is outside [0, 1)");
            }
            Ok(x)
        })
        .collect::<Result<_>>()?;
    if v.is_empty() {
        bail!("--sparsity: expected a comma-separated list such as 0.5,0.8,0.9");
    }
    Ok(v)
}

/// The name of a sparsity's run directory: `pruned-0.8` (entry by entry), `pruned-0.8-8x1`
/// (by 8×1 blocks).
pub fn dir_name(s: f64) -> String {
    format!("pruned-{s}")
}

fn dir_name_block(s: f64, block: Option<model::compress::sparse::Block>) -> String {
    match block.filter(|b| b.rows * b.cols > 1) {
        Some(b) => format!("pruned-{s}-{b}"),
        None => dir_name(s),
    }
}

/// Arguments of `train prune`.
#[derive(Debug, Clone, clap::Args)]
pub struct PruneArgs {
    /// A finished run (its best checkpoint is pruned).
    #[arg(long)]
    pub run: PathBuf,
    /// Fractions of each recurrent matrix to zero, comma-separated.
    #[arg(long, default_value = "0.5,0.8,0.9")]
    pub sparsity: String,
    /// Prune whole blocks ROWSxCOLS of each matrix (rows = output units: 8x1, 16x1, 1x8, 1x16,
    /// 4x4), the layout `train export --format sparse` stores and its kernel skips; default 1x1
    /// (entry by entry).
    #[arg(long, default_value = "1x1")]
    pub block: String,
    /// Structured pruning instead: remove the `sparsity` share of each LSTM layer's hidden
    /// units (classifier runs), which shrinks every matrix; `<run>/pruned-units-<s>/`.
    #[arg(long, conflicts_with = "block")]
    pub structured: bool,
    /// Epochs of fine-tuning with the masks held (0 = prune only).
    #[arg(long, default_value_t = 0)]
    pub finetune_epochs: usize,
    /// Override a config key of the fine-tuning (e.g. train.lr=0.0005), repeatable.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub sets: Vec<String>,
    /// No per-epoch lines or progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// One row of the results table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PruneRow {
    /// Share of recurrent weights set to zero.
    pub sparsity: f64,
    /// The pruned run's directory name.
    pub run: String,
    /// Non-zero recurrent weights after fine-tuning.
    pub recurrent_nonzero: usize,
    /// Recurrent weights in all.
    pub recurrent_total: usize,
    /// Non-zero parameters after fine-tuning.
    pub params_nonzero: usize,
    /// Parameters in all.
    pub params_total: usize,
    /// Validation metrics right after pruning, before fine-tuning.
    pub validation_pruned: Option<f64>,
    /// Validation metric after fine-tuning (best checkpoint).
    pub validation: Option<f64>,
    /// Test metric of the best checkpoint.
    pub test: Option<f64>,
    /// Fine-tuning epochs run.
    pub finetune_epochs: usize,
    /// Seconds the pruning and fine-tuning took.
    pub wall_seconds: f64,
}

/// `train prune`.
pub fn cli(a: &PruneArgs) -> Result<()> {
    let src = RunDir::open(&a.run)?;
    if !src.best().exists() {
        bail!("{} has no best checkpoint yet ({}); let the run finish first", a.run.display(), src.best().display());
    }
    let sparsities = parse_sparsities(&a.sparsity)?;
    let block = Some(model::compress::sparse::Block::parse(&a.block).map_err(|e| anyhow!("--block: {e}"))?);
    let sets: Vec<Override> = a.sets.iter().map(|s| Override::parse(s)).collect::<Result<_>>()?;
    let mut cfg = crate::config::load(&src.config(), &sets)?.config;
    src.check(&cfg)?;
    if a.finetune_epochs > 0 {
        cfg.train.epochs = a.finetune_epochs;
        cfg.train.max_steps = 0;
    }
    for s in &sparsities {
        let d = src.root.join(if a.structured { format!("pruned-units-{s}") } else { dir_name_block(*s, block) });
        if d.join("config.toml").exists() {
            bail!("{} already exists; remove it to prune again at sparsity {s}", d.display());
        }
    }
    let metric = cfg.train.early_stopping_metric.clone();
    for &s in &sparsities {
        let row = if a.structured {
            prune_one_units(&src, &cfg, s, a.finetune_epochs, a.quiet)?
        } else {
            prune_one_blocks(&src, &cfg, s, block, a.finetune_epochs, a.quiet)?
        };
        if !a.quiet {
            eprintln!(
                "sparsity {s}: {} of {} recurrent weights kept; validation {metric} {} after pruning, {} after fine-tuning; test {}",
                row.recurrent_nonzero,
                row.recurrent_total,
                fmt(row.validation_pruned),
                fmt(row.validation),
                fmt(row.test)
            );
        }
    }
    // The table covers every pruned run of this source, earlier invocations included.
    let mut rows = vec![baseline_row(&src, &cfg, &metric)?];
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&src.root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("summary.json").exists())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("pruned-")))
        .collect();
    dirs.sort();
    for d in dirs {
        rows.push(row_from_summary(&d, &metric)?);
    }
    rows.sort_by(|a, b| a.sparsity.total_cmp(&b.sparsity).then(a.finetune_epochs.cmp(&b.finetune_epochs)));
    crate::atomic::write_json(&src.root.join("prune_results.json"), &json!({"metric": metric, "rows": rows}))?;
    let md = markdown(&rows, &metric);
    crate::atomic::write(&src.root.join("prune_results.md"), md.as_bytes())?;
    print!("{md}");
    Ok(())
}

fn fmt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "–".into())
}

/// The table of the results.
pub fn markdown(rows: &[PruneRow], metric: &str) -> String {
    let mut md = format!(
        "| sparsity | recurrent weights kept | non-zero parameters | validation {metric} after pruning | validation {metric} | test {metric} | fine-tune epochs |\n|---|---|---|---|---|---|---|\n"
    );
    for r in rows {
        md.push_str(&format!(
            "| {} | {} / {} | {} / {} | {} | {} | {} | {} |\n",
            r.sparsity,
            r.recurrent_nonzero,
            r.recurrent_total,
            r.params_nonzero,
            r.params_total,
            fmt(r.validation_pruned),
            fmt(r.validation),
            fmt(r.test),
            r.finetune_epochs
        ));
    }
    md
}

/// The unpruned run as row 0 (its summary's numbers, its best checkpoint's counts).
fn baseline_row(src: &RunDir, cfg: &Config, metric: &str) -> Result<PruneRow> {
    let ckpt = model::checkpoint::read(src.best(), &candle_core::Device::Cpu)?;
    let (mut rec, mut all) = ((0, 0), (0, 0));
    for (name, t) in &ckpt.tensors {
        let w = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let nz = w.iter().filter(|x| **x != 0.0).count();
        all = (all.0 + nz, all.1 + w.len());
        if is_pruned_matrix(name) {
            rec = (rec.0 + nz, rec.1 + w.len());
        }
    }
    let summary: Value =
        std::fs::read_to_string(src.summary()).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
    let get = |split: &str| summary.get(split).and_then(|s| s.get(metric)).and_then(Value::as_f64);
    let _ = cfg;
    Ok(PruneRow {
        sparsity: 0.0,
        run: src.root.display().to_string(),
        recurrent_nonzero: rec.0,
        recurrent_total: rec.1,
        params_nonzero: all.0,
        params_total: all.1,
        validation_pruned: get("validation"),
        validation: get("validation"),
        test: get("test"),
        finetune_epochs: 0,
        wall_seconds: summary.get("wall_seconds").and_then(Value::as_f64).unwrap_or(f64::NAN),
    })
}

/// A row of the table from a pruned run's summary.json.
fn row_from_summary(dir: &std::path::Path, metric: &str) -> Result<PruneRow> {
    let p = dir.join("summary.json");
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?)
            .with_context(|| format!("parsing {}", p.display()))?;
    let num = |k: &str| s.get(k).and_then(Value::as_f64);
    let count = |k: &str| {
        s.get(k).and_then(Value::as_u64).map(|v| v as usize).ok_or_else(|| anyhow!("{}: no `{k}`", p.display()))
    };
    let get = |split: &str| s.get(split).and_then(|x| x.get(metric)).and_then(Value::as_f64);
    Ok(PruneRow {
        sparsity: num("sparsity").ok_or_else(|| anyhow!("{}: no `sparsity`", p.display()))?,
        run: dir.display().to_string(),
        recurrent_nonzero: count("recurrent_nonzero")?,
        recurrent_total: count("recurrent_total")?,
        params_nonzero: count("parameters_nonzero")?,
        params_total: count("parameters")?,
        validation_pruned: num(&format!("validation_{metric}_after_pruning")),
        validation: get("validation"),
        test: get("test"),
        finetune_epochs: count("epochs")?,
        wall_seconds: num("wall_seconds").unwrap_or(f64::NAN),
    })
}

/// Prunes the source run's best weights at `sparsity` into `<run>/pruned-<s>/`, fine-tunes for
/// `epochs` with the masks held, and evaluates the best of the fine-tuned (or just pruned)
/// weights on validation and test.
pub fn prune_one(src: &RunDir, cfg: &Config, sparsity: f64, epochs: usize, quiet: bool) -> Result<PruneRow> {
    prune_one_blocks(src, cfg, sparsity, None, epochs, quiet)
}

/// [`prune_one`] by blocks (`block`; see [`prune_varmap_blocks`]) into `<run>/pruned-<s>-<block>/`.
pub fn prune_one_blocks(
    src: &RunDir,
    cfg: &Config,
    sparsity: f64,
    block: Option<model::compress::sparse::Block>,
    epochs: usize,
    quiet: bool,
) -> Result<PruneRow> {
    prune_and_finetune(src, cfg, sparsity, Method::Masks(block), epochs, quiet)
}

/// Structured pruning ([`crate::prune_units`]) of the `sparsity` share of hidden units, then
/// fine-tuning of the smaller model, into `<run>/pruned-units-<s>/`.
pub fn prune_one_units(src: &RunDir, cfg: &Config, sparsity: f64, epochs: usize, quiet: bool) -> Result<PruneRow> {
    prune_and_finetune(src, cfg, sparsity, Method::Units, epochs, quiet)
}

/// How a model is pruned.
#[derive(Debug, Clone, Copy)]
enum Method {
    /// Zeroed entries or blocks, masks held through fine-tuning.
    Masks(Option<model::compress::sparse::Block>),
    /// Hidden units removed.
    Units,
}

fn prune_and_finetune(
    src: &RunDir,
    cfg: &Config,
    sparsity: f64,
    method: Method,
    epochs: usize,
    quiet: bool,
) -> Result<PruneRow> {
    let started = Instant::now();
    let (name, mut run_cfg) = match method {
        Method::Masks(block) => (dir_name_block(sparsity, block), cfg.clone()),
        Method::Units => (format!("pruned-units-{sparsity}"), cfg.clone()),
    };
    let shape = crate::prune_units::Shape {
        hidden: cfg.model.hidden,
        layers: cfg.model.layers,
        dirs: if cfg.model.bidirectional { 2 } else { 1 },
        gates: cfg.model.cell.blocks(cfg.model.variant),
    };
    let keep = ((1.0 - sparsity) * cfg.model.hidden as f64).round().max(1.0) as usize;
    if let Method::Units = method {
        if cfg.task != crate::config::TaskKind::Classify {
            bail!(
                "--structured prunes classifier runs (task = \"classify\"); this run's task is {:?}",
                cfg.task.name()
            );
        }
        run_cfg.model.hidden = keep;
    }
    let cfg = &run_cfg;
    let dir = RunDir::create(src.root.join(name))?;
    crate::atomic::write(&dir.config(), cfg.to_toml()?.as_bytes())?;
    for f in std::fs::read_dir(&src.root)? {
        let p = f?.path();
        let name = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        if name.starts_with("tokenizer") && name.ends_with(".json") {
            std::fs::copy(&p, dir.root.join(&name)).with_context(|| format!("copying {}", p.display()))?;
        }
    }
    let mut task = task::build(cfg, &dir, true)?;
    let masks = match method {
        Method::Masks(block) => {
            model::checkpoint::load_into_varmap(src.best(), task.varmap())?;
            prune_varmap_blocks(task.varmap(), sparsity, block)?
        }
        Method::Units => {
            let ckpt = model::checkpoint::read(src.best(), &candle_core::Device::Cpu)?;
            let kept = crate::prune_units::choose_units(&ckpt.tensors, shape, keep)?;
            let small = crate::prune_units::slice(&ckpt.tensors, shape, &kept)?;
            let data = task.varmap().data().lock().map_err(|_| anyhow!("varmap lock poisoned"))?;
            for (n, var) in data.iter() {
                let t = small.get(n).ok_or_else(|| anyhow!("structured pruning produced no `{n}`"))?;
                if t.dims() != var.dims() {
                    bail!("`{n}`: sliced to {:?}, the smaller model has {:?}", t.dims(), var.dims());
                }
                var.set(&t.to_device(var.device())?.to_dtype(var.dtype())?)?;
            }
            Vec::new()
        }
    };
    let metric = &cfg.train.early_stopping_metric;
    let eval0 = task.evaluate(SplitName::Validation)?;
    let pruned_value = eval0.get(metric).and_then(Value::as_f64);
    let mut lines = Vec::new();
    let mut line = Map::new();
    line.insert("epoch".into(), json!(-1));
    line.insert("step".into(), json!(0));
    line.insert("split".into(), json!("validation"));
    line.insert("pruned".into(), json!(sparsity));
    line.extend(eval0);
    lines.push(serde_json::to_string(&line)?);
    dir.write_metric_lines(&lines)?;
    crate::trainer::save_weights(&dir.best(), task.as_ref())?;
    crate::trainer::save_weights(&dir.last(), task.as_ref())?;
    let mut best = pruned_value;
    let mut best_epoch: Option<usize> = None;
    let better = |v: f64, b: Option<f64>| match (b, cfg.train.early_stopping_mode) {
        (None, _) => true,
        (Some(b), crate::config::MetricMode::Max) => v > b,
        (Some(b), crate::config::MetricMode::Min) => v < b,
    };

    let params = crate::trainer::collect_params(task.as_ref());
    let mut optimizer = Optimizer::new(&cfg.train);
    let mut rng = model::rng::SeededRng::new(cfg.run.seed, "prune-dropout");
    let steps_per_epoch = task.start_epoch(0)?;
    let total = epochs * steps_per_epoch;
    let mut step = 0usize;
    for epoch in 0..epochs {
        let n = task.start_epoch(epoch)?;
        let (mut loss_sum, mut seen, mut correct, mut has_acc) = (0.0f64, 0usize, 0usize, false);
        for b in 0..n {
            let out = task.train_step(b, &mut rng)?;
            let loss = out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !loss.is_finite() {
                bail!("fine-tuning at sparsity {sparsity}: loss is {loss} at step {step}");
            }
            let mut grads = out.loss.backward()?;
            for m in &masks {
                if let Some(g) = grads.remove(m.var.as_tensor()) {
                    grads.insert(m.var.as_tensor(), (g * &m.mask)?);
                }
            }
            let lr = crate::schedule::lr_at(&cfg.train, step, total);
            let report = optimizer.step_sparse(&params, &grads, &task.sparse_grads(), lr)?;
            reapply(&masks)?;
            step += 1;
            loss_sum += (loss + report.penalty) * out.examples as f64;
            seen += out.examples;
            if let Some(c) = out.correct {
                correct += c;
                has_acc = true;
            }
        }
        let eval = task.evaluate(SplitName::Validation)?;
        let mut line = Map::new();
        line.insert("epoch".into(), json!(epoch));
        line.insert("step".into(), json!(step));
        line.insert("split".into(), json!("validation"));
        line.insert("train_loss".into(), json!(loss_sum / seen.max(1) as f64));
        if has_acc {
            line.insert(format!("train_{metric}"), json!(correct as f64 / seen.max(1) as f64));
        }
        let value = eval.get(metric).and_then(Value::as_f64);
        line.extend(eval);
        lines.push(serde_json::to_string(&line)?);
        dir.write_metric_lines(&lines)?;
        let _ = crate::curves::write_for_run(&dir, metric);
        if !quiet {
            eprintln!("  sparsity {sparsity} fine-tune epoch {epoch}: validation {metric} {}", fmt(value));
        }
        if let Some(v) = value {
            if better(v, best) {
                best = Some(v);
                best_epoch = Some(epoch);
                crate::trainer::save_weights(&dir.best(), task.as_ref())?;
            }
        }
        crate::trainer::save_weights(&dir.last(), task.as_ref())?;
    }
    model::checkpoint::load_into_varmap(dir.best(), task.varmap())?;
    let ((rnz, rtot), (anz, atot)) = nonzero_counts(task.varmap())?;
    let mut summary = Map::new();
    for split in [SplitName::Validation, SplitName::Test] {
        let m = task.evaluate(split)?;
        let mut line = Map::new();
        line.insert("epoch".into(), json!(best_epoch));
        line.insert("step".into(), json!(step));
        line.insert("split".into(), json!(split.name()));
        line.insert("final".into(), json!(true));
        line.extend(m.clone());
        lines.push(serde_json::to_string(&line)?);
        summary.insert(split.name().into(), Value::Object(m));
    }
    dir.write_metric_lines(&lines)?;
    let get = |split: &str| summary.get(split).and_then(|s| s.get(metric)).and_then(Value::as_f64);
    let (validation, test) = (get("validation"), get("test"));
    let wall = started.elapsed().as_secs_f64();
    summary.insert("pruned_from".into(), json!(src.root.display().to_string()));
    summary.insert("sparsity".into(), json!(sparsity));
    match method {
        Method::Masks(Some(b)) if b.rows * b.cols > 1 => {
            summary.insert("block".into(), json!(b.to_string()));
        }
        Method::Units => {
            summary.insert("structured".into(), json!({"hidden_before": shape.hidden, "hidden": keep}));
        }
        _ => {}
    }
    summary.insert("recurrent_nonzero".into(), json!(rnz));
    summary.insert("recurrent_total".into(), json!(rtot));
    summary.insert("parameters_nonzero".into(), json!(anz));
    summary.insert("parameters".into(), json!(atot));
    summary.insert(format!("validation_{metric}_after_pruning"), json!(pruned_value));
    summary.insert("best_epoch".into(), json!(best_epoch));
    summary.insert("epochs".into(), json!(epochs));
    summary.insert("steps".into(), json!(step));
    summary.insert("wall_seconds".into(), json!(wall));
    summary.insert("seed".into(), json!(cfg.run.seed));
    summary.insert("threads".into(), json!(crate::threads::effective()));
    summary.insert("versions".into(), crate::versions());
    dir.write_summary(&summary)?;
    Ok(PruneRow {
        sparsity,
        run: dir.root.display().to_string(),
        recurrent_nonzero: rnz,
        recurrent_total: rtot,
        params_nonzero: anz,
        params_total: atot,
        validation_pruned: pruned_value,
        validation,
        test,
        finetune_epochs: epochs,
        wall_seconds: wall,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_prunes_exactly_the_smallest() {
        let w = [0.5f32, -0.1, 0.3, -0.9, 0.0, 0.2, 0.1, -0.4];
        let m = magnitude_mask(&w, 0.5);
        assert_eq!(m, vec![1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
        // Ties (|−0.1| = |0.1|): the earlier index goes first.
        let m = magnitude_mask(&w, 0.25);
        assert_eq!(m.iter().filter(|x| **x == 0.0).count(), 2);
        assert_eq!((m[4], m[1], m[6]), (0.0, 0.0, 1.0));
        assert!(magnitude_mask(&w, 0.0).iter().all(|x| *x == 1.0));
    }

    #[test]
    fn names_and_sparsities() {
        assert!(is_pruned_matrix("lstm.weight_ih_l0"));
        assert!(is_pruned_matrix("lstm.weight_hh_l1_reverse"));
        assert!(!is_pruned_matrix("lstm.bias_ih_l0"));
        assert!(!is_pruned_matrix("embedding.weight"));
        assert_eq!(parse_sparsities("0.5, 0.8,0.9").unwrap(), vec![0.5, 0.8, 0.9]);
        assert!(parse_sparsities("1.0").is_err());
        assert!(parse_sparsities("x").unwrap_err().to_string().contains("\"x\""));
        assert_eq!(dir_name(0.8), "pruned-0.8");
    }

    #[test]
    fn masks_hold_through_an_update() {
        let varmap = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &candle_core::Device::Cpu);
        let w =
            vb.get_with_hints((4, 5), "lstm.weight_hh_l0", candle_nn::Init::Randn { mean: 0.0, stdev: 1.0 }).unwrap();
        let _b = vb.get_with_hints(4, "lstm.bias_hh_l0", candle_nn::Init::Const(0.5)).unwrap();
        let masks = prune_varmap(&varmap, 0.8).unwrap();
        assert_eq!(masks.len(), 1);
        let ((nz, tot), (anz, atot)) = nonzero_counts(&varmap).unwrap();
        assert_eq!((nz, tot, anz, atot), (4, 20, 8, 24));
        // A dense update revives nothing once the mask is re-applied.
        masks[0].var.set(&(w.ones_like().unwrap())).unwrap();
        reapply(&masks).unwrap();
        assert_eq!(nonzero_counts(&varmap).unwrap().0, (4, 20));
    }
}
