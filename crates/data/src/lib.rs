//! sluice data crate: corpora, tokenizers, batches.
//!
//! A `[data]` config ([`config::DataConfig`]) names a corpus and where its files come from
//! (a Hugging Face hub dataset, cache first, or a local folder); [`load`] returns typed
//! examples per split; [`tokenizer::build_tokenizer`] fits a tokenizer on the training split
//! only; [`batch`] turns encoded examples into padded batches in an order fixed by the seed.
//! The crate knows nothing of tensors: batches are plain `Vec<u32>` / `Vec<f32>` with shapes.
//!
//! ```
//! use data::{batch::{BatchOptions, Batcher}, config::{CorpusKind, DataConfig, TokenizerConfig}};
//! let cfg = DataConfig { corpus: CorpusKind::Copy, length: 5, train_size: 8, eval_size: 4, ..Default::default() };
//! let data::Corpus::Copy(task) = data::load(&cfg, 42)? else { unreachable!() };
//! assert_eq!(task.train_epoch(0).seq_len(), 25);
//!
//! let tok = data::tokenizer::build_tokenizer(&TokenizerConfig::default(), ["a good film", "a bad film"].into_iter())?;
//! let ids: Vec<Vec<u32>> = ["a good film", "bad"].iter().map(|t| tok.encode(t)).collect::<Result<_, _>>()?;
//! let batcher = Batcher::new(ids, vec![1, 0], tok.pad_id(), &BatchOptions::train(2, 42))?;
//! let batch = &batcher.batches_for_epoch(0)[0];
//! assert_eq!(batch.ids.len(), batch.batch_size * batch.max_len);
//! # Ok::<(), data::Error>(())
//! ```
#![warn(missing_docs)]

pub mod audio;

pub mod batch;
pub mod config;
pub mod conll;
mod corpus;
pub mod error;
pub mod ett;
mod jsonl;
pub mod multi30k;
pub mod pairs;
pub mod rng;
pub mod series;
pub mod source;
pub mod sst2;
pub mod synthetic;
pub mod table;
pub mod tag_scheme;
pub mod text;
pub mod tokenizer;

pub use corpus::{load, load_with, source_of, Corpus};
pub use error::{Error, Result};
pub use ett::{Forecast, ForecastSplit};
pub use multi30k::{PairExample, Translation};
pub use source::{HubOptions, Source};
pub use sst2::{TextClassification, TextExample};
pub use synthetic::{AddingSet, AddingTask, CopySet, CopyTask};
pub use tokenizer::Tok;
