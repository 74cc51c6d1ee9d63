//! End-to-end tests of `train inspect` on a tiny SST-2-shaped corpus the tests write.
//! Registered in crates/train/Cargo.toml.

mod common;

use common::*;
use std::fs;

#[test]
fn inspect_draws_prints_and_dumps_the_gates() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let run = run_dir(tmp.path(), "r", &cfg, &["--set", "train.epochs=2"]);
    let r = run.to_str().unwrap();
    let svg = tmp.path().join("o.svg");
    let out = train(
        &["inspect", "--run", r, "--out", svg.to_str().unwrap(), "good great film", "the awful boring story"],
        &[],
    );
    ok(&out);
    let text = fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    for w in ["output gate o_t", "awful", "selectivity", "fw0", "bw7"] {
        assert!(text.contains(w), "SVG lacks {w:?}");
    }
    // 7 tokens × (16 units + strip) cells at least.
    assert!(text.matches("<rect").count() >= 7 * 17);

    let out = train(&["inspect", "--run", r, "--json", "good great film", "the awful boring story"], &[]);
    ok(&out);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["gate"], "o");
    assert_eq!(j["units"].as_array().unwrap().len(), 16);
    let s0 = &j["sentences"][0];
    assert_eq!(s0["tokens"], serde_json::json!(["good", "great", "film"]));
    let values = s0["values"].as_array().unwrap();
    assert_eq!(values.len(), 3);
    let all: Vec<f64> = j["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["values"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        })
        .collect();
    assert_eq!(all.len(), 7 * 16);
    assert!(all.iter().all(|v| (0.0..=1.0).contains(v)), "an output gate left [0, 1]");
    // Selectivity is the population variance of each unit over the 7 tokens; order sorts it.
    let sel: Vec<f64> = j["selectivity"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    for u in 0..16 {
        let col: Vec<f64> = (0..7).map(|t| all[t * 16 + u]).collect();
        let m = col.iter().sum::<f64>() / 7.0;
        let var = col.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 7.0;
        assert!((var - sel[u]).abs() < 1e-6, "unit {u}: {var} vs {}", sel[u]);
    }
    let order: Vec<usize> = j["order"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    assert!(order.windows(2).all(|w| sel[w[0]] >= sel[w[1]]));
    // The token strip is the mean over units.
    let mean0: f64 = values[0].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).sum::<f64>() / 16.0;
    assert!((mean0 - s0["token_mean"][0].as_f64().unwrap()).abs() < 1e-6);
    // The prediction agrees with `train predict`.
    let p = train(&["predict", "--run", r, "--json", "good great film"], &[]);
    ok(&p);
    let p: serde_json::Value = serde_json::from_slice(&p.stdout).unwrap();
    assert_eq!(p["label"], s0["label"]);

    // Terminal view, other gates, stdin input.
    let out = train(&["inspect", "--run", r, "--gate", "c", "--top", "5", "good film"], &[]);
    ok(&out);
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(t.contains("cell state c_t") && t.contains("good") && t.contains("film"), "{t}");
    for g in ["i", "f", "h"] {
        ok(&train(&["inspect", "--run", r, "--gate", g, "--json", "fun"], &[]));
    }
}

#[test]
fn inspect_refuses_bad_requests_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let run = run_dir(tmp.path(), "nog", &cfg, &["--set", "train.epochs=1", "--set", "model.variant=nog"]);
    let r = run.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["good"], "has no output gate o_t"),
        (vec!["--gate", "z", "good"], "--gate \"z\""),
        (vec!["--layer", "3", "good"], "--layer 3"),
        (vec!["--out", "/tmp/x.gif", "good"], "expected a .svg or .png file"),
    ];
    for (extra, want) in cases {
        let mut args = vec!["inspect", "--run", r];
        args.extend(extra.iter());
        let out = train(&args, &[]);
        let err = stderr(&out);
        assert!(!out.status.success() && err.contains(want) && !err.contains("panicked"), "{extra:?}: {err}");
    }
    // nog still has the other traces.
    ok(&train(&["inspect", "--run", r, "--gate", "h", "good"], &[]));
    let out = train(&["inspect", "--run", tmp.path().to_str().unwrap(), "x"], &[]);
    assert!(stderr(&out).contains("not a run directory"));
}
