//! Tokenizers from the `tokenizers` crate: word-level, WordPiece or BPE trained on the
//! training split only, or a pretrained `tokenizer.json` from the hub or a folder.
//!
//! Trained tokenizers reserve `[PAD]`=0, `[UNK]`=1, `[BOS]`=2, `[EOS]`=3. A pretrained one
//! keeps its own ids; any of the four it lacks is added as a special token at the end of
//! its vocabulary.

use crate::config::{PreTokenizer, TokenizerConfig, TokenizerModel};
use crate::error::{Error, Result};
use crate::source::{HubOptions, RepoKind, Source};
use std::path::{Path, PathBuf};
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::wordlevel::{WordLevel, WordLevelTrainer};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::{unicode::NFKC, Lowercase, NormalizerWrapper, Sequence};
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::whitespace::{Whitespace, WhitespaceSplit};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, DecoderWrapper, Tokenizer};

/// Padding token (id 0 when trained): fills batches past each row's length.
pub const PAD: &str = "[PAD]";
/// Unknown token (id 1 when trained): stands for text outside the vocabulary.
pub const UNK: &str = "[UNK]";
/// Beginning of sequence (id 2 when trained): the first decoder input of a translation.
pub const BOS: &str = "[BOS]";
/// End of sequence (id 3 when trained): the last decoder target of a translation.
pub const EOS: &str = "[EOS]";
/// The special tokens in id order for trained tokenizers.
pub const SPECIAL_TOKENS: [&str; 4] = [PAD, UNK, BOS, EOS];

/// A tokenizer with the ids of its special tokens at hand.
#[derive(Clone)]
pub struct Tok {
    inner: Tokenizer,
    pad_id: u32,
    unk_id: u32,
    bos_id: u32,
    eos_id: u32,
}

impl std::fmt::Debug for Tok {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tok")
            .field("vocab_size", &self.vocab_size())
            .field("pad_id", &self.pad_id)
            .field("unk_id", &self.unk_id)
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .finish()
    }
}

fn tok_err(path: Option<&Path>, e: impl std::fmt::Display) -> Error {
    Error::Tokenizer { path: path.map(Path::to_path_buf), msg: e.to_string() }
}

/// Trains a tokenizer on `train_texts` as `cfg` says, or, when `cfg` names a pretrained one
/// (`hub` or `path`), loads it (reading HF_HOME / HF_HUB_OFFLINE from the environment).
///
/// Errors: [`Error::Config`] for an invalid `[tokenizer]` section; for a pretrained one, those
/// of [`crate::Source::fetch`] and [`Tok::load`] ([`Error::MissingFile`] when `path` does not
/// exist); when training, [`Error::Tokenizer`] if the tokenizers crate fails or the training
/// texts yield no vocabulary beyond the four special tokens.
pub fn build_tokenizer<'a>(cfg: &TokenizerConfig, train_texts: impl Iterator<Item = &'a str> + Send) -> Result<Tok> {
    build_tokenizer_with(cfg, train_texts, &HubOptions::from_env())
}

/// [`build_tokenizer`] with explicit hub options.
pub fn build_tokenizer_with<'a>(
    cfg: &TokenizerConfig,
    train_texts: impl Iterator<Item = &'a str> + Send,
    hub: &HubOptions,
) -> Result<Tok> {
    cfg.validate()?;
    if let Some(path) = pretrained_path(cfg, hub)? {
        return Tok::load(path);
    }
    let model_err = |e: tokenizers::Error| tok_err(None, e);
    let mut tk = match cfg.model {
        TokenizerModel::WordLevel => {
            Tokenizer::new(WordLevel::builder().unk_token(UNK.into()).build().map_err(model_err)?)
        }
        TokenizerModel::Wordpiece => {
            Tokenizer::new(WordPiece::builder().unk_token(UNK.into()).build().map_err(model_err)?)
        }
        TokenizerModel::Bpe => Tokenizer::new(BPE::builder().unk_token(UNK.into()).build().map_err(model_err)?),
    };
    let mut norms: Vec<NormalizerWrapper> = Vec::new();
    if cfg.nfkc {
        norms.push(NFKC.into());
    }
    if cfg.lowercase {
        norms.push(Lowercase.into());
    }
    if !norms.is_empty() {
        tk.with_normalizer(Some(Sequence::new(norms))).map_err(model_err)?;
    }
    let pre = cfg.pre_tokenizer();
    let pt: PreTokenizerWrapper = match pre {
        PreTokenizer::Whitespace => Whitespace.into(),
        PreTokenizer::WhitespaceSplit => WhitespaceSplit.into(),
        PreTokenizer::Bert => BertPreTokenizer.into(),
        PreTokenizer::Metaspace => Metaspace::new('▁', PrependScheme::Always, true).into(),
    };
    tk.with_pre_tokenizer(Some(pt));
    let decoder: Option<DecoderWrapper> = match (pre, cfg.model) {
        (PreTokenizer::Metaspace, _) => Some(Metaspace::new('▁', PrependScheme::Always, true).into()),
        (_, TokenizerModel::Wordpiece) => Some(WordPieceDecoder::default().into()),
        // BPE without a word-boundary marker: join pieces with spaces (lossy but readable).
        _ => None,
    };
    tk.with_decoder(decoder);
    let specials: Vec<AddedToken> = SPECIAL_TOKENS.iter().map(|s| AddedToken::from(*s, true)).collect();
    if cfg.model == TokenizerModel::Wordpiece {
        train_wordpiece(&mut tk, cfg, specials, train_texts)?;
    } else {
        let mut trainer: TrainerWrapper = match cfg.model {
            TokenizerModel::WordLevel => WordLevelTrainer::builder()
                .vocab_size(cfg.vocab_size)
                .min_frequency(cfg.min_frequency)
                .show_progress(false)
                .special_tokens(specials)
                .build()
                .map_err(|e| tok_err(None, e))?
                .into(),
            _ => BpeTrainerBuilder::new()
                .vocab_size(cfg.vocab_size)
                .min_frequency(cfg.min_frequency)
                .show_progress(false)
                .special_tokens(specials)
                .build()
                .into(),
        };
        tk.train(&mut trainer, train_texts).map_err(model_err)?;
    }
    let tok = Tok::from_tokenizer(tk, None)?;
    // The trainers put special tokens first; check rather than trust, since the model
    // relies on padding being id 0.
    if [tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id] != [0, 1, 2, 3] {
        return Err(tok_err(
            None,
            format!(
                "special tokens got ids {:?}, expected [0, 1, 2, 3]",
                [tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id]
            ),
        ));
    }
    if tok.vocab_size() <= SPECIAL_TOKENS.len() {
        return Err(tok_err(None, "the training texts produced no vocabulary (empty training split?)"));
    }
    Ok(tok)
}

/// WordPiece through the BPE trainer, as `WordPieceTrainer` does, but with the word counts
/// in a fixed-seed map filled in first-seen order. `WordPieceTrainer` counts in a map with
/// a random per-instance seed, and because the ids of "##x" pieces follow that map's
/// iteration order and break ties between equally frequent merges, its vocabulary changed
/// from run to run (caught by `training_is_deterministic`).
fn train_wordpiece<'a>(
    tk: &mut Tokenizer,
    cfg: &TokenizerConfig,
    specials: Vec<AddedToken>,
    texts: impl Iterator<Item = &'a str>,
) -> Result<()> {
    use tokenizers::{
        NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer as _,
    };
    let err = |e: tokenizers::Error| tok_err(None, e);
    let mut counts: ahash::AHashMap<compact_str::CompactString, u64> =
        std::collections::HashMap::with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4)).into();
    for text in texts {
        let mut n = NormalizedString::from(text);
        if let Some(norm) = tk.get_normalizer() {
            norm.normalize(&mut n).map_err(err)?;
        }
        let mut pre = PreTokenizedString::from(n);
        if let Some(pt) = tk.get_pre_tokenizer() {
            pt.pre_tokenize(&mut pre).map_err(err)?;
        }
        for (word, _, _) in pre.get_splits(OffsetReferential::Original, OffsetType::Byte) {
            *counts.entry(word.into()).or_default() += 1;
        }
    }
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(cfg.vocab_size)
        .min_frequency(cfg.min_frequency)
        .show_progress(false)
        .special_tokens(specials.clone())
        .continuing_subword_prefix("##".into())
        .build();
    let mut bpe = BPE::default();
    trainer.do_train(&counts, &mut bpe).map_err(err)?;
    let mut wp = WordPiece::from_bpe(&bpe);
    wp.unk_token = UNK.into();
    tk.with_model(wp);
    tk.add_special_tokens(specials).map_err(err)?;
    Ok(())
}

/// Where a pretrained tokenizer lives, if the config names one.
fn pretrained_path(cfg: &TokenizerConfig, hub: &HubOptions) -> Result<Option<PathBuf>> {
    if let Some(repo) = &cfg.hub {
        let src = Source::Hub { repo: repo.clone(), revision: cfg.revision.clone(), kind: RepoKind::Model };
        return src.fetch(&cfg.file, hub).map(Some);
    }
    if let Some(p) = &cfg.path {
        return if p.is_dir() {
            Source::Dir(p.clone()).fetch(&cfg.file, hub).map(Some)
        } else if p.is_file() {
            Ok(Some(p.clone()))
        } else {
            Err(Error::MissingFile { path: p.clone(), hint: Some("named by tokenizer.path".into()) })
        };
    }
    Ok(None)
}

impl Tok {
    /// Wraps a `tokenizers::Tokenizer`, turning off any truncation/padding it was saved with
    /// (the batcher does both) and adding whichever of the four special tokens it lacks.
    pub fn from_tokenizer(mut inner: Tokenizer, path: Option<&Path>) -> Result<Self> {
        inner.with_truncation(None).map_err(|e| tok_err(path, e))?;
        inner.with_padding(None);
        let missing: Vec<AddedToken> = SPECIAL_TOKENS
            .iter()
            .filter(|t| inner.token_to_id(t).is_none())
            .map(|t| AddedToken::from(*t, true))
            .collect();
        if !missing.is_empty() {
            inner.add_special_tokens(missing).map_err(|e| tok_err(path, e))?;
        }
        let id = |t: &str| inner.token_to_id(t).ok_or_else(|| tok_err(path, format!("special token {t} has no id")));
        Ok(Self { pad_id: id(PAD)?, unk_id: id(UNK)?, bos_id: id(BOS)?, eos_id: id(EOS)?, inner })
    }

    /// Loads a `tokenizer.json`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(Error::MissingFile { path: path.into(), hint: Some("expected a tokenizer.json".into()) });
        }
        let inner = Tokenizer::from_file(path).map_err(|e| tok_err(Some(path), e))?;
        Self::from_tokenizer(inner, Some(path))
    }

    /// Saves as `tokenizer.json` atomically ([`atomic_write`]): a crash leaves either the old
    /// file or the new one.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let json = self.inner.to_string(true).map_err(|e| tok_err(Some(path), e))?;
        atomic_write(path, json.as_bytes())
    }

    /// Token ids of `text` (no special tokens added, no truncation).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner.encode_fast(text, false).map(|e| e.get_ids().to_vec()).map_err(|e| tok_err(None, e))
    }

    /// Encodes many texts (in parallel on the tokenizers thread pool; the result does not
    /// depend on the thread count).
    pub fn encode_all<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        let inputs: Vec<&str> = texts.iter().map(|s| s.as_ref()).collect();
        self.inner
            .encode_batch_fast(inputs, false)
            .map(|v| v.into_iter().map(|e| e.get_ids().to_vec()).collect())
            .map_err(|e| tok_err(None, e))
    }

    /// Text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| tok_err(None, e))
    }

    /// The token string of `id`.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Vocabulary size including added/special tokens: the embedding table's row count.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
    /// Id of [`PAD`]: 0 when trained; a pretrained tokenizer's own id (or one appended past
    /// its vocabulary if it had none).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }
    /// Id of [`UNK`]: 1 when trained; otherwise as for [`Tok::pad_id`].
    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }
    /// Id of [`BOS`]: 2 when trained; otherwise as for [`Tok::pad_id`].
    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }
    /// Id of [`EOS`]: 3 when trained; otherwise as for [`Tok::pad_id`].
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }
    /// The wrapped tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

/// Replaces `path` with `bytes` atomically (the `atomic-write-file` crate: a temporary file in
/// the same folder, fsynced, renamed over `path`, then the folder fsynced so the rename survives
/// a crash; the temporary is removed if anything fails).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let write = || -> std::io::Result<()> {
        let mut file = atomic_write_file::AtomicWriteFile::open(path)?;
        file.write_all(bytes)?;
        file.commit()
    };
    write().map_err(|source| Error::Io { path: path.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXTS: [&str; 4] =
        ["the film is good", "the film is bad , really bad", "a good , good film", "Ｆｕｌｌ width and the end"];

    fn cfg(model: TokenizerModel) -> TokenizerConfig {
        TokenizerConfig { model, vocab_size: 60, ..Default::default() }
    }

    #[test]
    fn word_level_vocab_specials_unk_and_roundtrip() {
        let tok = build_tokenizer(&cfg(TokenizerModel::WordLevel), TEXTS.iter().copied()).unwrap();
        assert_eq!((tok.pad_id(), tok.unk_id(), tok.bos_id(), tok.eos_id()), (0, 1, 2, 3));
        // Most frequent word first after the specials ("film", "good", "the" appear 3 times;
        // ties broken alphabetically).
        assert_eq!(tok.id_to_token(4).as_deref(), Some("film"));
        assert_eq!(tok.id_to_token(6).as_deref(), Some("the"));
        let ids = tok.encode("the good unseen").unwrap();
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[2], tok.unk_id());
        // NFKC folds full-width letters, so "Ｆｕｌｌ" was learnt as "Full".
        assert_ne!(tok.encode("Full").unwrap()[0], tok.unk_id());
        assert_eq!(tok.decode(&tok.encode("the film is good").unwrap()).unwrap(), "the film is good");
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("tokenizer.json");
        tok.save(&p).unwrap();
        let back = Tok::load(&p).unwrap();
        assert_eq!(back.vocab_size(), tok.vocab_size());
        assert_eq!(back.encode("a bad film").unwrap(), tok.encode("a bad film").unwrap());
        assert_eq!(tok.encode_all(&TEXTS).unwrap()[1], tok.encode(TEXTS[1]).unwrap());
    }

    #[test]
    fn min_frequency_vocab_size_and_lowercase() {
        let c = TokenizerConfig { min_frequency: 2, lowercase: true, ..cfg(TokenizerModel::WordLevel) };
        let tok = build_tokenizer(&c, TEXTS.iter().copied()).unwrap();
        // Words seen twice or more: the, film, is, good, bad, ",".
        assert_eq!(tok.vocab_size(), 4 + 6);
        assert_eq!(tok.encode("THE").unwrap(), tok.encode("the").unwrap());
        let c = TokenizerConfig { vocab_size: 6, ..cfg(TokenizerModel::WordLevel) };
        assert_eq!(build_tokenizer(&c, TEXTS.iter().copied()).unwrap().vocab_size(), 6);
    }

    #[test]
    fn subword_models_roundtrip() {
        for model in [TokenizerModel::Bpe, TokenizerModel::Wordpiece] {
            let tok = build_tokenizer(&cfg(model), TEXTS.iter().copied()).unwrap();
            assert_eq!((tok.pad_id(), tok.eos_id()), (0, 3), "{model:?}");
            assert!(tok.vocab_size() <= 60 + 4);
            let ids = tok.encode("the film is good").unwrap();
            assert_eq!(tok.decode(&ids).unwrap(), "the film is good", "{model:?}");
            let tmp = tempfile::tempdir().unwrap();
            let p = tmp.path().join("t.json");
            tok.save(&p).unwrap();
            assert_eq!(Tok::load(&p).unwrap().encode("good film").unwrap(), tok.encode("good film").unwrap());
        }
    }

    /// The trainers count words in hash maps with per-instance random seeds; the vocabulary
    /// must still come out the same every time, or reruns would not be reproducible.
    #[test]
    fn training_is_deterministic() {
        let texts: Vec<String> =
            (0..300).map(|i| format!("w{} x{} shared tail{} end", i % 17, i % 5, i % 11)).collect();
        for model in [TokenizerModel::WordLevel, TokenizerModel::Bpe, TokenizerModel::Wordpiece] {
            let c = TokenizerConfig { model, vocab_size: 50, ..Default::default() };
            let json =
                || build_tokenizer(&c, texts.iter().map(String::as_str)).unwrap().inner().to_string(false).unwrap();
            let first = json();
            for _ in 0..5 {
                assert_eq!(json(), first, "{model:?}");
            }
        }
    }

    #[test]
    fn pretrained_from_dir_and_hub_cache() {
        let tok = build_tokenizer(&cfg(TokenizerModel::WordLevel), TEXTS.iter().copied()).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        tok.save(tmp.path().join("tokenizer.json")).unwrap();
        let hub = HubOptions::offline_at(tmp.path());
        let c = TokenizerConfig { path: Some(tmp.path().into()), ..Default::default() };
        let t = build_tokenizer_with(&c, std::iter::empty(), &hub).unwrap();
        assert_eq!(t.vocab_size(), tok.vocab_size());
        // A model repo in a hub cache.
        let repo = tmp.path().join("hub/models--me--tok");
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc").unwrap();
        std::fs::create_dir_all(repo.join("snapshots/abc")).unwrap();
        tok.save(repo.join("snapshots/abc/tokenizer.json")).unwrap();
        let c = TokenizerConfig { hub: Some("me/tok".into()), ..Default::default() };
        let t = build_tokenizer_with(&c, std::iter::empty(), &hub).unwrap();
        assert_eq!(t.encode("good").unwrap(), tok.encode("good").unwrap());
        let c = TokenizerConfig { hub: Some("me/missing".into()), ..Default::default() };
        let e = build_tokenizer_with(&c, std::iter::empty(), &hub).unwrap_err();
        assert!(e.to_string().contains("me/missing") && e.to_string().contains("tokenizer.json"), "{e}");
    }

    #[test]
    fn pretrained_missing_specials_are_added() {
        let tk = Tokenizer::new(
            WordLevel::builder()
                .vocab([("<unk>".to_string(), 0u32), ("hi".to_string(), 1)].into_iter().collect())
                .unk_token("<unk>".into())
                .build()
                .unwrap(),
        );
        let tok = Tok::from_tokenizer(tk, None).unwrap();
        assert_eq!(tok.vocab_size(), 6);
        assert!(tok.pad_id() >= 2 && tok.eos_id() >= 2);
    }

    #[test]
    fn bad_tokenizer_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("tokenizer.json");
        std::fs::write(&p, "{not json").unwrap();
        let e = Tok::load(&p).unwrap_err();
        assert!(matches!(e, Error::Tokenizer { .. }) && e.to_string().contains("tokenizer.json"));
        assert!(matches!(Tok::load(tmp.path().join("nope.json")).unwrap_err(), Error::MissingFile { .. }));
    }
}
