//! Summarisation (`task = "summarize"`, Gigaword headlines): document/summary pairs
//! (`corpus = "pairs"`) → one word-level vocabulary for both sides → the attention
//! encoder–decoder with the pointer-generator's copy switch and coverage (See et al. 2017)
//! → beam search with length limits and n-gram blocking → ROUGE-1/2/L as Google's
//! `rouge-score` computes it ([`crate::rouge`]).
//!
//! Copying works in an extended vocabulary: each document's source-only words (those the
//! vocabulary maps to UNK) get ids from the vocabulary size on, in order of first
//! appearance, so a summary word that is not in the vocabulary but is in its document is a
//! target the model can reach by pointing at it. Run-directory file: `tokenizer.json`.

use super::{Registration, SplitName, StepOutput, Task};
use crate::config::{Config, LongSource, TaskKind};
use crate::rundir::RunDir;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use data::batch::{BatchOptions, PairBatch, PairBatcher};
use data::tokenizer::Tok;
use data::PairExample;
use model::rng::SeededRng;
use model::seq2seq::{CopySource, DecodeParts, Seq2Seq, Seq2SeqConfig, Summary, SummaryOptions};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;

/// How the registry builds this task and predicts with its runs.
pub const REGISTRATION: Registration = Registration {
    build: |cfg, dir, existing_run| Ok(Box::new(SummarizeTask::new(cfg, dir, existing_run)?)),
    predict: predict_cli,
};

/// Documents decoded together.
const DECODE_BATCH: usize = 64;

/// A text as vocabulary ids and as the words they came from (the tokenizer's own word
/// boundaries, read from its offsets, so the copy mechanism can name source-only words).
#[derive(Debug, Clone, PartialEq)]
pub struct Words {
    /// Vocabulary ids (UNK for words outside the vocabulary).
    pub ids: Vec<u32>,
    /// The text of each id's word.
    pub words: Vec<String>,
}

/// Splits texts with the run's tokenizer: ids and the words behind them.
pub fn words_of<S: AsRef<str> + Sync>(tok: &Tok, texts: &[S]) -> Result<Vec<Words>> {
    let inputs: Vec<&str> = texts.iter().map(|s| s.as_ref()).collect();
    let encs = tok.inner().encode_batch(inputs.clone(), false).map_err(|e| anyhow!("tokenizing: {e}"))?;
    Ok(encs
        .iter()
        .zip(inputs)
        .map(|(e, text)| Words {
            ids: e.get_ids().to_vec(),
            words: e.get_offsets().iter().map(|&(a, b)| text.get(a..b).unwrap_or("").to_string()).collect(),
        })
        .collect())
}

/// One document/summary pair in the extended vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// Document ids (UNK outside the vocabulary), at most `max_source_len`.
    pub src: Vec<u32>,
    /// The same in the extended vocabulary.
    pub src_ext: Vec<u32>,
    /// The document's source-only words; word i has id `vocab_size + i`.
    pub oovs: Vec<String>,
    /// Summary ids (UNK outside the vocabulary), at most `max_target_len`.
    pub tgt: Vec<u32>,
    /// The same in the extended vocabulary (UNK only for words in neither).
    pub tgt_ext: Vec<u32>,
}

/// Numbers a document's source-only words: (extended ids, source-only words).
pub fn extend_source(doc: &Words, unk: u32, vocab: usize) -> (Vec<u32>, Vec<String>) {
    let mut oovs: Vec<String> = Vec::new();
    let mut index: HashMap<&str, u32> = HashMap::new();
    let ext = doc
        .ids
        .iter()
        .zip(&doc.words)
        .map(|(&id, w)| {
            if id != unk {
                return id;
            }
            *index.entry(w.as_str()).or_insert_with(|| {
                oovs.push(w.clone());
                (vocab + oovs.len() - 1) as u32
            })
        })
        .collect();
    (ext, oovs)
}

/// A summary's ids in the extended vocabulary of a document with source-only words `oovs`.
pub fn extend_target(summary: &Words, oovs: &[String], unk: u32, vocab: usize) -> Vec<u32> {
    summary
        .ids
        .iter()
        .zip(&summary.words)
        .map(|(&id, w)| match oovs.iter().position(|o| o == w) {
            Some(i) if id == unk => (vocab + i) as u32,
            _ => id,
        })
        .collect()
}

/// The text of extended ids: vocabulary words, and source-only words by name.
pub fn ext_text(tok: &Tok, ids: &[u32], oovs: &[String]) -> String {
    let v = tok.vocab_size();
    ids.iter()
        .map(|&i| {
            if (i as usize) < v {
                tok.id_to_token(i).unwrap_or_else(|| format!("#{i}"))
            } else {
                oovs.get(i as usize - v).cloned().unwrap_or_else(|| data::tokenizer::UNK.to_string())
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Encodes pairs, cutting documents at `max_source_len` (or refusing them, as configured)
/// and summaries at `max_target_len`. Returns the pairs and how many documents were cut.
pub fn encode_pairs(cfg: &Config, tok: &Tok, examples: &[PairExample], split: &str) -> Result<(Vec<Encoded>, usize)> {
    let s = &cfg.summarize;
    let srcs: Vec<&str> = examples.iter().map(|e| e.src.as_str()).collect();
    let tgts: Vec<&str> = examples.iter().map(|e| e.tgt.as_str()).collect();
    let (docs, sums) = (words_of(tok, &srcs)?, words_of(tok, &tgts)?);
    let (unk, v) = (tok.unk_id(), tok.vocab_size());
    let mut cut = 0;
    let mut out = Vec::with_capacity(examples.len());
    for (i, (mut d, mut t)) in docs.into_iter().zip(sums).enumerate() {
        if d.ids.len() > s.max_source_len {
            if s.long_source == LongSource::Refuse {
                bail!(
                    "{split} document {} has {} tokens, more than summarize.max_source_len = {} (long_source = \"refuse\")",
                    i + 1,
                    d.ids.len(),
                    s.max_source_len
                );
            }
            d.ids.truncate(s.max_source_len);
            d.words.truncate(s.max_source_len);
            cut += 1;
        }
        if d.ids.is_empty() {
            d.ids.push(unk);
            d.words.push(String::new());
        }
        t.ids.truncate(s.max_target_len);
        t.words.truncate(s.max_target_len);
        let (src_ext, oovs) = extend_source(&d, unk, v);
        let tgt_ext = extend_target(&t, &oovs, unk, v);
        out.push(Encoded { src: d.ids, src_ext, oovs, tgt: t.ids, tgt_ext });
    }
    Ok((out, cut))
}

/// The model config a run's config and tokenizer imply.
pub fn model_config(cfg: &Config, tok: &Tok) -> Seq2SeqConfig {
    let (m, s) = (&cfg.model, &cfg.summarize);
    Seq2SeqConfig {
        src_vocab_size: tok.vocab_size(),
        tgt_vocab_size: tok.vocab_size(),
        embedding_dim: m.embedding_dim,
        encoder: m.lstm(m.embedding_dim),
        attention: s.attention,
        input_feeding: s.input_feeding,
        tie_embeddings: s.tie_embeddings,
        embedding_dropout: m.embedding_dropout,
        dropout: m.dropout,
        output_dropout: s.output_dropout,
        copy: s.copy,
        coverage: s.coverage,
        pad_id: tok.pad_id(),
        bos_id: tok.bos_id(),
        eos_id: tok.eos_id(),
    }
}

/// The decoding settings of a run with beam size `beam`, in (1-based) epoch `epoch`
/// (coverage is carried once it is on).
pub fn summary_options(cfg: &Config, tok: &Tok, beam: usize, epoch: usize) -> SummaryOptions {
    let s = &cfg.summarize;
    SummaryOptions {
        coverage: s.coverage_on(epoch),
        beam,
        min_len: s.min_len,
        max_len: s.max_len,
        length_penalty: s.length_penalty,
        no_repeat_ngram: s.no_repeat_ngram,
        unk_id: tok.unk_id(),
    }
}

/// A decoded summary with its words.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The summary: words joined by spaces.
    pub text: String,
    /// Its words (source-only ones by name).
    pub words: Vec<String>,
    /// How many words were copied source-only words.
    pub copied_oov: usize,
    /// How many words were the UNK token.
    pub unk: usize,
    /// What beam search returned (ids, scores, p_gen, attention).
    pub summary: Summary,
}

/// Decodes `pairs` (in batches sorted by length; results in the order given).
pub fn decode_pairs(
    net: &Seq2Seq,
    tok: &Tok,
    pairs: &[&Encoded],
    opts: &SummaryOptions,
    device: &Device,
) -> Result<Vec<Decoded>> {
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by_key(|&i| (pairs[i].src.len(), i));
    let mut out: Vec<Option<Decoded>> = vec![None; pairs.len()];
    let v = tok.vocab_size();
    for chunk in order.chunks(DECODE_BATCH) {
        let s = chunk.iter().map(|&i| pairs[i].src.len()).max().unwrap_or(1);
        let mut ids = vec![tok.pad_id(); chunk.len() * s];
        for (r, &i) in chunk.iter().enumerate() {
            ids[r * s..r * s + pairs[i].src.len()].copy_from_slice(&pairs[i].src);
        }
        let src = Tensor::from_vec(ids, (chunk.len(), s), device)?;
        let lengths: Vec<usize> = chunk.iter().map(|&i| pairs[i].src.len()).collect();
        let copy: Vec<CopySource> = chunk
            .iter()
            .map(|&i| CopySource { ext_ids: pairs[i].src_ext.clone(), n_oov: pairs[i].oovs.len() })
            .collect();
        let sums = net.summarize(&src, &lengths, net.config().copy.then_some(copy.as_slice()), opts)?;
        for (&i, summary) in chunk.iter().zip(sums) {
            let text = ext_text(tok, &summary.tokens, &pairs[i].oovs);
            let words = text.split(' ').filter(|w| !w.is_empty()).map(str::to_string).collect();
            out[i] = Some(Decoded {
                text,
                words,
                copied_oov: summary.tokens.iter().filter(|&&t| t as usize >= v).count(),
                unk: summary.tokens.iter().filter(|&&t| t == tok.unk_id()).count(),
                summary,
            });
        }
    }
    Ok(out.into_iter().map(|d| d.expect("every pair decoded")).collect())
}

/// An encoded split: batches for the loss, and the pairs for decoding.
struct Split {
    batcher: PairBatcher,
    pairs: Vec<Encoded>,
    examples: Vec<PairExample>,
}

/// The summarisation task: encoded splits plus the pointer-generator.
pub struct SummarizeTask {
    cfg: Config,
    tok: Tok,
    model_config: Seq2SeqConfig,
    net: Seq2Seq,
    varmap: VarMap,
    device: Device,
    train: Split,
    validation: Split,
    test: Split,
    /// The current epoch (0-based), which decides whether coverage is on.
    epoch: usize,
    epoch_batches: Vec<PairBatch>,
}

/// Tensors of one batch: source ids in the extended vocabulary (B·S) and targets (B·T).
fn extended(pairs: &[Encoded], b: &PairBatch, pad: u32, eos: u32) -> (Vec<u32>, Vec<u32>) {
    let mut src = vec![pad; b.batch_size * b.src_len];
    let mut tgt = vec![pad; b.batch_size * b.tgt_len];
    for (r, &i) in b.example_indices.iter().enumerate() {
        let p = &pairs[i];
        src[r * b.src_len..r * b.src_len + p.src_ext.len()].copy_from_slice(&p.src_ext);
        tgt[r * b.tgt_len..r * b.tgt_len + p.tgt_ext.len()].copy_from_slice(&p.tgt_ext);
        tgt[r * b.tgt_len + p.tgt_ext.len()] = eos;
    }
    (src, tgt)
}

impl SummarizeTask {
    /// Loads the corpus, fits (or reloads) the tokenizer and builds the model.
    pub fn new(cfg: &Config, dir: &RunDir, existing_run: bool) -> Result<Self> {
        let device = cfg.run.device()?;
        let corpus = data::load(&cfg.data, cfg.run.seed).context("loading the corpus")?;
        let data::Corpus::Translation(corpus) = corpus else {
            bail!("task \"summarize\" needs document/summary pairs (data.corpus = \"pairs\")");
        };
        let path = dir.tokenizer();
        let tok = if existing_run && path.exists() {
            Tok::load(&path).with_context(|| format!("loading {}", path.display()))?
        } else {
            let texts = corpus.train_src().chain(corpus.train_tgt());
            let t = data::tokenizer::build_tokenizer(&cfg.tokenizer, texts).context("building the tokenizer")?;
            t.save(&path).with_context(|| format!("writing {}", path.display()))?;
            t
        };
        let split = |examples: &[PairExample], name: &str, shuffle: bool| -> Result<Split> {
            let (pairs, cut) = encode_pairs(cfg, &tok, examples, name)?;
            if cut > 0 {
                tracing::warn!(
                    "{name}: {cut} of {} documents cut to summarize.max_source_len = {}",
                    pairs.len(),
                    cfg.summarize.max_source_len
                );
            }
            let opts = BatchOptions {
                batch_size: cfg.train.batch_size,
                seed: cfg.run.seed,
                pool: cfg.data.bucket_pool,
                shuffle,
                drop_last: false,
                max_len: None,
            };
            let batcher = PairBatcher::new(
                pairs.iter().map(|p| p.src.clone()).collect(),
                pairs.iter().map(|p| p.tgt.clone()).collect(),
                tok.pad_id(),
                tok.bos_id(),
                tok.eos_id(),
                &opts,
            )?;
            Ok(Split { batcher, pairs, examples: examples.to_vec() })
        };
        let train = split(&corpus.train, "train", true)?;
        let validation = split(&corpus.validation, "validation", false)?;
        let test = split(&corpus.test, "test", false)?;
        let model_config = model_config(cfg, &tok);
        let varmap = VarMap::new();
        let vb = model::init::seeded_var_builder(&varmap, cfg.run.seed, DType::F32, &device);
        let net = Seq2Seq::new(&model_config, vb).context("building the model")?;
        Ok(Self {
            cfg: cfg.clone(),
            tok,
            model_config,
            net,
            varmap,
            device,
            train,
            validation,
            test,
            // Evaluating a finished run (`train eval`) sees it as after its last epoch;
            // training sets the epoch as it goes.
            epoch: cfg.train.epochs.saturating_sub(1),
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

    /// The loss of one batch: (NLL summed over target tokens, coverage loss summed, tokens).
    fn batch_loss(
        &self,
        split: &Split,
        b: &PairBatch,
        train: bool,
        coverage: bool,
        rng: Option<&mut SeededRng>,
    ) -> Result<(Tensor, Option<Tensor>, usize)> {
        let src = Tensor::from_slice(&b.src, (b.batch_size, b.src_len), &self.device)?;
        let dec = Tensor::from_slice(&b.dec_input, (b.batch_size, b.tgt_len), &self.device)?;
        let mut rng = rng;
        let enc = self.net.encode(&src, &b.src_lengths, train, rng.as_deref_mut())?;
        let parts = DecodeParts { attention: false, coverage };
        let out = self.net.decode_with(&enc, &dec, train, rng, parts)?;
        let tokens: usize = b.tgt_lengths.iter().sum();
        let nll = if self.model_config.copy {
            let (src_ext, tgt_ext) = extended(&split.pairs, b, self.tok.pad_id(), self.tok.eos_id());
            self.net.copy_loss(&out, &src_ext, &tgt_ext, &b.tgt_mask)?
        } else {
            self.net.generator_loss(&out.hidden, &b.dec_target, &b.tgt_mask, 0.0)?
        };
        let cov = match &out.coverage_loss {
            Some(c) => {
                let mask = Tensor::from_slice(&b.tgt_mask, b.tgt_mask.len(), &self.device)?.to_dtype(c.dtype())?;
                Some((c.flatten_all()? * mask)?.sum_all()?)
            }
            None => None,
        };
        Ok((nll, cov, tokens))
    }
}

impl Task for SummarizeTask {
    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn penalised(&self, name: &str) -> bool {
        !name.contains("bias") && (!name.contains("embedding.") || self.cfg.train.l2_embeddings)
    }

    fn start_epoch(&mut self, epoch: usize) -> Result<usize> {
        self.epoch = epoch;
        self.epoch_batches = self.train.batcher.batches_for_epoch(epoch as u64);
        Ok(self.epoch_batches.len())
    }

    fn train_step(&self, index: usize, rng: &mut SeededRng) -> Result<StepOutput> {
        let b = &self.epoch_batches[index];
        let coverage = self.cfg.summarize.coverage_on(self.epoch + 1);
        let (nll, cov, tokens) = self.batch_loss(&self.train, b, true, coverage, Some(rng))?;
        let mut loss = nll;
        if let Some(c) = cov {
            loss = (loss + (c * self.cfg.summarize.coverage_weight)?)?;
        }
        Ok(StepOutput { loss: (loss / tokens as f64)?, examples: b.batch_size, tokens, correct: None })
    }

    /// `loss` (token NLL of the output distribution), `perplexity`, `coverage_loss` (with
    /// coverage), ROUGE-1/2/L F1 × 100 with precision and recall, the ROUGE signature, and
    /// output statistics (mean length, copied source-only words, UNK outputs).
    fn evaluate(&self, split: SplitName) -> Result<Map<String, Value>> {
        let s = self.split(split);
        let coverage = self.cfg.summarize.coverage_on(self.epoch + 1);
        let (mut nll, mut cov, mut tokens) = (0.0, 0.0, 0usize);
        for b in &s.batcher.batches_for_epoch(0) {
            let (l, c, t) = self.batch_loss(s, b, false, coverage, None)?;
            nll += l.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if let Some(c) = c {
                cov += c.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            }
            tokens += t;
        }
        let loss = nll / tokens.max(1) as f64;
        let (beam, n) = match split {
            SplitName::Validation => {
                let k = self.cfg.summarize.valid_rouge_examples;
                (self.cfg.summarize.valid_beam, if k == 0 { s.pairs.len() } else { k.min(s.pairs.len()) })
            }
            _ => (self.cfg.summarize.beam, s.pairs.len()),
        };
        let opts = summary_options(&self.cfg, &self.tok, beam, self.epoch + 1);
        let chosen: Vec<&Encoded> = s.pairs[..n].iter().collect();
        let decoded = decode_pairs(&self.net, &self.tok, &chosen, &opts, &self.device)?;
        let hyps: Vec<String> = decoded.iter().map(|d| d.text.clone()).collect();
        let refs: Vec<Vec<String>> = s.examples[..n].iter().map(|e| vec![e.tgt.clone()]).collect();
        let mut m = Map::new();
        m.insert("loss".into(), json!(loss));
        m.insert("perplexity".into(), json!(loss.exp()));
        if coverage {
            m.insert("coverage_loss".into(), json!(cov / tokens.max(1) as f64));
        }
        rouge_metrics(&mut m, &hyps, &refs)?;
        let words: usize = decoded.iter().map(|d| d.words.len()).sum();
        m.insert("beam".into(), json!(beam));
        m.insert("rouge_examples".into(), json!(n));
        m.insert("mean_length".into(), json!(words as f64 / n.max(1) as f64));
        m.insert(
            "copied_oov_rate".into(),
            json!(decoded.iter().map(|d| d.copied_oov).sum::<usize>() as f64 / words.max(1) as f64),
        );
        m.insert("unk_rate".into(), json!(decoded.iter().map(|d| d.unk).sum::<usize>() as f64 / words.max(1) as f64));
        Ok(m)
    }

    fn checkpoint_meta(&self) -> Value {
        json!({"kind": "seq2seq", "model": &self.model_config})
    }
}

/// ROUGE-1/2/L (F1, precision and recall, × 100) of `hyps` against `refs` into `m`, with
/// the signature.
pub fn rouge_metrics(m: &mut Map<String, Value>, hyps: &[String], refs: &[Vec<String>]) -> Result<()> {
    let opts = crate::rouge::RougeOptions::default();
    let r = crate::rouge::corpus(hyps, refs, &opts).map_err(|e| anyhow!("ROUGE: {e}"))?;
    for (name, s) in [("rouge1", &r.rouge1), ("rouge2", &r.rouge2), ("rougeL", &r.rouge_l)] {
        m.insert(name.into(), json!(100.0 * s.f1));
        m.insert(format!("{name}_precision"), json!(100.0 * s.precision));
        m.insert(format!("{name}_recall"), json!(100.0 * s.recall));
    }
    m.insert("rouge_signature".into(), json!(crate::rouge::signature(&opts)));
    Ok(())
}

/// A finished run's model and tokenizer, for `train summarize` and `train predict`.
pub struct Loaded {
    /// The run's recorded config.
    pub cfg: Config,
    /// Its tokenizer.
    pub tok: Tok,
    /// The model with the best checkpoint's weights.
    pub net: Seq2Seq,
    /// Where it runs.
    pub device: Device,
    _varmap: VarMap,
}

/// Loads a finished summarisation run's best checkpoint and tokenizer.
pub fn load_run(dir: &RunDir) -> Result<Loaded> {
    let cfg = dir.load_config()?;
    if cfg.task != TaskKind::Summarize {
        bail!("{} is a {} run, not a summarisation run (task = \"summarize\")", dir.root.display(), cfg.task.name());
    }
    let device = cfg.run.device()?;
    let path = dir.tokenizer();
    let tok = Tok::load(&path).with_context(|| format!("loading {}", path.display()))?;
    let (net, varmap) = super::translate::load_seq2seq(dir, &device)?;
    Ok(Loaded { cfg, tok, net, device, _varmap: varmap })
}

impl Loaded {
    /// Encodes documents for decoding (no summaries): cut or refused as the run's config says.
    pub fn encode(&self, docs: &[String]) -> Result<(Vec<Encoded>, usize)> {
        let pairs: Vec<PairExample> = docs.iter().map(|d| PairExample { src: d.clone(), tgt: String::new() }).collect();
        encode_pairs(&self.cfg, &self.tok, &pairs, "input")
    }

    /// Summaries of `docs` with beam size `beam`.
    pub fn summarize(&self, docs: &[String], beam: usize) -> Result<Vec<Decoded>> {
        let (pairs, cut) = self.encode(docs)?;
        if cut > 0 {
            eprintln!(
                "warning: {cut} of {} documents were longer than summarize.max_source_len = {} tokens and were cut",
                docs.len(),
                self.cfg.summarize.max_source_len
            );
        }
        // A finished run: as in its last epoch.
        let opts = summary_options(&self.cfg, &self.tok, beam, self.cfg.train.epochs.max(1));
        decode_pairs(&self.net, &self.tok, &pairs.iter().collect::<Vec<_>>(), &opts, &self.device)
    }

    /// The JSON object of one summary: the text and, per output word (EOS last), its p_gen
    /// (copying models) and the attention over the document's words.
    pub fn to_json(&self, doc: &str, d: &Decoded) -> Result<Value> {
        let src_words = words_of(&self.tok, &[doc])?.remove(0).words;
        let n = src_words.len().min(self.cfg.summarize.max_source_len);
        let mut out_words = d.words.clone();
        out_words.push(data::tokenizer::EOS.to_string());
        let mut v = json!({
            "document": doc,
            "summary": d.text,
            "words": out_words,
            "source_words": &src_words[..n],
            "attention": d.summary.attention,
            "log_prob": d.summary.log_prob,
        });
        if self.net.config().copy {
            v["p_gen"] = json!(d.summary.p_gen);
            v["copied_oov"] = json!(d.copied_oov);
        }
        Ok(v)
    }
}

/// `train summarize --run DIR [--beam N] [--json] [TEXT]...`
#[derive(Debug, Clone, clap::Args)]
pub struct SummarizeArgs {
    /// A finished summarisation run.
    #[arg(long)]
    pub run: PathBuf,
    /// Beam size (1 = greedy); default: the run's `summarize.beam`.
    #[arg(long)]
    pub beam: Option<usize>,
    /// One JSON object per document: the summary, and per output word p_gen (copying
    /// models) and the attention over the document.
    #[arg(long)]
    pub json: bool,
    /// Score the run on a JSON Lines file instead: each line a "document" with its
    /// reference summaries ("references": [...], e.g. DUC's four, or one "summary"); prints
    /// ROUGE-1/2/L as JSON (multi-reference: each metric's best reference, as rouge-score).
    #[arg(long, value_name = "FILE.jsonl", conflicts_with = "texts")]
    pub score: Option<PathBuf>,
    /// Documents (tokenised like the training data); stdin lines when none are given.
    pub texts: Vec<String>,
}

/// Documents and their references from a JSON Lines file (`document`, and `references` or
/// `summary`); errors name the file and line.
pub fn read_scored(path: &std::path::Path) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (mut docs, mut refs) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = || format!("{}:{}", path.display(), i + 1);
        let v: Value = serde_json::from_str(line).with_context(|| format!("{}: not a JSON object", at()))?;
        let doc = v["document"].as_str().ok_or_else(|| anyhow!("{}: expected a string \"document\"", at()))?;
        let r: Vec<String> = match (&v["references"], &v["summary"]) {
            (Value::Array(a), _) => a
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| anyhow!("{}: \"references\" must be strings", at()))?,
            (_, Value::String(s)) => vec![s.clone()],
            _ => bail!("{}: expected \"references\" (a list of strings) or \"summary\"", at()),
        };
        if r.is_empty() {
            bail!("{}: \"references\" is empty", at());
        }
        docs.push(doc.to_string());
        refs.push(r);
    }
    if docs.is_empty() {
        bail!("{}: no documents", path.display());
    }
    Ok((docs, refs))
}

/// `train summarize`: one summary per input document.
pub fn cli(args: &SummarizeArgs) -> Result<()> {
    let dir = RunDir::open(&args.run)?;
    let loaded = load_run(&dir)?;
    let beam = args.beam.unwrap_or(loaded.cfg.summarize.beam);
    if beam == 0 {
        bail!("--beam: expected a positive beam size, got 0");
    }
    if let Some(path) = &args.score {
        let (docs, refs) = read_scored(path)?;
        let hyps: Vec<String> = loaded.summarize(&docs, beam)?.into_iter().map(|d| d.text).collect();
        let mut m = Map::new();
        m.insert("file".into(), json!(path.display().to_string()));
        m.insert("documents".into(), json!(docs.len()));
        m.insert("beam".into(), json!(beam));
        rouge_metrics(&mut m, &hyps, &refs)?;
        println!("{}", serde_json::to_string_pretty(&m)?);
        return Ok(());
    }
    let texts = super::inputs_or_stdin(&args.texts)?;
    print_summaries(&loaded, &texts, beam, args.json)
}

fn print_summaries(loaded: &Loaded, texts: &[String], beam: usize, json: bool) -> Result<()> {
    for (text, d) in texts.iter().zip(loaded.summarize(texts, beam)?) {
        if json {
            println!("{}", loaded.to_json(text, &d)?);
        } else {
            println!("{}", d.text);
        }
    }
    Ok(())
}

/// `train predict` on a summarisation run: one summary per input line.
pub fn predict_cli(dir: &RunDir, _cfg: &Config, args: &super::PredictArgs) -> Result<()> {
    let loaded = load_run(dir)?;
    let texts = super::inputs_or_stdin(&args.inputs)?;
    let beam = loaded.cfg.summarize.beam;
    print_summaries(&loaded, &texts, beam, args.json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_vocabulary_numbers_source_only_words() {
        let doc = Words {
            ids: vec![5, 1, 6, 1, 1],
            words: vec!["a".into(), "zorg".into(), "b".into(), "quux".into(), "zorg".into()],
        };
        let (ext, oovs) = extend_source(&doc, 1, 10);
        assert_eq!(ext, vec![5, 10, 6, 11, 10]);
        assert_eq!(oovs, vec!["zorg".to_string(), "quux".into()]);
        let sum = Words { ids: vec![1, 5, 1], words: vec!["quux".into(), "a".into(), "nope".into()] };
        assert_eq!(extend_target(&sum, &oovs, 1, 10), vec![11, 5, 1]);
    }
}
