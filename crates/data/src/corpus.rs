//! `load`: a `[data]` config to typed examples per split.

use crate::config::{CorpusKind, DataConfig};
use crate::error::{Error, Result};
use crate::ett::Forecast;
use crate::multi30k::Translation;
use crate::source::{HubOptions, RepoKind, Source};
use crate::sst2::TextClassification;
use crate::synthetic::{AddingTask, CopyTask};
use std::path::PathBuf;

/// A loaded corpus, one variant per task kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Corpus {
    /// SST-2: texts with class labels.
    TextClassification(TextClassification),
    /// Multi30k: source/target sentence pairs.
    Translation(Translation),
    /// ETT: normalised series split by rows, cut into windows on demand.
    Forecast(Forecast),
    /// The adding problem.
    Adding(AddingTask),
    /// The copy task.
    Copy(CopyTask),
}

impl Corpus {
    /// (train, validation, test) example counts; synthetic training counts are per epoch,
    /// forecasting counts are windows.
    pub fn split_sizes(&self) -> [usize; 3] {
        match self {
            Corpus::TextClassification(c) => [c.train.len(), c.validation.len(), c.test.len()],
            Corpus::Translation(c) => [c.train.len(), c.validation.len(), c.test.len()],
            Corpus::Forecast(f) => [f.train.num_windows(), f.validation.num_windows(), f.test.num_windows()],
            Corpus::Adding(t) => [t.train_size, t.validation.len(), t.test.len()],
            Corpus::Copy(t) => [t.train_size, t.validation.len(), t.test.len()],
        }
    }
}

/// Where `cfg` reads from: `dir`, `hub`, or the corpus' default hub repo.
pub fn source_of(cfg: &DataConfig) -> Option<Source> {
    if let Some(d) = &cfg.dir {
        return Some(Source::Dir(d.clone()));
    }
    let repo = cfg.hub.clone().or_else(|| cfg.corpus.default_hub().map(String::from))?;
    Some(Source::Hub { repo, revision: cfg.revision.clone(), kind: RepoKind::Dataset })
}

/// Loads the corpus `cfg` names, reading HF_HOME / HF_HUB_CACHE / HF_HUB_OFFLINE /
/// HF_ENDPOINT from the environment. `seed` drives the synthetic tasks.
pub fn load(cfg: &DataConfig, seed: u64) -> Result<Corpus> {
    load_with(cfg, seed, &HubOptions::from_env())
}

/// [`load`] with explicit hub options (tests, or callers that resolve the environment themselves).
pub fn load_with(cfg: &DataConfig, seed: u64, hub: &HubOptions) -> Result<Corpus> {
    cfg.validate()?;
    let fetch_splits = || -> Result<[PathBuf; 3]> {
        let src = source_of(cfg).expect("file corpora always have a source");
        let [a, b, c] = cfg.split_files().expect("file corpora have split files");
        Ok([src.fetch(&a, hub)?, src.fetch(&b, hub)?, src.fetch(&c, hub)?])
    };
    Ok(match cfg.corpus {
        CorpusKind::Sst2 => {
            let p = fetch_splits()?;
            let extra = cfg.extra_train_file.as_ref().map(|e| match &cfg.dir {
                Some(d) if e.is_relative() => d.join(e),
                _ => e.clone(),
            });
            if let Some(e) = &extra {
                if !e.is_file() {
                    return Err(Error::MissingFile { path: e.clone(), hint: Some("named by data.extra_train_file".into()) });
                }
            }
            Corpus::TextClassification(crate::sst2::load([&p[0], &p[1], &p[2]], extra.as_deref())?)
        }
        CorpusKind::Multi30k => {
            let p = fetch_splits()?;
            Corpus::Translation(crate::multi30k::load([&p[0], &p[1], &p[2]], cfg.direction)?)
        }
        CorpusKind::Ett => {
            let src = source_of(cfg).expect("ett has a source");
            let path = src.fetch(cfg.file.as_deref().unwrap_or("ETTh1.csv"), hub)?;
            Corpus::Forecast(crate::ett::load(&path, cfg)?)
        }
        CorpusKind::Adding => Corpus::Adding(AddingTask::new(cfg.length, cfg.train_size, cfg.eval_size, seed)),
        CorpusKind::Copy => Corpus::Copy(CopyTask::new(cfg.length, cfg.train_size, cfg.eval_size, seed)),
    })
}
