//! Sequence labelling (`task = "tag"`): part-of-speech tags (UD English EWT) and named
//! entities (CoNLL-2003) with a BiLSTM(-CNN)-CRF ([`SequenceLabeler`]). Token-and-tag files
//! (`[tag]` format and column) → tag-scheme conversion → word and character vocabularies
//! from the training split (`tag_vocab.json`) → length-bucketed batches → CRF negative
//! log-likelihood; token accuracy, and for entity tags seqeval's entity-level P/R/F1.
//! `train tag` and `train predict` tag whitespace-tokenised text with a finished run.

use super::{Registration, SplitName, StepOutput, Task};
use crate::config::{Config, TagConfig};
use crate::rundir::RunDir;
use crate::seqeval::{entity_scores, token_accuracy};
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use data::batch::{BatchOptions, BatchOrder};
use data::conll::{read_tagged, TagColumn, TaggedSentence};
use data::tag_scheme::{self, TagScheme};
use model::crf::{Constraints, CrfConfig};
use model::labeler::{CharBatch, CharConfig, CharEncoder, LabelerConfig, SequenceLabeler};
use model::rng::SeededRng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The run file holding the vocabularies.
pub const VOCAB_FILE: &str = "tag_vocab.json";
/// Word and character id of padding.
const PAD: u32 = 0;
/// Word and character id of anything not in the vocabulary.
const UNK: u32 = 1;

/// Word and character vocabularies of a run, with the word normalisation they assume.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vocab {
    /// Words by id; 0 = `<pad>`, 1 = `<unk>`.
    pub words: Vec<String>,
    /// Characters by id; 0 = `<pad>`, 1 = `<unk>`.
    pub chars: Vec<String>,
    /// Words are looked up lowercased.
    pub lowercase: bool,
    /// Words are looked up with digits replaced by 0.
    pub digits_to_zero: bool,
    /// Characters kept per word.
    pub max_word_len: usize,
    /// Tags by id in the target scheme (also in the checkpoints' metadata; here so that a run
    /// interrupted before its first checkpoint resumes with the same numbering).
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(skip)]
    word_ids: HashMap<String, u32>,
    #[serde(skip)]
    char_ids: HashMap<char, u32>,
}

impl Vocab {
    fn normalise(&self, word: &str) -> String {
        let w = if self.lowercase { word.to_lowercase() } else { word.to_string() };
        if self.digits_to_zero {
            w.chars().map(|c| if c.is_ascii_digit() { '0' } else { c }).collect()
        } else {
            w
        }
    }

    fn index(mut self) -> Self {
        self.word_ids = self.words.iter().enumerate().map(|(i, w)| (w.clone(), i as u32)).collect();
        self.char_ids =
            self.chars.iter().enumerate().filter_map(|(i, c)| Some((c.chars().next()?, i as u32))).collect();
        self
    }

    /// Counts the training words (normalised) and characters; words seen fewer than
    /// `min_count` times are left out. Sorted by count, then text, for a stable numbering.
    pub fn build(train: &[TaggedSentence], t: &TagConfig) -> Self {
        let mut v = Vocab {
            words: vec![],
            chars: vec![],
            lowercase: t.lowercase,
            digits_to_zero: t.digits_to_zero,
            max_word_len: t.max_word_len,
            labels: Vec::new(),
            word_ids: HashMap::new(),
            char_ids: HashMap::new(),
        };
        let mut words: BTreeMap<String, usize> = BTreeMap::new();
        let mut chars: BTreeMap<char, usize> = BTreeMap::new();
        for s in train {
            for tok in &s.tokens {
                *words.entry(v.normalise(tok)).or_default() += 1;
                for c in tok.chars() {
                    *chars.entry(c).or_default() += 1;
                }
            }
        }
        let mut words: Vec<(String, usize)> = words.into_iter().filter(|(_, n)| *n >= t.min_count).collect();
        words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut chars: Vec<(char, usize)> = chars.into_iter().collect();
        chars.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.words = ["<pad>", "<unk>"].iter().map(|s| s.to_string()).chain(words.into_iter().map(|w| w.0)).collect();
        v.chars = ["<pad>", "<unk>"]
            .iter()
            .map(|s| s.to_string())
            .chain(chars.into_iter().map(|c| c.0.to_string()))
            .collect();
        v.index()
    }

    /// Reads `tag_vocab.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let v: Vocab =
            serde_json::from_str(&text).with_context(|| format!("{}: not a tag vocabulary", path.display()))?;
        Ok(v.index())
    }

    /// The word's id (1 when unknown).
    pub fn word_id(&self, word: &str) -> u32 {
        self.word_ids.get(&self.normalise(word)).copied().unwrap_or(UNK)
    }

    /// The word's character ids, cut to `max_word_len` (1 for unknown characters).
    pub fn char_ids(&self, word: &str) -> Vec<u32> {
        word.chars().take(self.max_word_len).map(|c| self.char_ids.get(&c).copied().unwrap_or(UNK)).collect()
    }
}

/// A split as ids: per sentence its word ids, each word's character ids and tag ids.
pub struct Encoded {
    words: Vec<Vec<u32>>,
    chars: Vec<Vec<Vec<u32>>>,
    tags: Vec<Vec<u32>>,
}

impl Encoded {
    fn encode(sents: &[TaggedSentence], vocab: &Vocab, tags: Vec<Vec<u32>>) -> Self {
        Encoded {
            words: sents.iter().map(|s| s.tokens.iter().map(|w| vocab.word_id(w)).collect()).collect(),
            chars: sents.iter().map(|s| s.tokens.iter().map(|w| vocab.char_ids(w)).collect()).collect(),
            tags,
        }
    }

    /// One padded batch of the given sentences.
    fn batch(&self, indices: &[usize], with_chars: bool) -> Batch {
        let lengths: Vec<usize> = indices.iter().map(|&i| self.words[i].len()).collect();
        let time = lengths.iter().copied().max().unwrap_or(1);
        let mut words = vec![PAD; indices.len() * time];
        let mut tags = vec![0u32; indices.len() * time];
        for (row, &i) in indices.iter().enumerate() {
            words[row * time..row * time + lengths[row]].copy_from_slice(&self.words[i]);
            tags[row * time..row * time + lengths[row]].copy_from_slice(&self.tags[i]);
        }
        let chars = with_chars.then(|| {
            let all: Vec<&Vec<u32>> = indices.iter().flat_map(|&i| &self.chars[i]).collect();
            let width = all.iter().map(|c| c.len()).max().unwrap_or(1).max(1);
            let mut ids = vec![PAD; all.len() * width];
            let mut lens = Vec::with_capacity(all.len());
            for (k, c) in all.iter().enumerate() {
                ids[k * width..k * width + c.len()].copy_from_slice(c);
                lens.push(c.len().max(1));
            }
            CharBatch { ids, lengths: lens, width }
        });
        Batch { indices: indices.to_vec(), words, lengths, time, chars, tags }
    }
}

/// One batch as the model wants it.
pub struct Batch {
    /// The sentences' indices in their split.
    pub indices: Vec<usize>,
    /// (batch, time) word ids, padded.
    pub words: Vec<u32>,
    /// Real words per sentence.
    pub lengths: Vec<usize>,
    /// Columns.
    pub time: usize,
    /// Characters of the real words (when the model reads them).
    pub chars: Option<CharBatch>,
    /// (batch, time) tag ids, padding 0.
    pub tags: Vec<u32>,
}

/// Everything read and encoded for training or evaluation.
pub struct Prepared {
    /// The model's configuration.
    pub model_config: LabelerConfig,
    /// Words and characters.
    pub vocab: Vocab,
    /// Tags by id, in the target scheme.
    pub labels: Vec<String>,
    /// The scheme the model writes.
    pub scheme: TagScheme,
    /// Splits: train, validation, test.
    pub splits: [Encoded; 3],
    /// Sentence lengths per split (batching keys).
    lengths: [Vec<usize>; 3],
    /// Word ids seen once in training.
    singletons: Vec<bool>,
}

fn split_file(cfg: &Config, which: usize) -> Result<PathBuf> {
    let (key, name) = match which {
        0 => ("data.train_file", &cfg.data.train_file),
        1 => ("data.validation_file", &cfg.data.validation_file),
        _ => ("data.test_file", &cfg.data.test_file),
    };
    let dir = cfg.data.dir.as_ref().ok_or_else(|| anyhow!("config key `data.dir`: task \"tag\" reads a folder"))?;
    let name =
        name.as_ref().ok_or_else(|| anyhow!("config key `{key}`: task \"tag\" needs the file's name in data.dir"))?;
    Ok(dir.join(name))
}

/// The label set of a target scheme from the training tags: every tag for plain labels
/// (sorted), `O` and every prefix of every entity type for entity schemes.
fn label_set(train_tags: &[Vec<String>], scheme: TagScheme) -> Vec<String> {
    if scheme == TagScheme::None {
        let set: BTreeSet<&String> = train_tags.iter().flatten().collect();
        return set.into_iter().cloned().collect();
    }
    let kinds: BTreeSet<String> =
        train_tags.iter().flatten().filter_map(|t| tag_scheme::kind_of(t).map(String::from)).collect();
    tag_scheme::labels_for(&kinds.into_iter().collect::<Vec<_>>(), scheme)
}

/// Reads the three splits, converts their tags, builds (or, for an existing run, reloads)
/// the vocabularies and encodes everything.
pub fn prepare(cfg: &Config, dir: &RunDir, existing_run: bool) -> Result<Prepared> {
    let t = &cfg.tag;
    let column = TagColumn::parse(t.format, t.column.as_deref())?;
    let scheme = t.target();
    let mut sents = Vec::new();
    let mut converted = Vec::new();
    let mut paths = Vec::new();
    for which in 0..3 {
        let path = split_file(cfg, which)?;
        let s = read_tagged(&path, &column).with_context(|| format!("reading {}", path.display()))?;
        if s.is_empty() {
            bail!("{}: no sentences", path.display());
        }
        converted.push(s.iter().map(|x| tag_scheme::convert(&x.tags, scheme)).collect::<Vec<_>>());
        sents.push(s);
        paths.push(path);
    }
    let vocab_path = dir.root.join(VOCAB_FILE);
    let (vocab, labels) = if existing_run && vocab_path.exists() {
        let v = Vocab::load(&vocab_path)?;
        let labels = if v.labels.is_empty() {
            read_meta(&dir.best()).or_else(|_| read_meta(&dir.last())).map(|m| m.1)?
        } else {
            v.labels.clone()
        };
        (v, labels)
    } else {
        let mut v = Vocab::build(&sents[0], t);
        v.labels = label_set(&converted[0], scheme);
        crate::atomic::write_json(&vocab_path, &v)?;
        let labels = v.labels.clone();
        (v, labels)
    };
    let label_ids: HashMap<&str, u32> = labels.iter().enumerate().map(|(i, l)| (l.as_str(), i as u32)).collect();
    let mut splits = Vec::new();
    for which in 0..3 {
        let mut ids = Vec::with_capacity(converted[which].len());
        for (s, tags) in sents[which].iter().zip(&converted[which]) {
            let row = tags
                .iter()
                .enumerate()
                .map(|(k, tag)| {
                    label_ids.get(tag.as_str()).copied().ok_or_else(|| {
                        anyhow!(
                            "{}:{}: tag `{tag}` (word {} of the sentence starting on this line) is not in the label set learned from the training split ({})",
                            paths[which].display(),
                            s.line,
                            k + 1,
                            labels.join(" ")
                        )
                    })
                })
                .collect::<Result<Vec<u32>>>()?;
            ids.push(row);
        }
        splits.push(Encoded::encode(&sents[which], &vocab, ids));
    }
    let mut counts = vec![0usize; vocab.words.len()];
    for w in splits[0].words.iter().flatten() {
        counts[*w as usize] += 1;
    }
    let singletons = counts.iter().map(|&n| n == 1).collect();
    let lengths = [0, 1, 2].map(|i| splits[i].words.iter().map(Vec::len).collect());
    let chars = match t.chars.as_str() {
        "none" => None,
        enc => Some(CharConfig {
            vocab_size: vocab.chars.len(),
            dim: t.char_dim,
            encoder: if enc == "cnn" { CharEncoder::Cnn } else { CharEncoder::Lstm },
            hidden: t.char_hidden,
            width: t.char_width,
        }),
    };
    let m = &cfg.model;
    let char_out = chars.as_ref().map_or(0, CharConfig::output_size);
    let crf = t.crf.then(|| {
        let constraints = (t.constraints && scheme != TagScheme::None).then(|| {
            let (start, end, transitions) = tag_scheme::allowed_transitions(&labels, scheme);
            Constraints { start, end, transitions }
        });
        CrfConfig { num_tags: labels.len(), constraints }
    });
    let model_config = LabelerConfig {
        vocab_size: vocab.words.len(),
        embedding_dim: m.embedding_dim,
        chars,
        lstm: m.lstm(m.embedding_dim + char_out),
        num_tags: labels.len(),
        crf,
        embedding_dropout: m.embedding_dropout,
        dropout: m.dropout,
    };
    let [a, b, c]: [Encoded; 3] = splits.try_into().map_err(|_| anyhow!("three splits"))?;
    Ok(Prepared { model_config, vocab, labels, scheme, splits: [a, b, c], lengths, singletons })
}

/// The model config, labels and target scheme stored in a checkpoint's metadata.
pub fn read_meta(path: &Path) -> Result<(LabelerConfig, Vec<String>, TagScheme)> {
    let ckpt = model::checkpoint::read(path, &Device::Cpu)?;
    let meta = ckpt.config.ok_or_else(|| anyhow!("{}: no model config in the metadata", path.display()))?;
    if meta["kind"] != "labeler" {
        bail!("{}: not a sequence-labeller checkpoint (kind {})", path.display(), meta["kind"]);
    }
    let get = |k: &str| meta.get(k).cloned().ok_or_else(|| anyhow!("{}: metadata lacks `{k}`", path.display()));
    Ok((
        serde_json::from_value(get("model")?).with_context(|| format!("{}: model config", path.display()))?,
        serde_json::from_value(get("labels")?).with_context(|| format!("{}: labels", path.display()))?,
        serde_json::from_value(get("scheme")?).with_context(|| format!("{}: scheme", path.display()))?,
    ))
}

/// How the registry builds this task and predicts with its runs.
pub const REGISTRATION: Registration = Registration {
    build: |cfg, dir, existing_run| Ok(Box::new(TagTask::new(cfg, dir, existing_run)?)),
    predict: |dir, _cfg, args| tag_texts(dir, &args.inputs, args.json),
};

/// The sequence-labelling task: prepared data plus the model.
pub struct TagTask {
    prepared: Prepared,
    net: SequenceLabeler,
    varmap: VarMap,
    device: Device,
    batch_size: usize,
    seed: u64,
    pool: usize,
    singleton_unk: f64,
    l2_embeddings: bool,
    epoch_batches: Vec<Batch>,
    embedding_grad: model::ops::SparseGradSlot,
}

impl TagTask {
    /// Prepares the data and builds the model (seeded by `run.seed`).
    pub fn new(cfg: &Config, dir: &RunDir, existing_run: bool) -> Result<Self> {
        let device = cfg.run.device()?;
        let prepared = prepare(cfg, dir, existing_run)?;
        let varmap = VarMap::new();
        let vb = model::init::seeded_var_builder(&varmap, cfg.run.seed, DType::F32, &device);
        let mut net = SequenceLabeler::new(&prepared.model_config, vb).context("building the model")?;
        let embedding_grad = net.sparse_embedding_grad();
        Ok(Self {
            prepared,
            net,
            varmap,
            device,
            batch_size: cfg.train.batch_size,
            seed: cfg.run.seed,
            pool: cfg.data.bucket_pool,
            singleton_unk: cfg.tag.singleton_unk,
            l2_embeddings: cfg.train.l2_embeddings,
            epoch_batches: Vec::new(),
            embedding_grad,
        })
    }

    fn order(&self, split: usize, shuffle: bool) -> Result<BatchOrder> {
        let opts = BatchOptions {
            batch_size: self.batch_size,
            seed: self.seed,
            pool: self.pool,
            shuffle,
            drop_last: false,
            max_len: None,
        };
        let keys = self.prepared.lengths[split].iter().map(|&l| l as u64).collect();
        Ok(BatchOrder::new(keys, &opts)?)
    }

    fn scores(&self, b: &Batch, words: Vec<u32>, rng: Option<&mut SeededRng>) -> Result<Tensor> {
        let ids = Tensor::from_vec(words, (b.lengths.len(), b.time), &self.device)?;
        Ok(self.net.forward(&ids, &b.lengths, b.chars.as_ref(), rng.is_some(), rng)?)
    }
}

impl Task for TagTask {
    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn penalised(&self, name: &str) -> bool {
        !name.contains("bias") && !name.starts_with("crf.") && (!name.contains("embedding.") || self.l2_embeddings)
    }

    fn start_epoch(&mut self, epoch: usize) -> Result<usize> {
        let chars = self.prepared.model_config.chars.is_some();
        let train = &self.prepared.splits[0];
        self.epoch_batches = self.order(0, true)?.plan(epoch as u64).iter().map(|ix| train.batch(ix, chars)).collect();
        Ok(self.epoch_batches.len())
    }

    fn train_step(&self, index: usize, rng: &mut SeededRng) -> Result<StepOutput> {
        let b = &self.epoch_batches[index];
        let mut words = b.words.clone();
        if self.singleton_unk > 0.0 {
            for (row, &len) in words.chunks_mut(b.time).zip(&b.lengths) {
                for w in &mut row[..len] {
                    if self.prepared.singletons[*w as usize] && rng.uniform01() < self.singleton_unk {
                        *w = UNK;
                    }
                }
            }
        }
        let scores = self.scores(b, words, Some(rng))?;
        let loss = self.net.loss(&scores, &b.tags, &b.lengths)?;
        Ok(StepOutput { loss, examples: b.lengths.len(), tokens: b.lengths.iter().sum(), correct: None })
    }

    /// Loss (per sentence), token accuracy, and for entity tags entity-level P/R/F1 overall
    /// and per type, as seqeval computes them.
    fn evaluate(&self, split: SplitName) -> Result<Map<String, Value>> {
        let which = match split {
            SplitName::Train => 0,
            SplitName::Validation => 1,
            SplitName::Test => 2,
        };
        let enc = &self.prepared.splits[which];
        let chars = self.prepared.model_config.chars.is_some();
        let labels = &self.prepared.labels;
        let n = enc.words.len();
        let (mut gold, mut pred) = (vec![Vec::new(); n], vec![Vec::new(); n]);
        let mut loss_sum = 0.0f64;
        for ix in self.order(which, false)?.plan(0) {
            let b = enc.batch(&ix, chars);
            let scores = self.scores(&b, b.words.clone(), None)?;
            let loss = self.net.loss(&scores, &b.tags, &b.lengths)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            loss_sum += loss * b.lengths.len() as f64;
            for (i, path) in ix.iter().zip(self.net.decode(&scores, &b.lengths)?) {
                pred[*i] = path.iter().map(|&t| labels[t].as_str()).collect::<Vec<_>>();
                gold[*i] = enc.tags[*i].iter().map(|&t| labels[t as usize].as_str()).collect();
            }
        }
        let mut m = Map::new();
        m.insert("loss".into(), json!(loss_sum / n.max(1) as f64));
        m.insert("accuracy".into(), json!(token_accuracy(&gold, &pred)));
        if self.prepared.scheme != TagScheme::None {
            m.extend(entity_scores(&gold, &pred).to_json());
        }
        Ok(m)
    }

    fn sparse_grads(&self) -> Vec<(String, model::ops::SparseRows)> {
        self.embedding_grad.take().map(|r| vec![("embedding.weight".to_string(), r)]).unwrap_or_default()
    }

    fn checkpoint_meta(&self) -> Value {
        json!({"kind": "labeler", "model": &self.prepared.model_config, "labels": &self.prepared.labels,
               "scheme": self.prepared.scheme})
    }
}

/// `train tag`: tag texts with a finished run.
#[derive(Debug, Clone, clap::Args)]
pub struct TagArgs {
    /// The run directory.
    #[arg(long)]
    pub run: PathBuf,
    /// One JSON object per text: tokens, tags and (entity runs) entities.
    #[arg(long)]
    pub json: bool,
    /// Texts, tokenised on whitespace; stdin lines when none are given.
    pub texts: Vec<String>,
}

/// Runs `train tag`.
pub fn cli(args: &TagArgs) -> Result<()> {
    let dir = RunDir::open(&args.run)?;
    tag_texts(&dir, &args.texts, args.json)
}

/// One tagged text: its tokens, their tags, and the entities (type, first token, one past
/// the last token) for entity runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tagged {
    /// Whitespace-separated tokens.
    pub tokens: Vec<String>,
    /// One tag per token (IOB2 for entity runs, whatever their training scheme).
    pub tags: Vec<String>,
    /// Entities with token spans; empty for plain labels.
    pub entities: Vec<Value>,
}

/// Tags each text (whitespace tokens) with the run's best checkpoint.
pub fn tag(dir: &RunDir, texts: &[String]) -> Result<Vec<Tagged>> {
    LoadedTagger::load(dir)?.tag(texts)
}

/// A finished tagging run in memory: `train tag` loads one per call, `train serve` once.
pub struct LoadedTagger {
    /// The model's configuration.
    pub model_config: LabelerConfig,
    /// Tags by id.
    pub labels: Vec<String>,
    /// The scheme the model writes.
    pub scheme: TagScheme,
    vocab: Vocab,
    net: SequenceLabeler,
    device: Device,
    _varmap: VarMap,
}

impl LoadedTagger {
    /// Loads the run's vocabularies and best checkpoint.
    pub fn load(dir: &RunDir) -> Result<Self> {
        let cfg = dir.load_config()?;
        let device = cfg.run.device()?;
        let vocab = Vocab::load(&dir.root.join(VOCAB_FILE))?;
        let (model_config, labels, scheme) = read_meta(&dir.best())?;
        let varmap = VarMap::new();
        let net =
            SequenceLabeler::new(&model_config, model::init::seeded_var_builder(&varmap, 0, DType::F32, &device))?;
        model::checkpoint::load_into_varmap(dir.best(), &varmap)?;
        Ok(Self { model_config, labels, scheme, vocab, net, device, _varmap: varmap })
    }

    /// Whether the run tags entities (then outputs carry spans).
    pub fn entities(&self) -> bool {
        self.scheme != TagScheme::None
    }

    /// Tags each text (whitespace tokens), 64 texts per padded batch; an empty text gets no tags.
    pub fn tag(&self, texts: &[String]) -> Result<Vec<Tagged>> {
        let (net, labels, scheme) = (&self.net, &self.labels, self.scheme);
        let sents: Vec<TaggedSentence> = texts
            .iter()
            .map(|t| {
                let tokens: Vec<String> = t.split_whitespace().map(String::from).collect();
                TaggedSentence { tags: vec!["O".into(); tokens.len()], tokens, line: 0 }
            })
            .collect();
        let real: Vec<usize> = (0..sents.len()).filter(|&i| !sents[i].tokens.is_empty()).collect();
        let tag_ids = sents.iter().map(|s| vec![0; s.tokens.len()]).collect();
        let enc = Encoded::encode(&sents, &self.vocab, tag_ids);
        let mut out: Vec<Tagged> =
            sents.iter().map(|s| Tagged { tokens: s.tokens.clone(), tags: vec![], entities: vec![] }).collect();
        for chunk in real.chunks(64) {
            let b = enc.batch(chunk, self.model_config.chars.is_some());
            let ids = Tensor::from_vec(b.words.clone(), (b.lengths.len(), b.time), &self.device)?;
            let scores = net.forward(&ids, &b.lengths, b.chars.as_ref(), false, None)?;
            for (&i, path) in chunk.iter().zip(net.decode(&scores, &b.lengths)?) {
                let tags: Vec<String> = path.iter().map(|&t| labels[t].clone()).collect();
                let o = &mut out[i];
                if scheme == TagScheme::None {
                    o.tags = tags;
                } else {
                    o.tags = tag_scheme::convert(&tags, TagScheme::Iob2);
                    o.entities = tag_scheme::spans(&tags)
                        .into_iter()
                        .map(|s| {
                            json!({"type": s.kind, "start": s.start, "end": s.end + 1,
                                   "text": o.tokens[s.start..=s.end].join(" ")})
                        })
                        .collect();
                }
            }
        }
        Ok(out)
    }
}

/// Prints each text tagged: `word/TAG ...` (and, for entity runs, a tab and the entities as
/// `[TYPE start..end: words]`), or one JSON object per line with `json`.
pub fn tag_texts(dir: &RunDir, inputs: &[String], json_out: bool) -> Result<()> {
    let texts = super::inputs_or_stdin(inputs)?;
    for (text, t) in texts.iter().zip(tag(dir, &texts)?) {
        if json_out {
            println!("{}", json!({"text": text, "tokens": t.tokens, "tags": t.tags, "entities": t.entities}));
            continue;
        }
        let words: Vec<String> = t.tokens.iter().zip(&t.tags).map(|(w, g)| format!("{w}/{g}")).collect();
        let mut line = words.join(" ");
        if !t.entities.is_empty() {
            let ents: Vec<String> = t
                .entities
                .iter()
                .map(|e| {
                    format!(
                        "[{} {}..{}: {}]",
                        e["type"].as_str().unwrap_or("?"),
                        e["start"],
                        e["end"],
                        e["text"].as_str().unwrap_or("")
                    )
                })
                .collect();
            line = format!("{line}\t{}", ents.join(" "));
        }
        println!("{line}");
    }
    Ok(())
}
