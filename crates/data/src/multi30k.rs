//! Multi30k EN–DE: JSON Lines with `en` and `de`; the direction picks source and target.

use crate::config::Direction;
use crate::error::{Error, Result};
use crate::jsonl::{read_objects, Fields};
use std::path::Path;

/// A source sentence and its reference translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairExample {
    /// The source-language sentence, trimmed.
    pub src: String,
    /// The target-language sentence, trimmed.
    pub tgt: String,
}

/// A translation corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// Training pairs, in file order.
    pub train: Vec<PairExample>,
    /// Validation pairs, in file order.
    pub validation: Vec<PairExample>,
    /// Test pairs, in file order.
    pub test: Vec<PairExample>,
    /// Source language code: "de" for de-en, "en" for en-de (`data.direction`).
    pub src_lang: String,
    /// Target language code: "en" for de-en, "de" for en-de.
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
/// `split` only names the split in errors.
///
/// Errors: [`Error::MissingFile`] / [`Error::Io`] reading it, [`Error::Json`] for a line that is
/// not a JSON object (or invalid UTF-8, or empty), [`Error::MissingField`] /
/// [`Error::BadField`] when `en` or `de` is absent or not a non-empty string,
/// [`Error::EmptySplit`] when the file has no line.
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

/// Reads the three splits, `paths` in the order train, validation, test; errors as
/// [`read_file`].
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
