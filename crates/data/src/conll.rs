//! Token-and-tag corpora for sequence labelling: CoNLL-U (Universal Dependencies),
//! column-per-token CoNLL files (CoNLL-2000/2003 style) and JSON Lines with `tokens` and
//! `tags` lists. Every problem is an error naming the file and line.
//!
//! ```
//! use data::conll::{parse_conllu, ConlluColumn};
//! let text = "# sent_id = 1\n1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n1\tdo\tdo\tAUX\tVBP\t_\t_\t_\t_\t_\n\
//!             2\tn't\tnot\tPART\tRB\t_\t_\t_\t_\t_\n2.1\tgo\tgo\tVERB\tVB\t_\t_\t_\t_\t_\n\n";
//! let sents = parse_conllu(text, "x.conllu".as_ref(), ConlluColumn::Upos)?;
//! assert_eq!(sents[0].tokens, ["do", "n't"]); // the range line and the empty node are skipped
//! assert_eq!(sents[0].tags, ["AUX", "PART"]);
//! # Ok::<(), data::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::jsonl::{kind, read_objects, read_text};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// One sentence: its tokens and one tag per token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedSentence {
    /// The words as written.
    pub tokens: Vec<String>,
    /// One tag per token.
    pub tags: Vec<String>,
    /// 1-based line of the sentence's first token in its file, for error messages.
    pub line: usize,
}

/// The file format of a tagging corpus (`tag.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TagFormat {
    /// CoNLL-U: ten tab-separated columns, the tag from `upos` or `xpos`.
    #[default]
    Conllu,
    /// Whitespace-separated columns, the word first, one token per line, blank lines between
    /// sentences, `-DOCSTART-` lines skipped wherever they are.
    Conll,
    /// One JSON object per line with a `tokens` list and a tags list of the same length.
    Jsonl,
}

/// Which CoNLL-U column holds the tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConlluColumn {
    /// Column 4, universal part of speech.
    Upos,
    /// Column 5, language-specific part of speech.
    Xpos,
}

/// Where the tag is, as `tag.column` names it, checked against the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagColumn {
    /// CoNLL-U column.
    Conllu(ConlluColumn),
    /// CoNLL column, 0-based (the word is column 0); None = the last column.
    Conll(Option<usize>),
    /// JSON Lines field holding the tags.
    Jsonl(String),
}

impl TagColumn {
    /// Reads `tag.column` for `format`; None gives the format's default (`upos`, the last
    /// column, `tags`). The error names the key and the accepted values.
    pub fn parse(format: TagFormat, column: Option<&str>) -> Result<Self> {
        let bad = |msg: String| Error::Config { key: "tag.column".into(), msg };
        Ok(match (format, column) {
            (TagFormat::Conllu, None | Some("upos")) => TagColumn::Conllu(ConlluColumn::Upos),
            (TagFormat::Conllu, Some("xpos")) => TagColumn::Conllu(ConlluColumn::Xpos),
            (TagFormat::Conllu, Some(other)) => {
                return Err(bad(format!("unknown CoNLL-U tag column {other:?} (expected \"upos\" or \"xpos\")")))
            }
            (TagFormat::Conll, None | Some("last")) => TagColumn::Conll(None),
            (TagFormat::Conll, Some(c)) => match c.parse::<usize>() {
                Ok(i) if i >= 1 => TagColumn::Conll(Some(i)),
                _ => {
                    return Err(bad(format!(
                        "unknown CoNLL tag column {c:?} (expected \"last\" or a 0-based column number ≥ 1; column 0 is the word)"
                    )))
                }
            },
            (TagFormat::Jsonl, None) => TagColumn::Jsonl("tags".into()),
            (TagFormat::Jsonl, Some(f)) if !f.is_empty() && f != "tokens" => TagColumn::Jsonl(f.into()),
            (TagFormat::Jsonl, Some(f)) => {
                return Err(bad(format!("{f:?} cannot hold the tags (expected a field name other than \"tokens\")")))
            }
        })
    }
}

/// Reads a tagging corpus file.
pub fn read_tagged(path: &Path, column: &TagColumn) -> Result<Vec<TaggedSentence>> {
    match column {
        TagColumn::Jsonl(field) => read_jsonl(path, field),
        _ => {
            let text = read_text(path)?;
            match column {
                TagColumn::Conllu(c) => parse_conllu(&text, path, *c),
                TagColumn::Conll(c) => parse_conll(&text, path, *c),
                TagColumn::Jsonl(_) => unreachable!("handled above"),
            }
        }
    }
}

fn csv_error(path: &Path, line: usize, column: usize, expected: impl Into<String>, found: &str) -> Error {
    Error::Csv { path: path.into(), line, column, expected: expected.into(), found: found.into() }
}

/// Parses CoNLL-U text: comments and blank lines, ten tab-separated fields per line;
/// multiword-token ranges (`1-2`) and empty nodes (`1.1`) are skipped.
pub fn parse_conllu(text: &str, path: &Path, column: ConlluColumn) -> Result<Vec<TaggedSentence>> {
    let col = match column {
        ConlluColumn::Upos => 3,
        ConlluColumn::Xpos => 4,
    };
    let name = if col == 3 { "UPOS" } else { "XPOS" };
    let mut out = Vec::new();
    let mut cur = TaggedSentence { tokens: vec![], tags: vec![], line: 0 };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            if !cur.tokens.is_empty() {
                out.push(std::mem::replace(&mut cur, TaggedSentence { tokens: vec![], tags: vec![], line: 0 }));
            }
            continue;
        }
        if raw.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = raw.split('\t').collect();
        if fields.len() != 10 {
            return Err(csv_error(
                path,
                line,
                1,
                "10 tab-separated CoNLL-U fields",
                &format!("{} fields", fields.len()),
            ));
        }
        let id = fields[0];
        if id.contains('-') || id.contains('.') {
            continue;
        }
        if id.parse::<usize>().map_or(true, |n| n == 0) {
            return Err(csv_error(path, line, 1, "a word ID (1, 2, ...), a range (1-2) or an empty node (1.1)", id));
        }
        let (form, tag) = (fields[1], fields[col]);
        if form.is_empty() {
            return Err(csv_error(path, line, 2, "a word form", form));
        }
        if tag.is_empty() || tag == "_" {
            return Err(csv_error(path, line, col + 1, format!("a {name} tag"), tag));
        }
        if cur.tokens.is_empty() {
            cur.line = line;
        }
        cur.tokens.push(form.to_string());
        cur.tags.push(tag.to_string());
    }
    if !cur.tokens.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Parses column-per-token text: the word in column 0, the tag in `column` (None = last);
/// every line of a file must have the tag column; `-DOCSTART-` lines are separators.
pub fn parse_conll(text: &str, path: &Path, column: Option<usize>) -> Result<Vec<TaggedSentence>> {
    let mut out = Vec::new();
    let mut cur = TaggedSentence { tokens: vec![], tags: vec![], line: 0 };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let fields: Vec<&str> = raw.split_whitespace().collect();
        if fields.is_empty() || fields[0] == "-DOCSTART-" {
            if !cur.tokens.is_empty() {
                out.push(std::mem::replace(&mut cur, TaggedSentence { tokens: vec![], tags: vec![], line: 0 }));
            }
            continue;
        }
        let c = column.unwrap_or(fields.len() - 1);
        if c == 0 || c >= fields.len() {
            let expected = match column {
                Some(c) => format!("a tag in column {c} (0-based; `tag.column`)"),
                None => "a word and a tag (at least 2 columns)".into(),
            };
            return Err(csv_error(path, line, fields.len(), expected, &format!("{} columns", fields.len())));
        }
        if cur.tokens.is_empty() {
            cur.line = line;
        }
        cur.tokens.push(fields[0].to_string());
        cur.tags.push(fields[c].to_string());
    }
    if !cur.tokens.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Reads JSON Lines with a `tokens` list of strings and a `field` list of tags, of equal
/// non-zero length.
pub fn read_jsonl(path: &Path, field: &str) -> Result<Vec<TaggedSentence>> {
    let strings = |obj: &serde_json::Map<String, Value>, name: &str, line: usize| -> Result<Vec<String>> {
        let v = obj.get(name).ok_or_else(|| Error::MissingField {
            path: path.into(),
            line,
            field: name.into(),
            expected: "a list of strings".into(),
        })?;
        let bad = |found: String| Error::BadField {
            path: path.into(),
            line,
            field: name.into(),
            expected: "a non-empty list of non-empty strings".into(),
            found,
        };
        let Value::Array(items) = v else { return Err(bad(kind(v))) };
        if items.is_empty() {
            return Err(bad("an empty list".into()));
        }
        items
            .iter()
            .map(|x| match x {
                Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
                other => Err(bad(format!("an item that is {}", kind(other)))),
            })
            .collect()
    };
    let mut out = Vec::new();
    for l in read_objects(path)? {
        let tokens = strings(&l.obj, "tokens", l.line)?;
        let tags = strings(&l.obj, field, l.line)?;
        if tokens.len() != tags.len() {
            return Err(Error::BadField {
                path: path.into(),
                line: l.line,
                field: field.into(),
                expected: format!("one tag per token ({} tokens)", tokens.len()),
                found: format!("{} tags", tags.len()),
            });
        }
        out.push(TaggedSentence { tokens, tags, line: l.line });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONLLU: &str = "# sent_id = a\n# text = Kim can't swim.\n1\tKim\tKim\tPROPN\tNNP\t_\t3\tnsubj\t_\t_\n\
        2-3\tcan't\t_\t_\t_\t_\t_\t_\t_\t_\n2\tca\tcan\tAUX\tMD\t_\t4\taux\t_\t_\n\
        3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_\n3.1\tgo\tgo\tVERB\tVB\t_\t_\t_\t_\t_\n\
        4\tswim\tswim\tVERB\tVB\t_\t0\troot\t_\t_\n\n# sent_id = b\n1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n";

    #[test]
    fn conllu_skips_ranges_and_empty_nodes_and_chooses_the_column() {
        let p = Path::new("t.conllu");
        let s = parse_conllu(CONLLU, p, ConlluColumn::Upos).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].tokens, ["Kim", "ca", "n't", "swim"]);
        assert_eq!(s[0].tags, ["PROPN", "AUX", "PART", "VERB"]);
        assert_eq!((s[0].line, s[1].line), (3, 11));
        let x = parse_conllu(CONLLU, p, ConlluColumn::Xpos).unwrap();
        assert_eq!(x[0].tags, ["NNP", "MD", "RB", "VB"]);
        let bad = CONLLU.replace("2\tca\tcan\tAUX\tMD\t_\t4\taux\t_\t_", "2\tca\tcan\tAUX");
        let e = parse_conllu(&bad, p, ConlluColumn::Upos).unwrap_err().to_string();
        assert!(e.starts_with("t.conllu:5:1: expected 10 tab-separated CoNLL-U fields, found `4 fields`"), "{e}");
        let e = parse_conllu(&CONLLU.replace("\tNNP", "\t_"), p, ConlluColumn::Xpos).unwrap_err().to_string();
        assert!(e.starts_with("t.conllu:3:5: expected a XPOS tag"), "{e}");
        let e = parse_conllu(&CONLLU.replace("4\tswim", "x\tswim"), p, ConlluColumn::Upos).unwrap_err().to_string();
        assert!(e.starts_with("t.conllu:8:1: expected a word ID"), "{e}");
    }

    #[test]
    fn conll_skips_docstart_anywhere_and_checks_the_column() {
        let text =
            "-DOCSTART- -X- O O\n\nAnna NNP B-NP I-PER\nruns VBZ B-VP O\n\nZed NNP B-NP I-ORG\n-DOCSTART- -X- -X- O";
        let p = Path::new("t.txt");
        let s = parse_conll(text, p, None).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].tags, ["I-PER", "O"]);
        assert_eq!((s[0].line, s[1].line), (3, 6));
        assert_eq!(parse_conll(text, p, Some(1)).unwrap()[0].tags, ["NNP", "VBZ"]);
        let e = parse_conll(text, p, Some(4)).unwrap_err().to_string();
        assert!(e.starts_with("t.txt:3:4: expected a tag in column 4"), "{e}");
        let e = parse_conll("Anna\n", p, None).unwrap_err().to_string();
        assert!(e.starts_with("t.txt:1:1: expected a word and a tag"), "{e}");
    }

    #[test]
    fn column_names_are_checked_against_the_format() {
        assert_eq!(TagColumn::parse(TagFormat::Conllu, Some("xpos")).unwrap(), TagColumn::Conllu(ConlluColumn::Xpos));
        assert_eq!(TagColumn::parse(TagFormat::Conll, Some("3")).unwrap(), TagColumn::Conll(Some(3)));
        let e = TagColumn::parse(TagFormat::Conllu, Some("ner")).unwrap_err().to_string();
        assert!(e.contains("tag.column") && e.contains("unknown CoNLL-U tag column \"ner\""), "{e}");
        assert!(TagColumn::parse(TagFormat::Conll, Some("0")).is_err());
        assert!(TagColumn::parse(TagFormat::Jsonl, Some("tokens")).is_err());
    }

    #[test]
    fn jsonl_tokens_and_tags() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        std::fs::write(&p, "{\"tokens\": [\"Ann\", \"ran\"], \"tags\": [\"B-PER\", \"O\"]}\n").unwrap();
        let s = read_tagged(&p, &TagColumn::Jsonl("tags".into())).unwrap();
        assert_eq!(s[0].tokens, ["Ann", "ran"]);
        std::fs::write(&p, "{\"tokens\": [\"Ann\", \"ran\"], \"tags\": [\"B-PER\"]}\n").unwrap();
        let e = read_tagged(&p, &TagColumn::Jsonl("tags".into())).unwrap_err().to_string();
        assert!(e.ends_with("t.jsonl:1: field `tags`: expected one tag per token (2 tokens), found 1 tags"), "{e}");
        std::fs::write(&p, "{\"tokens\": [\"Ann\"]}\n").unwrap();
        let e = read_tagged(&p, &TagColumn::Jsonl("ner".into())).unwrap_err().to_string();
        assert!(e.contains("t.jsonl:1: missing field `ner`"), "{e}");
    }
}
