//! `train export --run DIR --format int8|bf16|sparse [--out DIR2]`: a copy of a finished run
//! whose best checkpoint holds compact tensors (see `model::compress::store`), readable by
//! every subcommand that reads a run.
//!
//! - `int8`: every weight matrix (recurrent, heads, embeddings) as int8 with one f32 scale per
//!   row; the classifier's LSTM and head then run on int8 kernels with dynamic int8
//!   activations, the other tasks in f32 on the dequantised weights.
//! - `bf16`: every weight matrix as bf16 (same kernels / fallback rule, f32 arithmetic).
//! - `sparse`: the recurrent matrices as kept blocks (index + values); meant for a run from
//!   `train prune`, whose zeros it drops (a dense run is refused).
//!
//! The new run directory gets the source's files (config, tokenizers, metrics), the exported
//! `checkpoints/best.safetensors`, and a `summary.json` with an `export` entry (format, file
//! sizes, CPU). Default `--out`: `<run>/export-<format>`.

use crate::rundir::RunDir;
use anyhow::{bail, Context, Result};
use model::compress::{Compressed, Format};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// `train export`'s arguments.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// A finished run (its best checkpoint is exported).
    #[arg(long)]
    pub run: PathBuf,
    /// int8, bf16 or sparse.
    #[arg(long)]
    pub format: String,
    /// The new run directory (default `<run>/export-<format>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// One line on stderr when a compressed checkpoint is loaded: which kernels run.
pub fn report_loaded(c: &Compressed, kernels: bool) {
    if kernels {
        eprintln!("{} checkpoint: the LSTM and head run on {} kernels", c.format, c.format);
    } else {
        eprintln!(
            "{} checkpoint: this task has no {} kernel; it runs in f32 on the dequantised weights (same numbers as the file)",
            c.format, c.format
        );
    }
}

/// `train export`.
pub fn cli(a: &ExportArgs) -> Result<()> {
    let format = Format::parse(&a.format).map_err(|e| anyhow::anyhow!("--format: {e}"))?;
    let out = a.out.clone().unwrap_or_else(|| a.run.join(format!("export-{format}")));
    let report = export(&a.run, format, &out)?;
    println!(
        "{}: {} checkpoint {} bytes ({:.1}% of the source's {} bytes; {} matrices compressed)",
        out.display(),
        format,
        report["bytes"],
        100.0 * report["ratio"].as_f64().unwrap_or(0.0),
        report["source_bytes"],
        report["matrices"]
    );
    Ok(())
}

/// Exports `run`'s best checkpoint to the run directory `out`; returns the `export` record
/// (also written into `out/summary.json`).
pub fn export(run: &Path, format: Format, out: &Path) -> Result<Value> {
    let src = RunDir::open(run)?;
    // The run-loading rule: a run whose config disagrees with its files is refused here too.
    src.load_config()?;
    if !src.best().exists() {
        bail!("{} has no best checkpoint yet ({}); let the run finish first", run.display(), src.best().display());
    }
    if out.join("config.toml").exists() {
        bail!("{} already holds a run; remove it to export again", out.display());
    }
    let ckpt = model::checkpoint::read(src.best(), &candle_core::Device::Cpu)?;
    if let Some(c) = &ckpt.compressed {
        bail!("{} is already a {} export; export from the f32 run", src.best().display(), c.format);
    }
    let mut owned = Vec::new();
    let mut names: Vec<&String> = ckpt.tensors.keys().collect();
    names.sort();
    for name in names {
        let t = &ckpt.tensors[name];
        if format.applies_to(name, t.dims()) {
            let v = t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            owned.push((name.clone(), v, t.dims().to_vec()));
        }
    }
    if format == Format::Sparse {
        let (zeros, all) =
            owned.iter().fold((0, 0), |(z, n), (_, v, _)| (z + v.iter().filter(|x| **x == 0.0).count(), n + v.len()));
        if zeros * 4 < all {
            bail!(
                "{}: only {zeros} of {all} recurrent weights are zero; the sparse format pays from about 50% \
                 sparsity: prune the run first (`train prune --run {} --sparsity 0.9 --block 8x1`)",
                src.best().display(),
                run.display()
            );
        }
    }
    let c = Compressed::from_tensors(format, owned.iter().map(|(n, v, d)| (n.as_str(), &v[..], &d[..])));
    if c.matrices.is_empty() {
        bail!("{}: no tensor of this model is stored in the {format} format", src.best().display());
    }
    let dst = RunDir::ensure(out.to_path_buf())?;
    // The run's own files (config, tokenizers, normaliser, metrics, ...); not its checkpoints.
    for entry in std::fs::read_dir(&src.root).with_context(|| format!("reading {}", src.root.display()))? {
        let p = entry?.path();
        if p.is_file() && p.file_name().is_some_and(|n| n != "summary.json") {
            let to = dst.root.join(p.file_name().expect("a file name"));
            std::fs::copy(&p, &to).with_context(|| format!("copying {} to {}", p.display(), to.display()))?;
        }
    }
    let named: Vec<(String, candle_core::Tensor)> = ckpt.tensors.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    model::checkpoint::save_compressed(dst.best(), &named, ckpt.config.as_ref(), &c)?;
    let bytes = std::fs::metadata(dst.best())?.len();
    let source_bytes = std::fs::metadata(src.best())?.len();
    let record = json!({
        "format": format.name(),
        "source": src.root.display().to_string(),
        "bytes": bytes,
        "source_bytes": source_bytes,
        "ratio": bytes as f64 / source_bytes as f64,
        "matrices": c.matrices.len(),
        "cpu": crate::cpu::model_name(),
    });
    let mut summary = match std::fs::read_to_string(src.summary()) {
        Ok(s) => serde_json::from_str::<serde_json::Map<String, Value>>(&s)
            .with_context(|| format!("parsing {}", src.summary().display()))?,
        Err(_) => serde_json::Map::new(),
    };
    summary.insert("export".into(), record.clone());
    dst.write_summary(&summary)?;
    Ok(record)
}
