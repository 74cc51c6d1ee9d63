//! SST-2 sentence-level sentiment: JSON Lines with `text` and `label` (0 negative,
//! 1 positive), plus an optional extra training file such as GLUE's phrase-level set.

use crate::error::{Error, Result};
use crate::jsonl::{read_objects, Fields};
use std::path::Path;

/// One labelled text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextExample {
    /// The sentence (or phrase), trimmed, Penn Treebank escapes undone ([`unescape_ptb`]).
    pub text: String,
    /// A second text for sentence-pair tasks (`data.text_pair_column`); `None` for SST-2.
    pub pair: Option<String>,
    /// The class: an index into [`TextClassification::class_names`] (SST-2: 0 negative,
    /// 1 positive, [`CLASS_NAMES`]).
    pub label: usize,
}

/// A text-classification corpus: SST-2, or your own files ([`crate::text`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TextClassification {
    /// Training examples; the extra training file's examples (if any) come last.
    pub train: Vec<TextExample>,
    /// Validation examples, in file order.
    pub validation: Vec<TextExample>,
    /// Test examples, in file order.
    pub test: Vec<TextExample>,
    /// How many of `train` came from `extra_train_file`.
    pub extra_train: usize,
    /// Number of classes: 2 for SST-2.
    pub num_classes: usize,
    /// `class_names[label]`.
    pub class_names: Vec<String>,
    /// Rows skipped as unusable (`data.skip_invalid`) in the train, validation and test files.
    pub skipped: [usize; 3],
}

impl TextClassification {
    /// Training texts (and second texts of pairs), for fitting a tokenizer on the training
    /// split only.
    pub fn train_texts(&self) -> impl Iterator<Item = &str> + Send + '_ {
        self.train.iter().flat_map(|e| std::iter::once(e.text.as_str()).chain(e.pair.as_deref()))
    }
}

/// The SST-2 class names, indexed by label: 0 negative, 1 positive.
pub const CLASS_NAMES: [&str; 2] = ["negative", "positive"];

/// Undoes the Penn Treebank escapes of the sentence-level files (`-lrb-` → `(`, `\/` → `/`,
/// ...), so they read like the phrase-level set, which uses the literal characters.
pub fn unescape_ptb(text: &str) -> String {
    if !text.contains('-') && !text.contains('\\') {
        return text.to_string();
    }
    const PAIRS: [(&str, &str); 8] = [
        ("-lrb-", "("),
        ("-rrb-", ")"),
        ("-lsb-", "["),
        ("-rsb-", "]"),
        ("-lcb-", "{"),
        ("-rcb-", "}"),
        ("\\/", "/"),
        ("\\*", "*"),
    ];
    let mut s = text.to_string();
    for (from, to) in PAIRS {
        if s.contains(from) {
            s = s.replace(from, to);
        }
        let upper = from.to_ascii_uppercase();
        if upper != from && s.contains(&upper) {
            s = s.replace(&upper, to);
        }
    }
    s
}

/// Reads one SST-2 style file. An empty file is an error: a split with no examples.
/// `split` only names the split in errors.
///
/// Errors: [`Error::MissingFile`] / [`Error::Io`] reading it, [`Error::Json`] for a line that is
/// not a JSON object (or invalid UTF-8, or empty), [`Error::MissingField`] /
/// [`Error::BadField`] when `text` is not a non-empty string or `label` not an integer,
/// [`Error::LabelOutOfRange`] for a label outside 0..2, [`Error::EmptySplit`] for no line.
pub fn read_file(path: &Path, split: &str) -> Result<Vec<TextExample>> {
    let lines = read_objects(path)?;
    if lines.is_empty() {
        return Err(Error::EmptySplit { path: path.into(), split: split.into(), detail: None });
    }
    lines
        .iter()
        .map(|l| {
            let f = Fields { path, line: l.line, obj: &l.obj };
            let text = f.text("text")?;
            let label = f.label("label", CLASS_NAMES.len())?;
            Ok(TextExample { text: unescape_ptb(text.trim()), pair: None, label })
        })
        .collect()
}

/// Reads the three splits, `paths` in the order train, validation, test (and the extra
/// training file, if given, appended to train); errors as [`read_file`].
pub fn load(paths: [&Path; 3], extra: Option<&Path>) -> Result<TextClassification> {
    let mut train = read_file(paths[0], "train")?;
    let validation = read_file(paths[1], "validation")?;
    let test = read_file(paths[2], "test")?;
    let extra_train = match extra {
        Some(p) => {
            let more = read_file(p, "extra_train")?;
            let n = more.len();
            train.extend(more);
            n
        }
        None => 0,
    };
    Ok(TextClassification {
        train,
        validation,
        test,
        extra_train,
        num_classes: CLASS_NAMES.len(),
        class_names: CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
        skipped: [0; 3],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptb_unescape() {
        assert_eq!(unescape_ptb(r"a -lrb- good -rrb- film \/ show \* -LRB-x-RRB-"), "a ( good ) film / show * (x)");
        assert_eq!(unescape_ptb("re-imagining"), "re-imagining");
    }

    #[test]
    fn reads_small_files() {
        let tmp = tempfile::tempdir().unwrap();
        let w = |name: &str, s: &str| {
            let p = tmp.path().join(name);
            std::fs::write(&p, s).unwrap();
            p
        };
        let tr = w("train.jsonl", "{\"text\": \"a -lrb- fine -rrb- film\", \"label\": 1, \"label_text\": \"positive\"}\n{\"text\": \"dull\", \"label\": 0}\n");
        let va = w("dev.jsonl", "{\"text\": \"ok\", \"label\": 1}\n");
        let te = w("test.jsonl", "{\"label\": 0, \"text\": \"bad \\/ worse\"}");
        let ex = w("phrases.jsonl", "{\"text\": \"fine ( film )\", \"label\": 1}\n");
        let c = load([&tr, &va, &te], Some(&ex)).unwrap();
        assert_eq!(c.train.len(), 3);
        assert_eq!(c.extra_train, 1);
        assert_eq!(c.train[0], TextExample { text: "a ( fine ) film".into(), pair: None, label: 1 });
        assert_eq!(c.test[0].text, "bad / worse");
        assert_eq!(c.class_names, vec!["negative", "positive"]);
    }
}
