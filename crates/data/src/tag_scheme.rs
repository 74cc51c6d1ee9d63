//! Entity tag schemes (IOB1, IOB2, BIOES) and the conversions between them, by way of the
//! entity spans each sequence encodes.
//!
//! Spans are read exactly as `conlleval` and `seqeval` (default mode) read them, so a scheme
//! conversion never changes what the scorer counts, and ill-formed input (an `I-X` after `O`)
//! is read as the start of an entity, as those scorers do.
//!
//! ```
//! use data::tag_scheme::{convert, TagScheme};
//! let iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC"];
//! let bioes = convert(&iob1, TagScheme::Bioes);
//! assert_eq!(bioes, ["B-PER", "E-PER", "O", "S-LOC", "S-LOC"]);
//! assert_eq!(convert(&bioes, TagScheme::Iob1), iob1);
//! ```

use serde::{Deserialize, Serialize};

/// How entity tags mark where an entity begins and ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TagScheme {
    /// Plain labels with no entity structure (part-of-speech tags).
    #[default]
    None,
    /// `I-X` inside an entity, `B-X` only to start one right after another of the same type
    /// (CoNLL-2003 as distributed).
    Iob1,
    /// `B-X` starts every entity, `I-X` continues it.
    Iob2,
    /// `B-X` begin, `I-X` inside, `E-X` end, `S-X` single-token entity.
    Bioes,
}

impl TagScheme {
    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            TagScheme::None => "none",
            TagScheme::Iob1 => "iob1",
            TagScheme::Iob2 => "iob2",
            TagScheme::Bioes => "bioes",
        }
    }

    /// The prefixes this scheme writes, in label order.
    pub fn prefixes(self) -> &'static [char] {
        match self {
            TagScheme::None => &[],
            TagScheme::Iob1 | TagScheme::Iob2 => &['B', 'I'],
            TagScheme::Bioes => &['B', 'I', 'E', 'S'],
        }
    }
}

/// One entity: its type and the tokens `start..=end` it covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    /// Entity type (`PER`), or `_` for a bare tag with no type.
    pub kind: String,
    /// First token.
    pub start: usize,
    /// Last token (inclusive, as seqeval reports it).
    pub end: usize,
}

/// Splits a tag into seqeval's (prefix character, type): `B-PER` → ('B', "PER"), `O` →
/// ('O', "_").
fn parse(tag: &str) -> (char, &str) {
    let mut chars = tag.chars();
    let prefix = chars.next().unwrap_or('O');
    let rest = chars.as_str();
    let kind = rest.split_once('-').map_or(rest, |(_, k)| k);
    (prefix, if kind.is_empty() { "_" } else { kind })
}

fn end_of_chunk(prev: char, tag: char, prev_kind: &str, kind: &str) -> bool {
    matches!(prev, 'E' | 'S')
        || (matches!(prev, 'B' | 'I') && matches!(tag, 'B' | 'S' | 'O'))
        || (prev != 'O' && prev != '.' && prev_kind != kind)
}

fn start_of_chunk(prev: char, tag: char, prev_kind: &str, kind: &str) -> bool {
    matches!(tag, 'B' | 'S')
        || (matches!(prev, 'E' | 'S' | 'O') && matches!(tag, 'E' | 'I'))
        || (tag != 'O' && tag != '.' && prev_kind != kind)
}

/// The entities of one sentence, read as seqeval's `get_entities` (default mode) and
/// conlleval read them, whatever the scheme.
pub fn spans<S: AsRef<str>>(tags: &[S]) -> Vec<Span> {
    let mut out = Vec::new();
    let (mut prev, mut prev_kind, mut begin) = ('O', String::new(), 0usize);
    for i in 0..=tags.len() {
        let (tag, kind) = if i < tags.len() { parse(tags[i].as_ref()) } else { ('O', "_") };
        if end_of_chunk(prev, tag, &prev_kind, kind) {
            out.push(Span { kind: prev_kind.clone(), start: begin, end: i - 1 });
        }
        if start_of_chunk(prev, tag, &prev_kind, kind) {
            begin = i;
        }
        prev = tag;
        prev_kind = kind.to_string();
    }
    out
}

/// Writes spans (non-overlapping, ascending) over `len` tokens in `scheme`.
pub fn render(spans: &[Span], len: usize, scheme: TagScheme) -> Vec<String> {
    let mut tags = vec!["O".to_string(); len];
    let mut prev_end: Option<(usize, &str)> = None;
    for s in spans {
        let k = &s.kind;
        for (i, tag) in tags.iter_mut().enumerate().take(s.end + 1).skip(s.start) {
            let p = match scheme {
                TagScheme::None | TagScheme::Iob1 => 'I',
                TagScheme::Iob2 => {
                    if i == s.start {
                        'B'
                    } else {
                        'I'
                    }
                }
                TagScheme::Bioes => match (i == s.start, i == s.end) {
                    (true, true) => 'S',
                    (true, false) => 'B',
                    (false, true) => 'E',
                    (false, false) => 'I',
                },
            };
            *tag = format!("{p}-{k}");
        }
        // IOB1 marks a start with B only where it touches an entity of the same type.
        if scheme == TagScheme::Iob1 && s.start > 0 && prev_end == Some((s.start - 1, k.as_str())) {
            tags[s.start] = format!("B-{k}");
        }
        prev_end = Some((s.end, k.as_str()));
    }
    tags
}

/// Rewrites a sentence's tags in `to`, keeping its entities (ill-formed input repaired the
/// way the scorers read it). `to = None` returns the tags unchanged.
pub fn convert<S: AsRef<str>>(tags: &[S], to: TagScheme) -> Vec<String> {
    if to == TagScheme::None {
        return tags.iter().map(|t| t.as_ref().to_string()).collect();
    }
    render(&spans(tags), tags.len(), to)
}

/// Every label of `scheme` for the entity types `kinds`: `O` first, then each type's
/// prefixes in scheme order, so a model can write any well-formed sequence even where the
/// training data never used a prefix of a type (no `S-MISC`, say).
pub fn labels_for(kinds: &[String], scheme: TagScheme) -> Vec<String> {
    let mut out = vec!["O".to_string()];
    for k in kinds {
        for p in scheme.prefixes() {
            out.push(format!("{p}-{k}"));
        }
    }
    out
}

/// The entity type of a tag (`B-PER` → `PER`), or None for `O`.
pub fn kind_of(tag: &str) -> Option<&str> {
    if tag == "O" {
        None
    } else {
        Some(parse(tag).1)
    }
}

/// Which labels may open and close a sentence and follow one another in `scheme`:
/// `(start, end, transitions[i * n + j])`. Everything is allowed for `None`.
pub fn allowed_transitions(labels: &[String], scheme: TagScheme) -> (Vec<bool>, Vec<bool>, Vec<bool>) {
    let n = labels.len();
    let parsed: Vec<(char, &str)> = labels.iter().map(|l| if l == "O" { ('O', "") } else { parse(l) }).collect();
    let inside = |p: char| matches!(p, 'I' | 'E');
    let start = parsed
        .iter()
        .map(|&(p, _)| match scheme {
            TagScheme::Iob2 | TagScheme::Bioes => !inside(p),
            // B-X only right after an X entity, so never first.
            TagScheme::Iob1 => p != 'B',
            TagScheme::None => true,
        })
        .collect();
    let end = parsed
        .iter()
        .map(|&(p, _)| match scheme {
            TagScheme::Bioes => !matches!(p, 'B' | 'I'),
            _ => true,
        })
        .collect();
    let mut trans = vec![true; n * n];
    for (i, &(pi, ki)) in parsed.iter().enumerate() {
        for (j, &(pj, kj)) in parsed.iter().enumerate() {
            let continues = matches!(pi, 'B' | 'I') && ki == kj;
            trans[i * n + j] = match scheme {
                TagScheme::None => true,
                // B-X only right after an X entity.
                TagScheme::Iob1 => pj != 'B' || (matches!(pi, 'B' | 'I') && ki == kj),
                TagScheme::Iob2 => pj != 'I' || continues,
                // Open entities must go on (I/E of their type); closed ones must not.
                TagScheme::Bioes => {
                    if matches!(pi, 'B' | 'I') {
                        inside(pj) && ki == kj
                    } else {
                        !inside(pj)
                    }
                }
            };
        }
    }
    (start, end, trans)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn spans_as_conlleval_reads_them() {
        let sp = |s: &str| spans(&v(s)).into_iter().map(|s| (s.kind, s.start, s.end)).collect::<Vec<_>>();
        assert_eq!(sp("B-PER I-PER O B-LOC"), vec![("PER".into(), 0, 1), ("LOC".into(), 3, 3)]);
        // IOB1: I starts an entity after O; B separates two of the same type.
        assert_eq!(sp("I-ORG I-ORG B-ORG O"), vec![("ORG".into(), 0, 1), ("ORG".into(), 2, 2)]);
        // Ill-formed: I after another type starts a new entity.
        assert_eq!(sp("B-PER I-LOC"), vec![("PER".into(), 0, 0), ("LOC".into(), 1, 1)]);
        assert_eq!(sp("S-PER B-LOC E-LOC"), vec![("PER".into(), 0, 0), ("LOC".into(), 1, 2)]);
        assert_eq!(sp("O O"), vec![]);
    }

    #[test]
    fn conversions_round_trip() {
        let cases = [
            ("I-PER I-PER O I-LOC B-LOC I-LOC O I-MISC", "iob1"),
            ("B-PER I-PER O B-LOC B-LOC I-LOC O B-MISC", "iob2"),
            ("B-PER E-PER O S-LOC B-LOC E-LOC O S-MISC", "bioes"),
        ];
        for (tags, _) in &cases {
            let tags = v(tags);
            for a in [TagScheme::Iob1, TagScheme::Iob2, TagScheme::Bioes] {
                for b in [TagScheme::Iob1, TagScheme::Iob2, TagScheme::Bioes] {
                    let there = convert(&tags, a);
                    assert_eq!(spans(&there), spans(&tags), "{a:?}");
                    assert_eq!(convert(&convert(&there, b), a), there, "{a:?} → {b:?} → {a:?}");
                }
            }
        }
        // Each well-formed sequence is a fixed point of its own scheme.
        for (tags, scheme) in cases {
            let s = match scheme {
                "iob1" => TagScheme::Iob1,
                "iob2" => TagScheme::Iob2,
                _ => TagScheme::Bioes,
            };
            assert_eq!(convert(&v(tags), s), v(tags));
        }
        // Ill-formed IOB2 is repaired; None leaves tags alone.
        assert_eq!(convert(&v("O I-PER I-PER"), TagScheme::Iob2), v("O B-PER I-PER"));
        assert_eq!(convert(&v("NOUN VERB"), TagScheme::None), v("NOUN VERB"));
    }

    #[test]
    fn transition_constraints_accept_exactly_the_well_formed() {
        let kinds = vec!["LOC".to_string(), "PER".to_string()];
        for scheme in [TagScheme::Iob1, TagScheme::Iob2, TagScheme::Bioes] {
            let labels = labels_for(&kinds, scheme);
            let (start, end, trans) = allowed_transitions(&labels, scheme);
            let n = labels.len();
            // Every sequence of up to 3 labels: allowed ⇔ converting it is a no-op.
            for len in 1..=3usize {
                for code in 0..n.pow(len as u32) {
                    let path: Vec<usize> = (0..len).map(|i| code / n.pow(i as u32) % n).collect();
                    let tags: Vec<&String> = path.iter().map(|&i| &labels[i]).collect();
                    let ok = start[path[0]] && end[path[len - 1]] && path.windows(2).all(|w| trans[w[0] * n + w[1]]);
                    let fixed = convert(&tags, scheme) == tags.iter().map(|t| t.to_string()).collect::<Vec<_>>();
                    assert_eq!(ok, fixed, "{scheme:?} {tags:?}");
                }
            }
        }
        assert_eq!(labels_for(&kinds, TagScheme::Iob2), v("O B-LOC I-LOC B-PER I-PER"));
        let (s, e, t) = allowed_transitions(&v("NOUN VERB"), TagScheme::None);
        assert!(s.iter().chain(&e).chain(&t).all(|&x| x));
    }
}
