//! Sentence classification (`task = "classify"`: SST-2, or your own texts with
//! `data.corpus = "text"`): corpus → tokenizer → encoded splits → batches → [`Classifier`] →
//! cross-entropy; accuracy, P/R/F1 and the confusion matrix (also drawn to `confusion.svg`);
//! prediction on raw text (or text pairs) with every class's probability.

use super::{Registration, SplitName, StepOutput, Task};
use crate::config::Config;
use crate::loss::{argmax, correct, cross_entropy};
use crate::metrics::Confusion;
use crate::rundir::RunDir;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use data::batch::{BatchOptions, Batcher, TokenBatch};
use data::tokenizer::Tok;
use model::classifier::{Classifier, ClassifierConfig};
use model::rng::SeededRng;
use serde_json::{json, Map, Value};

/// One batch as the model wants it.
pub struct Batch {
    /// (batch, time) row-major, padded with the tokenizer's pad id.
    pub ids: Vec<u32>,
    /// Rows.
    pub batch: usize,
    /// Columns: the longest sentence's length.
    pub time: usize,
    /// Real tokens of each row.
    pub lengths: Vec<usize>,
    /// Class of each row.
    pub labels: Vec<u32>,
}

impl Batch {
    /// The ids as a (batch, time) tensor.
    pub fn ids_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_slice(&self.ids, (self.batch, self.time), device)?)
    }

    fn from_data(b: TokenBatch) -> Self {
        Batch { ids: b.ids, batch: b.batch_size, time: b.max_len, lengths: b.lengths, labels: b.labels }
    }
}

/// An encoded split and its batcher.
pub struct Split {
    batcher: Batcher,
}

impl Split {
    /// Batches per pass.
    pub fn num_batches(&self) -> usize {
        self.batcher.num_batches()
    }

    /// Training order for `epoch`: a pure function of (seed, epoch).
    pub fn batches_for_epoch(&self, epoch: usize) -> Vec<Batch> {
        self.batcher.batches_for_epoch(epoch as u64).into_iter().map(Batch::from_data).collect()
    }

    /// Every example once, in a fixed order (evaluation splits are built unshuffled).
    pub fn eval_batches(&self) -> Vec<Batch> {
        self.batches_for_epoch(0)
    }
}

/// The corpus encoded for training: tokenizer, splits and the model config they imply.
pub struct Prepared {
    /// The classifier's config (vocabulary from the tokenizer).
    pub model_config: ClassifierConfig,
    /// Fitted on the training split (or reloaded).
    pub tokenizer: Tok,
    /// Training split, shuffled per epoch.
    pub train: Split,
    /// Validation split.
    pub validation: Split,
    /// Test split.
    pub test: Split,
    /// Classes of the corpus.
    pub num_classes: usize,
    /// Their names, in label order.
    pub class_names: Vec<String>,
    /// `train.class_weights` as f32 (empty = unweighted; "balanced" resolved on train).
    pub class_weights: Vec<f32>,
    /// Rows skipped as unusable per split (`data.skip_invalid`).
    pub skipped: [usize; 3],
    /// SST-2 keeps its historical metric keys (flat `precision_<class>` ...), so its runs give
    /// the same `metrics.jsonl` bytes as before; other corpora report the full set
    /// ([`crate::metrics::Confusion::report`]).
    pub legacy_metrics: bool,
}

/// Loads the corpus, fits (or, for an existing run, reloads) the tokenizer, encodes and
/// batches every split.
pub fn prepare(cfg: &Config, dir: &RunDir, existing_run: bool) -> Result<Prepared> {
    let corpus = data::load(&cfg.data, cfg.run.seed).context("loading the corpus")?;
    let data::Corpus::TextClassification(corpus) = corpus else {
        bail!("task \"classify\" needs a text-classification corpus (data.corpus = \"text\" or \"sst2\")");
    };
    let tok_path = dir.tokenizer();
    let tokenizer = if existing_run && tok_path.exists() {
        Tok::load(&tok_path).with_context(|| format!("loading {}", tok_path.display()))?
    } else {
        let t =
            data::tokenizer::build_tokenizer(&cfg.tokenizer, corpus.train_texts()).context("building the tokenizer")?;
        t.save(&tok_path).with_context(|| format!("writing {}", tok_path.display()))?;
        t
    };
    let bs = cfg.train.batch_size;
    let seed = cfg.run.seed;
    let make = |examples: &[data::TextExample], shuffle: bool| -> Result<Split> {
        let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
        let mut seqs = tokenizer.encode_all(&texts)?;
        if examples.iter().any(|e| e.pair.is_some()) {
            let pairs: Vec<&str> = examples.iter().map(|e| e.pair.as_deref().unwrap_or("")).collect();
            for (s, p) in seqs.iter_mut().zip(tokenizer.encode_all(&pairs)?) {
                join_pair(s, p, tokenizer.eos_id());
            }
        }
        // A text with no known token still gets one step, so every length is ≥ 1.
        for s in seqs.iter_mut().filter(|s| s.is_empty()) {
            s.push(tokenizer.unk_id());
        }
        let labels = examples.iter().map(|e| e.label as u32).collect();
        let opts = BatchOptions {
            batch_size: bs,
            seed,
            pool: cfg.data.bucket_pool,
            shuffle,
            drop_last: false,
            max_len: cfg.data.max_len,
        };
        Ok(Split { batcher: Batcher::new(seqs, labels, tokenizer.pad_id(), &opts)? })
    };
    let train = make(&corpus.train, true)?;
    let validation = make(&corpus.validation, false)?;
    let test = make(&corpus.test, false)?;
    let mut counts = vec![0usize; corpus.num_classes];
    for e in &corpus.train {
        counts[e.label] += 1;
    }
    let class_weights = cfg.train.class_weights.resolve(&counts);
    if !class_weights.is_empty() && class_weights.len() != corpus.num_classes {
        bail!(
            "config key `train.class_weights`: expected {} weights (one per class), got {}",
            corpus.num_classes,
            class_weights.len()
        );
    }
    let m = &cfg.model;
    let lstm = m.lstm(m.embedding_dim);
    let model_config = ClassifierConfig {
        vocab_size: tokenizer.vocab_size(),
        embedding_dim: m.embedding_dim,
        num_classes: corpus.num_classes,
        lstm,
        embedding_dropout: m.embedding_dropout,
        head_dropout: m.head_dropout,
        variational: m.variational,
        pooling: m.pooling,
    };
    Ok(Prepared {
        model_config,
        tokenizer,
        train,
        validation,
        test,
        num_classes: corpus.num_classes,
        class_names: corpus.class_names.clone(),
        class_weights,
        skipped: corpus.skipped,
        legacy_metrics: cfg.data.corpus == data::config::CorpusKind::Sst2,
    })
}

/// A sentence pair as one sequence: the first text, `[EOS]` as the separator, the second.
fn join_pair(first: &mut Vec<u32>, second: Vec<u32>, sep: u32) {
    first.push(sep);
    first.extend(second);
}

/// For a fresh run of `corpus = "text"` whose labels came from the training split: the
/// recorded `config.toml` gets `data.labels`, so the run names its classes in its config
/// as well as in its checkpoints, and a resume or `eval` keeps the same order.
fn record_labels(cfg: &Config, dir: &RunDir, class_names: &[String]) -> Result<()> {
    if cfg.data.corpus != data::config::CorpusKind::Text || cfg.data.labels.is_some() || !dir.config().exists() {
        return Ok(());
    }
    let mut with = cfg.clone();
    with.data.labels = Some(class_names.to_vec());
    crate::atomic::write(&dir.config(), with.to_toml()?.as_bytes())
}

/// How the registry builds this task and predicts with its runs.
pub const REGISTRATION: Registration = Registration {
    build: |cfg, dir, existing_run| Ok(Box::new(ClassifyTask::new(cfg, dir, existing_run)?)),
    predict: predict_cli,
};

/// `train predict` for a classifier: one line per text, `label<TAB>probability<TAB>text`,
/// or with `--json` one object per line: `text`, `label`, `probability` and
/// `probabilities` (every class's, by name). A run trained on sentence pairs
/// (`data.text_pair_column`) takes each input as `first<TAB>second`.
pub fn predict_cli(dir: &RunDir, cfg: &Config, args: &super::PredictArgs) -> Result<()> {
    let texts = super::inputs_or_stdin(&args.inputs)?;
    let (class_names, preds) = predict_probabilities(dir, cfg, &texts)?;
    for (text, probs) in texts.iter().zip(preds) {
        let best = argmax_row(&probs);
        let (label, p) = (&class_names[best], probs[best]);
        if args.json {
            let by_name: Map<String, Value> =
                class_names.iter().zip(&probs).map(|(n, p)| (n.clone(), json!(p))).collect();
            println!("{}", json!({"text": text, "label": label, "probability": p, "probabilities": by_name}));
        } else {
            println!("{label}\t{p:.4}\t{text}");
        }
    }
    Ok(())
}

fn argmax_row(probs: &[f32]) -> usize {
    // The first of equal maxima, as the tensor argmax picks it.
    let mut best = 0;
    for (i, &p) in probs.iter().enumerate() {
        if p > probs[best] {
            best = i;
        }
    }
    best
}

/// Label and probability of each text, from a finished run's best checkpoint.
pub fn predict(dir: &RunDir, cfg: &Config, texts: &[String]) -> Result<Vec<(String, f32)>> {
    let (names, probs) = predict_probabilities(dir, cfg, texts)?;
    Ok(probs
        .into_iter()
        .map(|p| {
            let best = argmax_row(&p);
            (names[best].clone(), p[best])
        })
        .collect())
}

/// The class names and, for each text, every class's probability (in label order), from a
/// finished run's best checkpoint. For a run trained on sentence pairs each text is
/// `first<TAB>second`.
pub fn predict_probabilities(dir: &RunDir, cfg: &Config, texts: &[String]) -> Result<(Vec<String>, Vec<Vec<f32>>)> {
    predict_probabilities_with(dir, cfg, texts, None)
}

/// [`predict_probabilities`], with the loaded f32 weights first compressed in memory to
/// `compress` (`model::compress::compress_varmap`): the in-memory counterpart of predicting
/// with a `train export` of the run, which gives the same numbers.
pub fn predict_probabilities_with(
    dir: &RunDir,
    cfg: &Config,
    texts: &[String],
    compress: Option<model::compress::Format>,
) -> Result<(Vec<String>, Vec<Vec<f32>>)> {
    let device = cfg.run.device()?;
    let tok_path = dir.tokenizer();
    let tokenizer = Tok::load(&tok_path).with_context(|| format!("loading {}", tok_path.display()))?;
    let (meta, class_names) = read_model_config(&dir.best())?;
    let varmap = candle_nn::VarMap::new();
    let vb = model::init::seeded_var_builder(&varmap, 0, DType::F32, &device);
    let mut net = model::classifier::Classifier::new(&meta, vb)?;
    let ckpt = model::checkpoint::load_into_varmap(dir.best(), &varmap)?;
    if let Some(c) = &ckpt.compressed {
        let kernels = net.attach_compressed(c)?;
        crate::export::report_loaded(c, kernels);
    } else if let Some(format) = compress {
        let c = model::compress::compress_varmap(&varmap, format)?;
        net.attach_compressed(&c)?;
    }
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(64) {
        let enc: Vec<Vec<u32>> = chunk
            .iter()
            .map(|t| {
                let mut ids = if cfg.data.text_pair_column.is_some() {
                    let Some((first, second)) = t.split_once('\t') else {
                        bail!(
                            "this run classifies text pairs (data.text_pair_column = {:?}): give each input as \
                             `first<TAB>second`, found {t:?}",
                            cfg.data.text_pair_column.as_deref().unwrap_or_default()
                        );
                    };
                    let mut ids = tokenizer.encode(first)?;
                    join_pair(&mut ids, tokenizer.encode(second)?, tokenizer.eos_id());
                    ids
                } else {
                    tokenizer.encode(t)?
                };
                if let Some(m) = cfg.data.max_len {
                    ids.truncate(m);
                }
                if ids.is_empty() {
                    ids.push(tokenizer.unk_id());
                }
                Ok(ids)
            })
            .collect::<Result<_>>()?;
        let time = enc.iter().map(Vec::len).max().unwrap_or(1);
        let mut ids = vec![tokenizer.pad_id(); enc.len() * time];
        for (i, e) in enc.iter().enumerate() {
            ids[i * time..i * time + e.len()].copy_from_slice(e);
        }
        let lengths: Vec<usize> = enc.iter().map(Vec::len).collect();
        let ids = Tensor::from_vec(ids, (enc.len(), time), &device)?;
        let logits = net.forward(&ids, &lengths, false, None, false)?.logits;
        out.extend(model::classifier::probabilities(&logits)?.to_dtype(DType::F32)?.to_vec2::<f32>()?);
    }
    Ok((class_names, out))
}

/// The classifier config and class names stored in a checkpoint's metadata.
pub fn read_model_config(path: &std::path::Path) -> Result<(ClassifierConfig, Vec<String>)> {
    let ckpt = model::checkpoint::read(path, &Device::Cpu)?;
    let meta = ckpt.config.ok_or_else(|| {
        anyhow!("{}: no model config in the metadata (not a sluice classifier checkpoint)", path.display())
    })?;
    let config = serde_json::from_value(meta["model"].clone())
        .with_context(|| format!("{}: model config in metadata", path.display()))?;
    let names = serde_json::from_value(meta["class_names"].clone())
        .with_context(|| format!("{}: class names in metadata", path.display()))?;
    Ok((config, names))
}

/// The classification task: prepared data plus the model.
pub struct ClassifyTask {
    prepared: Prepared,
    net: Classifier,
    varmap: VarMap,
    device: Device,
    l2_embeddings: bool,
    word_dropout: f64,
    epoch_batches: Vec<Batch>,
    embedding_grad: model::ops::SparseGradSlot,
    /// Where the test split's confusion matrix is drawn.
    confusion_svg: std::path::PathBuf,
}

impl ClassifyTask {
    /// Prepares the data and builds the model (seeded by `run.seed`).
    pub fn new(cfg: &Config, dir: &RunDir, existing_run: bool) -> Result<Self> {
        let device = cfg.run.device()?;
        let prepared = prepare(cfg, dir, existing_run)?;
        if !existing_run {
            record_labels(cfg, dir, &prepared.class_names)?;
        }
        let varmap = VarMap::new();
        let vb = model::init::seeded_var_builder(&varmap, cfg.run.seed, DType::F32, &device);
        let mut net = Classifier::new(&prepared.model_config, vb).context("building the model")?;
        // The optimizer reads the embedding table's used rows (`sparse_grads`).
        let embedding_grad = net.sparse_embedding_grad();
        Ok(Self {
            prepared,
            net,
            varmap,
            device,
            l2_embeddings: cfg.train.l2_embeddings,
            word_dropout: cfg.model.word_dropout,
            epoch_batches: Vec::new(),
            embedding_grad,
            confusion_svg: dir.root.join(crate::confusion::FILE),
        })
    }

    fn split(&self, split: SplitName) -> &Split {
        match split {
            SplitName::Train => &self.prepared.train,
            SplitName::Validation => &self.prepared.validation,
            SplitName::Test => &self.prepared.test,
        }
    }
}

impl Task for ClassifyTask {
    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn penalised(&self, name: &str) -> bool {
        !name.contains("bias") && (!name.starts_with("embedding.") || self.l2_embeddings)
    }

    fn start_epoch(&mut self, epoch: usize) -> Result<usize> {
        self.epoch_batches = self.prepared.train.batches_for_epoch(epoch);
        Ok(self.epoch_batches.len())
    }

    fn train_step(&self, index: usize, rng: &mut SeededRng) -> Result<StepOutput> {
        let b = &self.epoch_batches[index];
        let ids = if self.word_dropout > 0.0 {
            let unk = self.prepared.tokenizer.unk_id();
            let mut ids = b.ids.clone();
            for (row, &len) in ids.chunks_mut(b.time).zip(&b.lengths) {
                for id in &mut row[..len] {
                    if rng.uniform01() < self.word_dropout {
                        *id = unk;
                    }
                }
            }
            Tensor::from_vec(ids, (b.batch, b.time), &self.device)?
        } else {
            b.ids_tensor(&self.device)?
        };
        let out = self.net.forward(&ids, &b.lengths, true, Some(rng), false)?;
        let loss = cross_entropy(&out.logits, &b.labels, &self.prepared.class_weights)?;
        let correct = correct(&out.logits, &b.labels)?;
        Ok(StepOutput { loss, examples: b.labels.len(), tokens: b.lengths.iter().sum(), correct: Some(correct) })
    }

    /// Loss, accuracy, precision/recall/F1 and the confusion matrix.
    fn evaluate(&self, split: SplitName) -> Result<Map<String, Value>> {
        let mut confusion = Confusion::new(self.prepared.num_classes);
        let (mut loss_sum, mut n) = (0.0f64, 0usize);
        for b in self.split(split).eval_batches() {
            let ids = b.ids_tensor(&self.device)?;
            let out = self.net.forward(&ids, &b.lengths, false, None, false)?;
            let loss = cross_entropy(&out.logits, &b.labels, &[])?;
            loss_sum += loss.to_dtype(DType::F64)?.to_scalar::<f64>()? * b.labels.len() as f64;
            n += b.labels.len();
            for (p, l) in argmax(&out.logits)?.iter().zip(&b.labels) {
                confusion.add(*l as usize, *p);
            }
        }
        let mut m = Map::new();
        m.insert("loss".into(), json!(loss_sum / n.max(1) as f64));
        let names = &self.prepared.class_names;
        if self.prepared.legacy_metrics {
            m.extend(confusion.to_json(names));
        } else {
            m.extend(confusion.report(names));
            let s = self.prepared.skipped;
            if s.iter().any(|&k| k > 0) {
                m.insert("skipped_rows".into(), json!({"train": s[0], "validation": s[1], "test": s[2]}));
            }
        }
        if split == SplitName::Test {
            let title = format!("test split: {} examples, accuracy {:.4}", confusion.total(), confusion.accuracy());
            crate::confusion::write(&self.confusion_svg, &confusion.counts, names, &title)?;
        }
        Ok(m)
    }

    fn sparse_grads(&self) -> Vec<(String, model::ops::SparseRows)> {
        self.embedding_grad.take().map(|r| vec![("embedding.weight".to_string(), r)]).unwrap_or_default()
    }

    fn attach_compressed(&mut self, c: &model::compress::Compressed) -> Result<bool> {
        Ok(self.net.attach_compressed(c)?)
    }

    fn checkpoint_meta(&self) -> Value {
        json!({"kind": "classifier", "model": &self.prepared.model_config,
               "class_names": &self.prepared.class_names})
    }
}

#[cfg(test)]
mod tests {
    use crate::config::ClassWeights;

    #[test]
    fn class_weights_balanced_and_explicit() {
        #[derive(serde::Deserialize)]
        struct T {
            w: ClassWeights,
        }
        let t: T = toml::from_str("w = \"balanced\"").unwrap();
        // scikit-learn's compute_class_weight("balanced"): n / (k * count).
        let w = t.w.resolve(&[3, 1, 6]);
        let want = [10.0 / 9.0, 10.0 / 3.0, 10.0 / 18.0];
        assert!(w.iter().zip(want).all(|(a, b)| (*a as f64 - b).abs() < 1e-6), "{w:?}");
        assert_eq!(t.w.resolve(&[2, 0]), [1.0, 0.0]);
        let t: T = toml::from_str("w = [1.0, 2.5]").unwrap();
        assert_eq!(t.w.resolve(&[9, 9]), [1.0, 2.5]);
        assert!(toml::from_str::<T>("w = \"balance\"").is_err());
    }

    #[test]
    fn pairs_join_with_the_separator() {
        let mut a = vec![5, 6];
        super::join_pair(&mut a, vec![7], 3);
        assert_eq!(a, [5, 6, 3, 7]);
        assert_eq!(super::argmax_row(&[0.2, 0.5, 0.5, 0.1]), 1);
    }
}
