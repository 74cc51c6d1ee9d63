//! Class labels of users' files, shared by `corpus = "text"` and `corpus = "audio"`: how a
//! label is read (integers, also written as strings, or other strings), how the class list is
//! fixed, and how validation/test rows are carved from the training split (seeded, stratified).

use crate::rng::{DataRng, Purpose};

/// A label as written: integers (also integer strings, as CSV cells and folder names are) or
/// other strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Label {
    Int(i64),
    Str(String),
}

impl Label {
    /// A string label, an integer when it parses as one.
    pub(crate) fn parse(s: &str) -> Label {
        s.parse::<i64>().map(Label::Int).unwrap_or_else(|_| Label::Str(s.to_string()))
    }

    /// The class name: the integer's decimal text, or the string.
    pub(crate) fn name(&self) -> String {
        match self {
            Label::Int(i) => i.to_string(),
            Label::Str(s) => s.clone(),
        }
    }
}

/// The class list: `configured` (`data.labels`, which also fixes the order) when set, else the
/// training split's labels sorted: integers first and numerically, then strings by their bytes.
pub(crate) fn class_list<'a>(configured: Option<&[String]>, train: impl Iterator<Item = &'a Label>) -> Vec<String> {
    match configured {
        Some(l) => l.to_vec(),
        None => {
            let mut seen: Vec<&Label> = train.collect();
            seen.sort();
            seen.dedup();
            seen.into_iter().map(Label::name).collect()
        }
    }
}

/// Where each training example goes (0 = train, 1 = validation, 2 = test): `test` then
/// `validation` fractions of each class's examples (rounded), drawn by a shuffle per class
/// seeded with `seed`.
pub(crate) fn carve_plan(labels: &[usize], num_classes: usize, validation: f64, test: f64, seed: u64) -> Vec<u8> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l].push(i);
    }
    let mut rng = DataRng::new(seed, Purpose::SplitCarve, 0);
    let mut dest = vec![0u8; labels.len()];
    for idx in &mut by_class {
        rng.shuffle(idx);
        let n = idx.len() as f64;
        let nt = (test * n).round() as usize;
        let nv = ((validation * n).round() as usize).min(idx.len().saturating_sub(nt));
        for &i in &idx[..nt] {
            dest[i] = 2;
        }
        for &i in &idx[nt..nt + nv] {
            dest[i] = 1;
        }
    }
    dest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_lists_sort_integers_numerically() {
        let labels = [Label::parse("10"), Label::parse("2"), Label::parse("b"), Label::parse("a"), Label::parse("2")];
        assert_eq!(class_list(None, labels.iter()), ["2", "10", "a", "b"]);
        let fixed = vec!["b".to_string(), "a".to_string()];
        assert_eq!(class_list(Some(&fixed), labels.iter()), ["b", "a"]);
    }

    #[test]
    fn carving_is_stratified_and_seeded() {
        let labels: Vec<usize> = (0..40).map(|i| i % 2).collect();
        let a = carve_plan(&labels, 2, 0.1, 0.2, 3);
        assert_eq!(a, carve_plan(&labels, 2, 0.1, 0.2, 3));
        assert_ne!(a, carve_plan(&labels, 2, 0.1, 0.2, 4));
        for class in 0..2 {
            let count = |d: u8| (0..40).filter(|&i| labels[i] == class && a[i] == d).count();
            assert_eq!((count(0), count(1), count(2)), (14, 2, 4));
        }
    }
}
