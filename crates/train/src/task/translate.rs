//! Translation (`task = "translate"`, Multi30k): sentence pairs → BPE tokenizers (per
//! language, or one joint) → [`PairBatcher`] → [`Seq2Seq`] with attention → label-smoothed
//! cross-entropy under teacher forcing; validation perplexity and BLEU each epoch; test BLEU
//! and chrF (sacreBLEU-exact, [`crate::bleu`]) on detokenized beam-search output.
//!
//! Run-directory files: `tokenizer_src.json` and `tokenizer_tgt.json`, or one
//! `tokenizer.json` when `tokenizer.joint = true`.

use super::{Registration, SplitName, StepOutput, Task};
use crate::config::{Config, TaskKind};
use crate::rundir::RunDir;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use data::batch::{BatchOptions, PairBatch, PairBatcher};
use data::tokenizer::Tok;
use data::PairExample;
use model::rng::SeededRng;
use model::seq2seq::{DecodeOptions, Seq2Seq, Seq2SeqConfig};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// How the registry builds this task and predicts with its runs.
pub const REGISTRATION: Registration = Registration {
    build: |cfg, dir, existing_run| Ok(Box::new(TranslateTask::new(cfg, dir, existing_run)?)),
    predict: predict_cli,
};

/// Source and target tokenizers (the same one when joint).
pub struct Tokenizers {
    /// Reads the source language.
    pub src: Tok,
    /// Reads and writes the target language.
    pub tgt: Tok,
}

fn tokenizer_paths(dir: &RunDir, joint: bool) -> (PathBuf, PathBuf) {
    if joint {
        (dir.tokenizer(), dir.tokenizer())
    } else {
        (dir.root.join("tokenizer_src.json"), dir.root.join("tokenizer_tgt.json"))
    }
}

fn load_tok(path: &Path) -> Result<Tok> {
    Tok::load(path).with_context(|| format!("loading {}", path.display()))
}

impl Tokenizers {
    /// The tokenizers a run stored.
    pub fn load(dir: &RunDir, joint: bool) -> Result<Self> {
        let (s, t) = tokenizer_paths(dir, joint);
        Ok(Self { src: load_tok(&s)?, tgt: load_tok(&t)? })
    }

    fn fit(cfg: &Config, dir: &RunDir, corpus: &data::Translation) -> Result<Self> {
        let (sp, tp) = tokenizer_paths(dir, cfg.tokenizer.joint);
        let build = |texts: Vec<&str>, what: &str| {
            data::tokenizer::build_tokenizer(&cfg.tokenizer, texts.into_iter())
                .with_context(|| format!("building the {what} tokenizer"))
        };
        let save = |t: &Tok, p: &Path| t.save(p).with_context(|| format!("writing {}", p.display()));
        if cfg.tokenizer.joint {
            let t = build(corpus.train_src().chain(corpus.train_tgt()).collect(), "joint")?;
            save(&t, &sp)?;
            Ok(Self { src: t.clone(), tgt: t })
        } else {
            let s = build(corpus.train_src().collect(), "source")?;
            let t = build(corpus.train_tgt().collect(), "target")?;
            save(&s, &sp)?;
            save(&t, &tp)?;
            Ok(Self { src: s, tgt: t })
        }
    }

    /// Source ids of each text; an empty one gets a single UNK so every length is ≥ 1.
    pub fn encode_src<S: AsRef<str> + Sync>(&self, texts: &[S], max_len: Option<usize>) -> Result<Vec<Vec<u32>>> {
        let mut seqs = self.src.encode_all(texts)?;
        for s in seqs.iter_mut() {
            if let Some(m) = max_len {
                s.truncate(m);
            }
            if s.is_empty() {
                s.push(self.src.unk_id());
            }
        }
        Ok(seqs)
    }
}

/// An encoded split: its batcher and the raw references.
pub struct Split {
    batcher: PairBatcher,
    examples: Vec<PairExample>,
}

fn make_split(cfg: &Config, toks: &Tokenizers, examples: &[PairExample], shuffle: bool) -> Result<Split> {
    let srcs: Vec<&str> = examples.iter().map(|e| e.src.as_str()).collect();
    let tgts: Vec<&str> = examples.iter().map(|e| e.tgt.as_str()).collect();
    let src = toks.encode_src(&srcs, None)?;
    let tgt = toks.tgt.encode_all(&tgts)?;
    let opts = BatchOptions {
        batch_size: cfg.train.batch_size,
        seed: cfg.run.seed,
        pool: cfg.data.bucket_pool,
        shuffle,
        drop_last: false,
        max_len: cfg.data.max_len,
    };
    let t = &toks.tgt;
    let batcher = PairBatcher::new(src, tgt, t.pad_id(), t.bos_id(), t.eos_id(), &opts)?;
    Ok(Split { batcher, examples: examples.to_vec() })
}

/// The model config a run's config and tokenizers imply.
pub fn model_config(cfg: &Config, toks: &Tokenizers) -> Seq2SeqConfig {
    let m = &cfg.model;
    Seq2SeqConfig {
        src_vocab_size: toks.src.vocab_size(),
        tgt_vocab_size: toks.tgt.vocab_size(),
        embedding_dim: m.embedding_dim,
        encoder: m.lstm(m.embedding_dim),
        attention: cfg.translate.attention,
        input_feeding: cfg.translate.input_feeding,
        tie_embeddings: cfg.translate.tie_embeddings,
        embedding_dropout: m.embedding_dropout,
        dropout: m.dropout,
        output_dropout: cfg.translate.output_dropout,
        copy: false,
        coverage: false,
        pad_id: toks.tgt.pad_id(),
        bos_id: toks.tgt.bos_id(),
        eos_id: toks.tgt.eos_id(),
    }
}

/// The translation task: encoded splits plus the encoder–decoder.
pub struct TranslateTask {
    cfg: Config,
    toks: Tokenizers,
    model_config: Seq2SeqConfig,
    net: Seq2Seq,
    varmap: VarMap,
    device: Device,
    train: Split,
    validation: Split,
    test: Split,
    epoch_batches: Vec<PairBatch>,
}

fn ids_tensor(ids: &[u32], rows: usize, cols: usize, device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_slice(ids, (rows, cols), device)?)
}

impl TranslateTask {
    /// Loads the corpus, fits (or reloads) the tokenizers and builds the model.
    pub fn new(cfg: &Config, dir: &RunDir, existing_run: bool) -> Result<Self> {
        let device = cfg.run.device()?;
        let corpus = data::load(&cfg.data, cfg.run.seed).context("loading the corpus")?;
        let data::Corpus::Translation(corpus) = corpus else {
            bail!("task \"translate\" needs a translation corpus (data.corpus = \"pairs\" or \"multi30k\")");
        };
        let (sp, tp) = tokenizer_paths(dir, cfg.tokenizer.joint);
        let toks = if existing_run && sp.exists() && tp.exists() {
            Tokenizers::load(dir, cfg.tokenizer.joint)?
        } else {
            Tokenizers::fit(cfg, dir, &corpus)?
        };
        let train = make_split(cfg, &toks, &corpus.train, true)?;
        let validation = make_split(cfg, &toks, &corpus.validation, false)?;
        let test = make_split(cfg, &toks, &corpus.test, false)?;
        let model_config = model_config(cfg, &toks);
        let varmap = VarMap::new();
        let vb = model::init::seeded_var_builder(&varmap, cfg.run.seed, DType::F32, &device);
        let net = Seq2Seq::new(&model_config, vb).context("building the model")?;
        Ok(Self {
            cfg: cfg.clone(),
            toks,
            model_config,
            net,
            varmap,
            device,
            train,
            validation,
            test,
            epoch_batches: Vec::new(),
        })
    }

    fn split(&self, split: SplitName) -> &Split {
        match split {
            SplitName::Train => &self.train,
            SplitName::Validation => &self.validation,
            SplitName::Test => &self.test,
        }
    }

    /// Summed token NLL (no smoothing) and target token count of one batch.
    fn batch_nll(&self, b: &PairBatch) -> Result<(f64, f64)> {
        let src = ids_tensor(&b.src, b.batch_size, b.src_len, &self.device)?;
        let dec = ids_tensor(&b.dec_input, b.batch_size, b.tgt_len, &self.device)?;
        let out = self.net.forward(&src, &b.src_lengths, &dec, false, None, false)?;
        let nll = self.net.generator_loss(&out.hidden, &b.dec_target, &b.tgt_mask, 0.0)?;
        Ok((nll.to_dtype(DType::F64)?.to_scalar::<f64>()?, b.tgt_mask.iter().map(|&m| m as f64).sum()))
    }
}

/// Decodes every source of `batches` and returns the detokenized hypotheses in example order.
fn translate_batches(
    net: &Seq2Seq,
    tgt: &Tok,
    batches: &[PairBatch],
    n: usize,
    opts: &DecodeOptions,
    device: &Device,
) -> Result<Vec<String>> {
    let mut hyps = vec![String::new(); n];
    for b in batches {
        let src = ids_tensor(&b.src, b.batch_size, b.src_len, device)?;
        let out = net.translate(&src, &b.src_lengths, opts)?;
        for (ids, &i) in out.iter().zip(&b.example_indices) {
            hyps[i] = tgt.decode(ids)?;
        }
    }
    Ok(hyps)
}

impl Task for TranslateTask {
    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn penalised(&self, name: &str) -> bool {
        !name.contains("bias") && (!name.contains("embedding.") || self.cfg.train.l2_embeddings)
    }

    fn start_epoch(&mut self, epoch: usize) -> Result<usize> {
        self.epoch_batches = self.train.batcher.batches_for_epoch(epoch as u64);
        Ok(self.epoch_batches.len())
    }

    fn train_step(&self, index: usize, rng: &mut SeededRng) -> Result<StepOutput> {
        let b = &self.epoch_batches[index];
        let src = ids_tensor(&b.src, b.batch_size, b.src_len, &self.device)?;
        let dec = ids_tensor(&b.dec_input, b.batch_size, b.tgt_len, &self.device)?;
        let out = self.net.forward(&src, &b.src_lengths, &dec, true, Some(rng), false)?;
        // The vocabulary projection of all steps at once, after the time loop, fused with the
        // loss (the (B·T, V) logits never enter the graph).
        let tokens: usize = b.tgt_lengths.iter().sum();
        let eps = self.cfg.translate.label_smoothing;
        let loss = (self.net.generator_loss(&out.hidden, &b.dec_target, &b.tgt_mask, eps)? / tokens as f64)?;
        Ok(StepOutput { loss, examples: b.batch_size, tokens, correct: None })
    }

    /// `loss` (token NLL, no smoothing), `perplexity`, `bleu`, `chrf` and the BLEU signature.
    fn evaluate(&self, split: SplitName) -> Result<Map<String, Value>> {
        let s = self.split(split);
        let batches = s.batcher.batches_for_epoch(0);
        let (mut nll, mut tokens) = (0.0, 0.0);
        for b in &batches {
            let (l, t) = self.batch_nll(b)?;
            nll += l;
            tokens += t;
        }
        let loss = nll / tokens.max(1.0);
        let beam = if split == SplitName::Validation { self.cfg.translate.valid_beam } else { self.cfg.translate.beam };
        let opts = self.cfg.translate.decode_options(beam);
        let hyps = translate_batches(&self.net, &self.toks.tgt, &batches, s.examples.len(), &opts, &self.device)?;
        let refs: Vec<&str> = s.examples.iter().map(|e| e.tgt.as_str()).collect();
        let bleu = crate::bleu::corpus_bleu_single(&hyps, &refs)?;
        let chrf = crate::bleu::corpus_chrf_single(&hyps, &refs)?;
        let mut m = Map::new();
        m.insert("loss".into(), json!(loss));
        m.insert("perplexity".into(), json!(loss.exp()));
        m.insert("bleu".into(), json!(bleu.score));
        m.insert("chrf".into(), json!(chrf.score));
        m.insert("beam".into(), json!(beam));
        m.insert("bleu_signature".into(), json!(bleu.signature()));
        m.insert("chrf_signature".into(), json!(chrf.signature()));
        Ok(m)
    }

    fn checkpoint_meta(&self) -> Value {
        json!({"kind": "seq2seq", "model": &self.model_config})
    }
}

/// An attention matrix: target pieces (EOS included), source pieces, `weights[target][source]`.
pub type AttentionMatrix = (Vec<String>, Vec<String>, Vec<Vec<f32>>);

/// A finished run's model and tokenizers, for `train translate` and `train predict`.
pub struct Loaded {
    /// The run's recorded config.
    pub cfg: Config,
    /// Its tokenizers.
    pub toks: Tokenizers,
    /// The model with the best checkpoint's weights.
    pub net: Seq2Seq,
    /// Where it runs.
    pub device: Device,
    _varmap: VarMap,
}

/// Loads a finished translation run's best checkpoint and tokenizers.
pub fn load_run(dir: &RunDir) -> Result<Loaded> {
    let cfg = dir.load_config()?;
    if cfg.task != TaskKind::Translate {
        bail!("{} is a {:?} run, not a translation run (task = \"translate\")", dir.root.display(), cfg.task);
    }
    let device = cfg.run.device()?;
    let toks = Tokenizers::load(dir, cfg.tokenizer.joint)?;
    let (net, varmap) = load_seq2seq(dir, &device)?;
    Ok(Loaded { cfg, toks, net, device, _varmap: varmap })
}

/// The encoder–decoder of a run's best checkpoint (its config read from the checkpoint's
/// metadata), on `device`, with the `VarMap` that holds its weights. Shared by translation
/// and summarisation runs.
pub fn load_seq2seq(dir: &RunDir, device: &Device) -> Result<(Seq2Seq, VarMap)> {
    let path = dir.best();
    if !path.exists() {
        bail!("{} has no best checkpoint yet ({}): has the run finished an epoch?", dir.root.display(), path.display());
    }
    let ckpt = model::checkpoint::read(&path, &Device::Cpu)?;
    let meta = ckpt.config.ok_or_else(|| anyhow!("{}: no model config in the metadata", path.display()))?;
    let model_config: Seq2SeqConfig = serde_json::from_value(meta["model"].clone())
        .with_context(|| format!("{}: seq2seq model config in the metadata", path.display()))?;
    let varmap = VarMap::new();
    let vb = model::init::seeded_var_builder(&varmap, 0, DType::F32, device);
    let net = Seq2Seq::new(&model_config, vb)?;
    model::checkpoint::load_into_varmap(&path, &varmap)?;
    Ok((net, varmap))
}

impl Loaded {
    /// Translations of `texts` (detokenized), decoded with `beam` in batches of 64.
    pub fn translate(&self, texts: &[String], beam: usize) -> Result<Vec<String>> {
        let opts = self.cfg.translate.decode_options(beam);
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(64) {
            let (src, lengths) = self.encode(chunk)?;
            for ids in self.net.translate(&src, &lengths, &opts)? {
                out.push(self.toks.tgt.decode(&ids)?);
            }
        }
        Ok(out)
    }

    fn encode(&self, texts: &[String]) -> Result<(Tensor, Vec<usize>)> {
        let seqs = self.toks.encode_src(texts, self.cfg.data.max_len)?;
        let s = seqs.iter().map(Vec::len).max().unwrap_or(1);
        let mut ids = vec![self.toks.src.pad_id(); seqs.len() * s];
        for (i, q) in seqs.iter().enumerate() {
            ids[i * s..i * s + q.len()].copy_from_slice(q);
        }
        Ok((ids_tensor(&ids, seqs.len(), s, &self.device)?, seqs.iter().map(Vec::len).collect()))
    }

    /// The attention matrix of `text` translated with `beam`: (target pieces incl. EOS,
    /// source pieces, `weights[target][source]`).
    pub fn attention(&self, text: &str, beam: usize) -> Result<AttentionMatrix> {
        let (src, lengths) = self.encode(&[text.to_string()])?;
        let opts = self.cfg.translate.decode_options(beam);
        let hyp = self.net.translate(&src, &lengths, &opts)?.remove(0);
        let t = &self.toks.tgt;
        let mut dec = vec![t.bos_id()];
        dec.extend(&hyp);
        let dec_t = ids_tensor(&dec, 1, dec.len(), &self.device)?;
        // Teacher forcing on the chosen output recomputes exactly the weights decoding saw.
        let out = self.net.forward(&src, &lengths, &dec_t, false, None, true)?;
        let weights = out.attention.expect("asked for").squeeze(0)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let src_ids = src.squeeze(0)?.to_vec1::<u32>()?;
        let piece = |tok: &Tok, id: u32| tok.id_to_token(id).unwrap_or_else(|| format!("#{id}"));
        let cols = src_ids.iter().map(|&i| piece(&self.toks.src, i)).collect();
        let mut rows: Vec<String> = hyp.iter().map(|&i| piece(t, i)).collect();
        rows.push(data::tokenizer::EOS.to_string());
        Ok((rows, cols, weights))
    }
}

/// An attention matrix as an SVG heatmap: target pieces down the side, source pieces
/// across the top, viridis from 0 to 1.
pub fn attention_svg(title: &str, rows: &[String], cols: &[String], weights: &[Vec<f32>]) -> String {
    use crate::plot::{hex, viridis, Anchor, Canvas};
    let cell = 22.0;
    let label_w = 12.0 + 7.0 * rows.iter().map(|r| r.chars().count()).max().unwrap_or(1) as f64;
    let label_h = 12.0 + 7.0 * cols.iter().map(|c| c.chars().count()).max().unwrap_or(1) as f64;
    let (x0, y0) = (label_w, 30.0 + label_h);
    let width = x0 + cell * cols.len() as f64 + 20.0;
    let height = y0 + cell * rows.len() as f64 + 50.0;
    let mut c = Canvas::new(width.max(260.0), height);
    c.text(10.0, 18.0, 13.0, Anchor::Start, title);
    for (j, col) in cols.iter().enumerate() {
        c.text_vertical(x0 + cell * (j as f64 + 0.5) + 4.0, y0 - 6.0, 11.0, Anchor::Start, col);
    }
    for (i, row) in rows.iter().enumerate() {
        c.text(x0 - 6.0, y0 + cell * (i as f64 + 0.5) + 4.0, 11.0, Anchor::End, row);
        for (j, col) in cols.iter().enumerate() {
            let w = weights.get(i).and_then(|r| r.get(j)).copied().unwrap_or(0.0) as f64;
            let tip = format!("{row} ← {col}: {w:.3}");
            c.rect(x0 + cell * j as f64, y0 + cell * i as f64, cell, cell, &hex(viridis(w)), Some(&tip));
        }
    }
    c.frame(x0, y0, cell * cols.len() as f64, cell * rows.len() as f64, "#444");
    c.colorbar(
        x0,
        y0 + cell * rows.len() as f64 + 12.0,
        150.0_f64.min(cell * cols.len() as f64).max(80.0),
        10.0,
        0.0,
        1.0,
        viridis,
    );
    c.to_svg()
}

/// `train translate --run DIR [--beam N] [--attention FILE.svg] [TEXT]...`
#[derive(Debug, Clone, clap::Args)]
pub struct TranslateArgs {
    /// A finished translation run.
    #[arg(long)]
    pub run: PathBuf,
    /// Beam size (1 = greedy); default: the run's `translate.beam`.
    #[arg(long)]
    pub beam: Option<usize>,
    /// Draw the attention matrix of the first sentence into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub attention: Option<PathBuf>,
    /// Source sentences; stdin lines when none are given.
    pub texts: Vec<String>,
}

/// `train translate`: prints one translation per input line.
pub fn cli(args: &TranslateArgs) -> Result<()> {
    let dir = RunDir::open(&args.run)?;
    let loaded = load_run(&dir)?;
    let beam = args.beam.unwrap_or(loaded.cfg.translate.beam);
    if beam == 0 {
        bail!("--beam: expected a positive beam size, got 0");
    }
    let texts = super::inputs_or_stdin(&args.texts)?;
    for line in loaded.translate(&texts, beam)? {
        println!("{line}");
    }
    if let Some(path) = &args.attention {
        let first = texts.first().ok_or_else(|| anyhow!("--attention: no input sentence to draw"))?;
        let (rows, cols, w) = loaded.attention(first, beam)?;
        let svg = attention_svg(&format!("attention (beam {beam})"), &rows, &cols, &w);
        crate::atomic::write(path, svg.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("attention map: {}", path.display());
    }
    Ok(())
}

/// `train predict` on a translation run: one translation per input line.
pub fn predict_cli(dir: &RunDir, _cfg: &Config, args: &super::PredictArgs) -> Result<()> {
    let loaded = load_run(dir)?;
    let texts = super::inputs_or_stdin(&args.inputs)?;
    let beam = loaded.cfg.translate.beam;
    for (text, out) in texts.iter().zip(loaded.translate(&texts, beam)?) {
        if args.json {
            println!("{}", json!({"source": text, "translation": out}));
        } else {
            println!("{out}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_svg_draws_every_cell() {
        let rows = vec!["▁A".to_string(), "▁dog".into(), "[EOS]".into()];
        let cols = vec!["▁Ein".to_string(), "▁Hund".into()];
        let w = vec![vec![0.9, 0.1], vec![0.2, 0.8], vec![0.5, 0.5]];
        let svg = attention_svg("t <&>", &rows, &cols, &w);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<title>").count(), 6);
        assert!(svg.contains("▁dog ← ▁Hund: 0.800") && svg.contains("t &lt;&amp;&gt;"));
    }
}
