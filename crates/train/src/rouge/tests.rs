//! rouge-score's and NLTK's own numbers (`tests/fixtures/rouge_score.json`, made by
//! `scripts/gen_rouge_fixtures.py`), the Gigaword lead-8 golden figures, and the API's edges.

use super::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct Fixture {
    rouge_score_version: String,
    examples: Vec<Example>,
    corpus: BTreeMap<String, CorpusCase>,
    tokenize: Vec<(String, Vec<String>, Vec<String>)>,
    stems: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct Example {
    hyp: String,
    refs: Vec<String>,
    stemmer: bool,
    src: String,
    rouge1: [f64; 3],
    rouge2: [f64; 3],
    #[serde(rename = "rougeL")]
    rouge_l: [f64; 3],
}

#[derive(Deserialize)]
struct CorpusCase {
    indices: Vec<usize>,
    stemmer: bool,
    rouge1: [f64; 3],
    rouge2: [f64; 3],
    #[serde(rename = "rougeL")]
    rouge_l: [f64; 3],
}

/// The same f64 operations as rouge-score, so agreement is exact in practice; 1e-9 is the bar.
const TOL: f64 = 1e-9;

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rouge_score.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Largest |difference| over the nine numbers; panics naming the metric beyond `tol`.
fn check(what: &str, got: &RougeScores, want: [[f64; 3]; 3], tol: f64) -> f64 {
    let mut worst = 0.0f64;
    for (name, g, w) in
        [("rouge1", got.rouge1, want[0]), ("rouge2", got.rouge2, want[1]), ("rougeL", got.rouge_l, want[2])]
    {
        let g = [g.precision, g.recall, g.f1];
        for k in 0..3 {
            let d = (g[k] - w[k]).abs();
            assert!(d <= tol, "{what}: {name} [P, R, F] {g:?} vs rouge-score {w:?}");
            worst = worst.max(d);
        }
    }
    worst
}

#[test]
fn fixture_is_for_this_version() {
    assert_eq!(fixture().rouge_score_version, ROUGE_SCORE_VERSION);
}

#[test]
fn rouge_stems_match_nltk() {
    let fx = fixture();
    assert!(fx.stems.len() > 5000, "the stem list should cover the Gigaword test vocabulary");
    let wrong: Vec<String> = fx
        .stems
        .iter()
        .filter(|(word, want)| porter::stem(word) != *want)
        .map(|(word, want)| format!("{word:?}: ours {:?}, nltk {want:?}", porter::stem(word)))
        .collect();
    assert!(wrong.is_empty(), "{} of {} stems differ:\n{}", wrong.len(), fx.stems.len(), wrong.join("\n"));
}

#[test]
fn rouge_tokenize_matches_rouge_score() {
    let fx = fixture();
    assert!(fx.tokenize.len() > 100);
    for (text, stemmed, plain) in &fx.tokenize {
        assert_eq!(&tokenize(text, true), stemmed, "stemmer on: {text:?}");
        assert_eq!(&tokenize(text, false), plain, "stemmer off: {text:?}");
    }
}

#[test]
fn rouge_examples_match_rouge_score() {
    let fx = fixture();
    assert!(fx.examples.len() > 300);
    let mut worst = 0.0f64;
    for (i, ex) in fx.examples.iter().enumerate() {
        let opts = RougeOptions { stemmer: ex.stemmer };
        let what = format!("examples[{i}] ({}, stemmer {}) {:?} vs {:?}", ex.src, ex.stemmer, ex.hyp, ex.refs);
        let want = [ex.rouge1, ex.rouge2, ex.rouge_l];
        let refs: Vec<&str> = ex.refs.iter().map(String::as_str).collect();
        worst = worst.max(check(&what, &score_multi(&ex.hyp, &refs, &opts), want, TOL));
        if let [reference] = refs[..] {
            worst = worst.max(check(&what, &score(&ex.hyp, reference, &opts), want, TOL));
        }
    }
    eprintln!("{} examples: max |Δ| = {worst:e}", fx.examples.len());
}

#[test]
fn rouge_corpus_means_match_rouge_score() {
    let fx = fixture();
    for (name, case) in &fx.corpus {
        let hyps: Vec<String> = case.indices.iter().map(|&i| fx.examples[i].hyp.clone()).collect();
        let refs: Vec<Vec<String>> = case.indices.iter().map(|&i| fx.examples[i].refs.clone()).collect();
        let got = corpus(&hyps, &refs, &RougeOptions { stemmer: case.stemmer }).unwrap();
        assert_eq!(got.n, case.indices.len());
        let as_scores = RougeScores { rouge1: got.rouge1, rouge2: got.rouge2, rouge_l: got.rouge_l };
        check(name, &as_scores, [case.rouge1, case.rouge2, case.rouge_l], TOL);
    }
}

#[test]
fn rouge_corpus_errors_are_typed() {
    let opts = RougeOptions::default();
    let one = vec!["a b".to_string()];
    assert_eq!(corpus(&one, &[], &opts), Err(RougeError::LengthMismatch { hyps: 1, refs: 0 }));
    assert_eq!(corpus(&[], &[], &opts), Err(RougeError::EmptyCorpus));
    let refs = vec![vec!["a".to_string()], vec![]];
    assert_eq!(corpus(&["a".into(), "b".into()], &refs, &opts), Err(RougeError::NoReference { example: 1 }));
}

#[test]
fn rouge_multi_picks_each_metric_separately() {
    let opts = RougeOptions { stemmer: false };
    // The first reference wins ROUGE-1 (all four words), the second ROUGE-2 and ROUGE-L.
    let hyp = "a b c d";
    let refs = ["d c b a", "a b x y"];
    let s = score_multi(hyp, &refs, &opts);
    assert_eq!(s.rouge1, score(hyp, refs[0], &opts).rouge1);
    assert_eq!(s.rouge2, score(hyp, refs[1], &opts).rouge2);
    assert_eq!(s.rouge_l, score(hyp, refs[1], &opts).rouge_l);
    assert_eq!(score_multi(hyp, &[], &opts), RougeScores::default());
}

#[test]
fn rouge_signature_names_the_options() {
    assert_eq!(
        signature(&RougeOptions::default()),
        "sluice-rouge|rouge-score 0.1.2 compatible|stem:porter(nltk)|tok:lowercase,[^a-z0-9]|agg:mean|multi:max-f1"
    );
    assert!(signature(&RougeOptions { stemmer: false }).contains("|stem:none|"));
}

/// `../shared/data/gigaword/rouge_golden/`, or `None` (with a note) when it is absent outside CI.
fn golden_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/gigaword");
    if dir.join("rouge_golden").is_dir() && dir.join("test.jsonl").is_file() {
        return Some(dir);
    }
    assert!(std::env::var_os("CI").is_none(), "CI has ../shared, but {} is missing", dir.display());
    eprintln!("skipped: {} not found (the Gigaword golden ROUGE files live in ../shared)", dir.display());
    None
}

/// The lead-8 baseline exactly as the golden README describes it: the first eight
/// whitespace tokens of each test document (SEQ³'s `f8w.txt`), and the test summaries.
fn lead8(dir: &Path) -> (Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string(dir.join("test.jsonl")).expect("test.jsonl");
    text.lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let doc = row["document"].as_str().expect("document");
            let lead: Vec<&str> = doc.split_whitespace().take(8).collect();
            (lead.join(" "), row["summary"].as_str().expect("summary").to_string())
        })
        .unzip()
}

/// Gigaword lead-8 against `rouge_golden`: our hypotheses are the golden file's bytes, every
/// per-example score equals rouge-score's (given to 6 decimals), and the corpus F1 × 100 equals
/// rouge-score's 21.30 / 7.35 / 19.95 (stemmed) and 19.23 / 6.05 / 18.09 (not stemmed).
/// `cargo test --workspace --release rouge_gigaword_lead8 -- --nocapture` prints the figures.
#[test]
fn rouge_gigaword_lead8_matches_golden() {
    let Some(dir) = golden_dir() else { return };
    let golden = dir.join("rouge_golden");
    let (hyps, refs) = lead8(&dir);
    assert_eq!(hyps.len(), 1951);
    let lines = |name: &str| -> Vec<String> {
        let text = std::fs::read_to_string(golden.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        text.lines().map(str::to_string).collect()
    };
    assert_eq!(hyps, lines("giga_test_lead8.hyp.txt"), "lead-8 differs from the golden hypotheses");
    assert_eq!(refs, lines("giga_test.ref.txt"), "test summaries differ from the golden references");

    // Per example: [P, R, F] rounded to 6 decimals, so ours must round to the same value.
    let per_example = lines("giga_test_lead8.rouge_score_per_example.jsonl");
    assert_eq!(per_example.len(), hyps.len());
    let mut worst = 0.0f64;
    for (i, line) in per_example.iter().enumerate() {
        let row: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        assert_eq!(row["i"].as_u64(), Some(i as u64));
        for (stemmer, tag) in [(true, "stem"), (false, "nostem")] {
            let got = score(&hyps[i], &refs[i], &RougeOptions { stemmer });
            let want = |metric: &str| -> [f64; 3] {
                let v = &row[format!("{metric}_{tag}")];
                std::array::from_fn(|k| v[k].as_f64().expect("a number"))
            };
            let what = format!("lead-8 example {i} ({tag})");
            worst = worst.max(check(&what, &got, [want("rouge1"), want("rouge2"), want("rougeL")], 5e-7 + 1e-12));
        }
    }

    let refs: Vec<Vec<String>> = refs.into_iter().map(|r| vec![r]).collect();
    let expected =
        [(true, [21.30, 7.35, 19.95], [21.39, 7.42, 20.03]), (false, [19.23, 6.05, 18.09], [19.22, 6.04, 18.08])];
    for (stemmer, rouge_score_row, perl_row) in expected {
        let c = corpus(&hyps, &refs, &RougeOptions { stemmer }).unwrap();
        let ours = [c.rouge1.f1, c.rouge2.f1, c.rouge_l.f1].map(|f| 100.0 * f);
        eprintln!(
            "lead-8, stemmer {stemmer}: ours R-1/2/L F1 {:.4} / {:.4} / {:.4}; rouge-score {rouge_score_row:?}; \
             Perl ROUGE-1.5.5 {perl_row:?}",
            ours[0], ours[1], ours[2]
        );
        for (got, want) in ours.iter().zip(rouge_score_row) {
            assert!(
                (got - want).abs() <= 0.005,
                "stemmer {stemmer}: corpus {ours:?} vs rouge-score {rouge_score_row:?}"
            );
        }
    }
    eprintln!("{} examples × 2: max |Δ| vs the 6-decimal golden scores = {worst:e}", hyps.len());
}
