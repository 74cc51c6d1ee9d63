//! Loads the real corpora from ../shared (when present) and checks their published counts,
//! both from the folder copies and through the hub cache at ../shared/hf (offline).

use data::config::{CorpusKind, DataConfig, Features};
use data::{load_with, Corpus, HubOptions};
use std::path::PathBuf;

fn shared() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    if p.join("data").is_dir() {
        Some(p)
    } else {
        eprintln!("skipping: {} not present", p.display());
        None
    }
}

fn sizes(cfg: &DataConfig, hub: &HubOptions) -> [usize; 3] {
    load_with(cfg, 0, hub).unwrap().split_sizes()
}

#[test]
fn real_corpora_counts_from_dir_and_hub_cache() {
    let Some(shared) = shared() else { return };
    let hub = HubOptions::offline_at(shared.join("hf"));
    let data = shared.join("data");

    // SST-2: the folder copy names its dev split validation.jsonl; the hub calls it dev.jsonl.
    let sst_dir = DataConfig {
        dir: Some(data.join("sst2")),
        validation_file: Some("validation.jsonl".into()),
        ..Default::default()
    };
    let Corpus::TextClassification(from_dir) = load_with(&sst_dir, 0, &hub).unwrap() else { panic!() };
    assert_eq!([from_dir.train.len(), from_dir.validation.len(), from_dir.test.len()], [6920, 872, 1821]);
    let count = |split: &[data::TextExample], label| split.iter().filter(|e| e.label == label).count();
    assert_eq!((count(&from_dir.train, 0), count(&from_dir.train, 1)), (3310, 3610));
    assert!(from_dir.train.iter().all(|e| !e.text.contains("-lrb-") && !e.text.contains("\\/")));
    let Corpus::TextClassification(from_hub) = load_with(&DataConfig::default(), 0, &hub).unwrap() else { panic!() };
    assert_eq!(from_hub, from_dir, "hub SetFit/sst2 and the folder copy must read the same");

    let with_phrases = DataConfig { extra_train_file: Some("train_phrases.jsonl".into()), ..sst_dir };
    let Corpus::TextClassification(c) = load_with(&with_phrases, 0, &hub).unwrap() else { panic!() };
    assert_eq!((c.train.len(), c.extra_train), (6920 + 67_349, 67_349));

    let m30k = DataConfig { corpus: CorpusKind::Multi30k, dir: Some(data.join("multi30k")), ..Default::default() };
    assert_eq!(sizes(&m30k, &hub), [29_000, 1014, 1000]);
    let m30k_hub = DataConfig { corpus: CorpusKind::Multi30k, ..Default::default() };
    assert_eq!(load_with(&m30k_hub, 0, &hub).unwrap(), load_with(&m30k, 0, &hub).unwrap());

    for (cfg, rows, split) in [
        (
            DataConfig { corpus: CorpusKind::Ett, dir: Some(data.join("ett")), ..Default::default() },
            17_420,
            [8640, 2880, 2880],
        ),
        (DataConfig { corpus: CorpusKind::Ett, ..Default::default() }, 17_420, [8640, 2880, 2880]),
        (
            DataConfig {
                corpus: CorpusKind::Ett,
                dir: Some(data.join("ett")),
                file: Some("ETTm1.csv".into()),
                features: Features::M,
                calendar: true,
                ..Default::default()
            },
            69_680,
            [34_560, 11_520, 11_520],
        ),
    ] {
        let Corpus::Forecast(f) = load_with(&cfg, 0, &hub).unwrap() else { panic!() };
        assert_eq!((f.file_rows, f.split_rows), (rows, split));
        let (l, h) = (cfg.input_len, cfg.horizon);
        assert_eq!(f.train.num_windows(), split[0] - l - h + 1);
        assert_eq!(f.validation.num_windows(), split[1] - h + 1);
        assert_eq!(f.test.num_windows(), split[2] - h + 1);
        // z-scored with training statistics: the training rows have mean 0 and std 1.
        let k = f.target_names.len();
        let col: Vec<f64> = f.train.targets.iter().skip(k - 1).step_by(k).map(|&v| v as f64).collect();
        let mean = col.iter().sum::<f64>() / col.len() as f64;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / col.len() as f64;
        assert!(mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-4, "{mean} {var}");
    }
}
