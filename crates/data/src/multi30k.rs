//! Multi30k EN–DE: JSON Lines with `en` and `de`; the direction picks source and target.

use crate::config::Direction;
use crate::error::{Error, Result};
use crate::jsonl::{read_objects, Fields};
use std::path::Path;

/// A source sentence and its reference translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairExample {
    pub src: String,
    pub tgt: String,
}

/// A translation corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    pub train: Vec<PairExample>,
    pub validation: Vec<PairExample>,
    pub test: Vec<PairExample>,
    /// Language codes, e.g. "de" and "en" for de-en.
    pub src_lang: String,
    pub tgt_lang: String,
}

impl Translation {
    /// Training source sentences (fit the source tokenizer on these only).
    pub fn train_src(&self) -> impl Iterator<Item = &str> + Send + '_ {
        self.train.iter().map(|e| e.src.as_str())
    }
    /// Training target sentences.
    pub fn train_tgt(&self) -> impl Iterator<Item = &str> + Send + '_ {
        self.train.iter().map(|e| e.tgt.as_str())
    }
}

fn langs(direction: Direction) -> (&'static str, &'static str) {
    match direction {
        Direction::DeEn => ("de", "en"),
        Direction::EnDe => ("en", "de"),
    }
}

/// Reads one file. Texts are trimmed (upstream has stray trailing whitespace and a tab).
pub fn read_file(path: &Path, split: &str, direction: Direction) -> Result<Vec<PairExample>> {
    let (s, t) = langs(direction);
    let lines = read_objects(path)?;
    if lines.is_empty() {
        return Err(Error::EmptySplit { path: path.into(), split: split.into(), detail: None });
    }
    lines
        .iter()
        .map(|l| {
            let f = Fields { path, line: l.line, obj: &l.obj };
            Ok(PairExample { src: f.text(s)?.trim().to_string(), tgt: f.text(t)?.trim().to_string() })
        })
        .collect()
}

/// Reads the three splits.
pub fn load(paths: [&Path; 3], direction: Direction) -> Result<Translation> {
    let (s, t) = langs(direction);
    Ok(Translation {
        train: read_file(paths[0], "train", direction)?,
        validation: read_file(paths[1], "validation", direction)?,
        test: read_file(paths[2], "test", direction)?,
        src_lang: s.into(),
        tgt_lang: t.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("t.jsonl");
        std::fs::write(
            &p,
            "{\"en\": \"A dog runs.\", \"de\": \"Ein Hund läuft. \"}\n{\"en\": \"Two\", \"de\": \"Zwei\"}\n",
        )
        .unwrap();
        let c = load([&p, &p, &p], Direction::DeEn).unwrap();
        assert_eq!(c.train[0], PairExample { src: "Ein Hund läuft.".into(), tgt: "A dog runs.".into() });
        assert_eq!((c.src_lang.as_str(), c.tgt_lang.as_str()), ("de", "en"));
        let c = load([&p, &p, &p], Direction::EnDe).unwrap();
        assert_eq!(c.test[1], PairExample { src: "Two".into(), tgt: "Zwei".into() });
    }
}
