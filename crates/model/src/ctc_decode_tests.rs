use super::*;
use crate::ctc::ctc_single;

/// Random (frames, classes) log-probabilities, each row a softmax.
fn random_lp(frames: usize, classes: usize, seed: u64, spread: f64) -> Vec<f64> {
    let x = crate::rng::SeededRng::new(seed, "decode test").normal_vec(frames * classes, 0.0, spread);
    x.chunks(classes)
        .flat_map(|row| {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z = row.iter().map(|v| (v - m).exp()).sum::<f64>().ln() + m;
            row.iter().map(move |v| v - z).collect::<Vec<_>>()
        })
        .collect()
}

/// Every label sequence over `1..classes` up to `max_len` long.
fn all_labellings(classes: usize, max_len: usize) -> Vec<Vec<u32>> {
    let mut out = vec![vec![]];
    let mut frontier = vec![vec![]];
    for _ in 0..max_len {
        let mut next = Vec::new();
        for p in &frontier {
            for c in 1..classes as u32 {
                let mut q: Vec<u32> = p.clone();
                q.push(c);
                next.push(q);
            }
        }
        out.extend(next.iter().cloned());
        frontier = next;
    }
    out
}

/// With a beam wide enough to keep every prefix, prefix beam search finds the labelling of
/// highest total probability (summed over its paths), found here by enumerating every
/// labelling and scoring it with the CTC forward pass; and its score is that probability.
#[test]
fn wide_beam_equals_exhaustive_search() {
    for seed in 0..20 {
        let (t, k) = (5, 3);
        let lp = random_lp(t, k, seed, 1.5);
        let (best, best_lp) = all_labellings(k, t)
            .into_iter()
            .map(|l| {
                let (nll, _) = ctc_single(&lp, k, t, &l, false);
                (l, -nll)
            })
            .fold((vec![], f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
        let h = prefix_beam_search(&lp, k, t, &BeamOptions { beam: 10_000, ..Default::default() }, None);
        assert_eq!(h.labels, best, "seed {seed}");
        assert!((h.score - best_lp).abs() < 1e-10, "seed {seed}: {} vs {best_lp}", h.score);
    }
}

/// Beam search's score of its answer never falls below the probability of the greedy
/// labelling, and a narrow beam can only do as well as a wide one.
#[test]
fn beam_is_at_least_greedy() {
    for seed in 0..20 {
        let (t, k) = (7, 4);
        let lp = random_lp(t, k, 100 + seed, 1.0);
        let g = greedy(&lp, k, t);
        let greedy_lp = -ctc_single(&lp, k, t, &g.labels, false).0;
        let narrow = prefix_beam_search(&lp, k, t, &BeamOptions { beam: 4, ..Default::default() }, None);
        let wide = prefix_beam_search(&lp, k, t, &BeamOptions { beam: 10_000, ..Default::default() }, None);
        assert!(wide.score >= greedy_lp - 1e-12, "seed {seed}");
        assert!(wide.score >= narrow.score - 1e-12, "seed {seed}");
    }
}

#[test]
fn greedy_merges_repeats_and_drops_blanks() {
    let k = 3;
    let peaks = [0usize, 1, 1, 0, 1, 2, 2, 0];
    let mut lp = vec![(0.1f64).ln(); peaks.len() * k];
    for (t, &c) in peaks.iter().enumerate() {
        lp[t * k + c] = (0.8f64).ln();
    }
    let h = greedy(&lp, k, peaks.len());
    assert_eq!(h.labels, vec![1, 1, 2]);
    assert_eq!(h.frames, vec![1, 4, 5]);
    assert!((h.score - 8.0 * (0.8f64).ln()).abs() < 1e-12);
    // Only the first `frames` rows are read.
    assert_eq!(greedy(&lp, k, 3).labels, vec![1]);
}

/// The Witten–Bell estimate is a distribution: over the known symbols, the end marker and
/// the unknown share, each context's probabilities sum to 1.
#[test]
fn ngram_probabilities_sum_to_one() {
    let space = 3;
    let sents = vec![vec![1, 2, 3, 2, 1], vec![1, 1, 3, 2], vec![2, 2, 2]];
    for unit in [LmUnit::Char, LmUnit::Word] {
        for order in 1..=3 {
            let lm = NgramLm::train(&sents, unit, order, space);
            let symbols: Vec<u32> = match unit {
                LmUnit::Char => vec![1, 2, 3],
                LmUnit::Word => (1..=lm.words.len() as u32).collect(),
            };
            for hist in [vec![], vec![BOS, BOS], symbols[..1].to_vec(), vec![symbols[0], symbols[1]]] {
                let h = lm.history(&hist);
                let known: f64 = symbols.iter().chain([&EOS]).map(|&s| lm.log_prob(&h, s).exp()).sum();
                let unknown = lm.log_prob(&h, 999).exp();
                assert!((known + unknown - 1.0).abs() < 1e-12, "{unit:?} order {order} {hist:?}: {known} + {unknown}");
            }
        }
    }
}

/// Shallow fusion: frames the acoustics read as [1] are read as [1, 2], what every
/// transcript says, and a word model prefers a seen word order.
#[test]
fn language_model_breaks_acoustic_ties() {
    let (space, k) = (3u32, 4usize);
    let sents: Vec<Vec<u32>> = (0..20).map(|_| vec![1, 2]).collect();
    // Frames: 1, then 2 or 1 equally likely, blank.
    let rows = [[0.05, 0.9, 0.025, 0.025], [0.1, 0.45, 0.45, 0.0], [0.9, 0.05, 0.025, 0.025]];
    let lp: Vec<f64> = rows.iter().flatten().map(|p: &f64| p.max(1e-9).ln()).collect();
    let lm = NgramLm::train(&sents, LmUnit::Char, 2, space);
    let opts = BeamOptions { beam: 8, lm_weight: 1.0, ..Default::default() };
    assert_eq!(prefix_beam_search(&lp, k, 3, &opts, Some(&lm)).labels, vec![1, 2]);
    let w = NgramLm::train(&[vec![1, 3, 2], vec![1, 3, 2], vec![2]], LmUnit::Word, 2, space);
    assert!(w.sentence_log_prob(&[1, 3, 2]) > w.sentence_log_prob(&[2, 3, 1]));
    // Without the model the acoustics alone pick [1] (more paths), deterministically.
    let plain = prefix_beam_search(&lp, k, 3, &BeamOptions { beam: 8, ..Default::default() }, None);
    assert_eq!(plain.labels, vec![1]);
    assert_eq!(plain, prefix_beam_search(&lp, k, 3, &BeamOptions { beam: 8, ..Default::default() }, None));
}
