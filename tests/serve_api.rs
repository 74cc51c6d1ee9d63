//! End-to-end tests of `train serve`: a real server on 127.0.0.1 with a port the OS picks,
//! every route, every error class, batching equivalence with `train predict` (bit for bit),
//! the bounded queue and a graceful shutdown. Registered in crates/train/Cargo.toml.

mod common;
mod serve_support;

use common::*;
use serde_json::{json, Value};
use serve_support::Server;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// One tiny classifier run shared by the tests of this file (trained once).
fn shared_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap().keep();
        let cfg = write_config(&tmp, "");
        run_dir(&tmp, "sentiment", &cfg, &["--set", "train.epochs=2"])
    })
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build()
}

/// (status, JSON body) of a POST with a raw body.
fn post_raw(url: &str, body: &[u8]) -> (u16, Value, Option<String>) {
    let r = agent().post(url).set("Content-Type", "application/json").send_bytes(body);
    decode(r)
}

fn post(url: &str, body: &Value) -> (u16, Value, Option<String>) {
    post_raw(url, body.to_string().as_bytes())
}

fn decode(r: Result<ureq::Response, ureq::Error>) -> (u16, Value, Option<String>) {
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = resp.status();
    let retry = resp.header("Retry-After").map(str::to_string);
    let text = resp.into_string().unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v, retry)
}

fn get_text(url: &str) -> (u16, String) {
    match agent().get(url).call() {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap()),
        Err(e) => panic!("transport error: {e}"),
    }
}

/// `train predict --json` on `texts` (one process): (label, probability) per text.
fn cli_predict(run: &Path, texts: &[&str]) -> Vec<(String, f32)> {
    let mut args = vec!["predict", "--run", run.to_str().unwrap(), "--json"];
    args.extend_from_slice(texts);
    let out = train(&args, &[]);
    ok(&out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["label"].as_str().unwrap().to_string(), v["probability"].as_f64().unwrap() as f32)
        })
        .collect()
}

fn error_of(v: &Value) -> &str {
    v["error"].as_str().unwrap_or_else(|| panic!("no error field: {v}"))
}

const TEXTS: [&str; 6] = [
    "good great film",
    "the awful boring story is a very dull film",
    "fun",
    "a lovely smart moving story the film is superb",
    "weak silly",
    "the film is a very good story",
];

#[test]
fn every_route_answers_and_every_error_is_json() {
    let run = shared_run();
    let s = Server::start(&[run], &[], &[]);
    assert_eq!(get_text(&s.url("/healthz")), (200, "ok".to_string()));

    let (st, models, _) = decode(agent().get(&s.url("/v1/models")).call());
    assert_eq!(st, 200);
    let m = &models["models"][0];
    assert_eq!(m["name"], "sentiment");
    assert_eq!(m["task"], "classify");
    assert_eq!(m["labels"], json!(["negative", "positive"]));
    assert_eq!(m["layers"], 1);
    assert_eq!(m["directions"], 2);
    assert!(m["parameters"].as_u64().unwrap() > 100);

    // Predictions: the contract's shape, and `train predict`'s labels and numbers.
    let (st, v, _) = post(&s.url("/v1/predict"), &json!({"texts": TEXTS}));
    assert_eq!(st, 200, "{v}");
    let preds = v["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), TEXTS.len());
    let cli = cli_predict(run, &TEXTS);
    for (p, (label, prob)) in preds.iter().zip(&cli) {
        assert_eq!(p["label"].as_str().unwrap(), label);
        let probs = p["probabilities"].as_object().unwrap();
        assert_eq!(probs.len(), 2);
        let mine = probs[label].as_f64().unwrap() as f32;
        assert_eq!(mine.to_bits(), prob.to_bits(), "{label}: {mine} vs train predict's {prob}");
        let total: f64 = probs.values().map(|x| x.as_f64().unwrap()).sum();
        assert!((total - 1.0).abs() < 1e-5);
    }
    // Addressed by name too.
    let (st, _, _) = post(&s.url("/v1/predict"), &json!({"texts": ["fun"], "model": "sentiment"}));
    assert_eq!(st, 200);

    // Inspect: the numbers of `train inspect --json` for the same sentence.
    let text = "the awful boring story";
    let (st, ins, _) = post(&s.url("/v1/inspect"), &json!({"text": text, "gate": "o", "layer": 0}));
    assert_eq!(st, 200, "{ins}");
    let out = train(&["inspect", "--run", run.to_str().unwrap(), "--json", "--gate", "o", "--layer", "0", text], &[]);
    ok(&out);
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s0 = &cli["sentences"][0];
    assert_eq!(ins["tokens"], s0["tokens"]);
    assert_eq!(ins["values"], s0["values"]);
    assert_eq!(ins["mean"], s0["token_mean"]);
    assert_eq!(ins["label"], s0["label"]);
    assert_eq!(ins["units"], 16);
    assert_eq!(ins["unit_names"], cli["units"]);
    assert_eq!(ins["selectivity"], cli["selectivity"]);
    assert_eq!(ins["order"], cli["order"]);
    for g in ["i", "f", "c", "h"] {
        let (st, v, _) = post(&s.url("/v1/inspect"), &json!({"text": "fun film", "gate": g}));
        assert_eq!(st, 200, "{g}: {v}");
        assert_eq!(v["values"].as_array().unwrap().len(), 2);
    }

    // The page and its assets.
    let (st, html) = get_text(&s.url("/"));
    assert_eq!(st, 200);
    assert!(html.contains("<select id=\"model\"") && html.contains("/assets/app.js"));
    assert!(!html.contains("http://") && !html.contains("https://"), "the page must not load remote assets");
    let (st, js) = get_text(&s.url("/assets/app.js"));
    assert_eq!(st, 200);
    assert!(js.contains("/v1/inspect"));

    // Each error class, as JSON naming the field; the server keeps serving.
    let p = s.url("/v1/predict");
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "body: malformed JSON"),
        (b"[1, 2]".to_vec(), 422, "body: expected a JSON object"),
        (br#"{"texts": "good"}"#.to_vec(), 422, "texts: expected an array"),
        (br#"{"texts": ["good", 3]}"#.to_vec(), 422, "texts[1]: expected a string"),
        (br#"{"texts": ["good", "  "]}"#.to_vec(), 422, "texts[1]: empty text"),
        (br#"{"texts": []}"#.to_vec(), 422, "texts: empty array"),
        (br#"{}"#.to_vec(), 422, "texts: missing"),
        (br#"{"texts": ["good"], "txt": 1}"#.to_vec(), 422, "txt: unknown field"),
        (br#"{"texts": ["good"], "model": "nope"}"#.to_vec(), 404, "model: no model named \"nope\""),
        (br#"{"texts": ["good"], "model": 3}"#.to_vec(), 422, "model: expected a string"),
    ];
    for (body, status, needle) in cases {
        let (st, v, _) = post_raw(&p, &body);
        assert_eq!(st, status, "{}: {v}", String::from_utf8_lossy(&body));
        assert!(error_of(&v).contains(needle), "{}: {v}", String::from_utf8_lossy(&body));
    }
    let many: Vec<&str> = vec!["good"; 257];
    let (st, v, _) = post(&p, &json!({"texts": many}));
    assert_eq!(st, 422);
    assert!(error_of(&v).contains("texts: 257 texts, more than the limit of 256"), "{v}");
    let long = "good ".repeat(2100);
    let (st, v, _) = post(&p, &json!({"texts": [long]}));
    assert_eq!(st, 422);
    assert!(error_of(&v).contains("texts[0]: 2100 tokens"), "{v}");
    let huge = format!("{{\"texts\": [\"{}\"]}}", "a".repeat(1 << 21));
    let (st, v, _) = post_raw(&p, huge.as_bytes());
    assert_eq!(st, 413);
    assert!(error_of(&v).contains("body"), "{v}");
    let i = s.url("/v1/inspect");
    for (body, needle) in [
        (json!({"text": "good", "gate": "x"}), "gate: \"x\""),
        (json!({"text": "good", "layer": 3}), "layer: 3"),
        (json!({"text": "good", "layer": -1}), "layer: expected a non-negative integer"),
        (json!({"text": ""}), "text: empty text"),
        (json!({"gate": "o"}), "text: missing"),
    ] {
        let (st, v, _) = post(&i, &body);
        assert_eq!(st, 422, "{body}: {v}");
        assert!(error_of(&v).contains(needle), "{body}: {v}");
    }
    let (st, v, _) = post(&s.url("/v1/translate"), &json!({"texts": ["good"]}));
    assert_eq!(st, 422);
    assert!(error_of(&v).contains("model: \"sentiment\" is a classify run"), "{v}");
    let (st, v, _) = post(&s.url("/v1/nothing"), &json!({}));
    assert_eq!(st, 404);
    assert!(error_of(&v).contains("route"), "{v}");
    let (st, v) = get_text(&s.url("/v1/predict"));
    assert_eq!(st, 405);
    assert!(serde_json::from_str::<Value>(&v).unwrap()["error"].is_string(), "{v}");
    assert_eq!(get_text(&s.url("/healthz")).0, 200, "the server stopped serving after bad requests");

    // Metrics: requests by route and status, latency and batch histograms, queue depth.
    let (st, m) = get_text(&s.url("/metrics"));
    assert_eq!(st, 200);
    for needle in [
        "sluice_requests_total{route=\"/v1/predict\",status=\"200\"} 2",
        "sluice_requests_total{route=\"/v1/predict\",status=\"422\"}",
        "sluice_requests_total{route=\"/v1/predict\",status=\"413\"} 1",
        "sluice_requests_total{route=\"other\",status=\"404\"} 1",
        "sluice_request_duration_seconds_bucket{route=\"/v1/predict\",le=\"+Inf\"}",
        "sluice_batch_size_count{model=\"sentiment\"} 2",
        "sluice_queue_depth{model=\"sentiment\"} 0",
    ] {
        assert!(m.contains(needle), "metrics lack {needle:?}:\n{m}");
    }
    let (status, log) = s.terminate();
    assert!(status.success(), "{log}");
}

/// Concurrent requests run as one padded batch give, bit for bit, the numbers of each text
/// run alone, and those of `train predict`.
#[test]
fn batching_gives_the_numbers_of_one_by_one() {
    let run = shared_run();
    // The first request holds the worker 400 ms, so the others queue and run as one batch.
    let s =
        Server::start(&[run], &["--max-batch", "64", "--max-wait-ms", "200"], &[("SLUICE_TEST_SERVE_DELAY_MS", "400")]);
    let url = s.url("/v1/predict");
    let batched: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = TEXTS
            .iter()
            .map(|t| {
                let url = url.clone();
                scope.spawn(move || {
                    let (st, v, _) = post(&url, &json!({"texts": [t]}));
                    assert_eq!(st, 200, "{v}");
                    v["predictions"][0].clone()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (_, m) = get_text(&s.url("/metrics"));
    let count = metric(&m, "sluice_batch_size_count{model=\"sentiment\"}");
    let sum = metric(&m, "sluice_batch_size_sum{model=\"sentiment\"}");
    assert_eq!(sum, TEXTS.len() as f64);
    assert!(count < sum, "no batch held more than one request (count {count}, sum {sum}):\n{m}");
    drop(s);
    // One by one: no batching at all.
    let alone = Server::start(&[run], &["--max-batch", "1"], &[]);
    for (t, b) in TEXTS.iter().zip(&batched) {
        let (st, v, _) = post(&alone.url("/v1/predict"), &json!({"texts": [t]}));
        assert_eq!(st, 200);
        assert_eq!(&v["predictions"][0], b, "{t:?}: batched and alone differ");
        let cli = cli_predict(run, &[t]);
        let p = b["probabilities"][&cli[0].0].as_f64().unwrap() as f32;
        assert_eq!(p.to_bits(), cli[0].1.to_bits(), "{t:?}: server {p} vs train predict {}", cli[0].1);
    }
}

fn metric(text: &str, key: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().parse::<f64>().unwrap()))
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
}

/// Over `--max-queue` the server answers 503 with Retry-After; on SIGTERM it stops accepting,
/// finishes the requests in flight and exits 0.
#[test]
fn full_queue_is_503_and_sigterm_finishes_in_flight_requests() {
    let run = shared_run();
    let s = Server::start(&[run], &["--max-batch", "1", "--max-queue", "1"], &[("SLUICE_TEST_SERVE_DELAY_MS", "1000")]);
    let url = s.url("/v1/predict");
    std::thread::scope(|scope| {
        let u = url.clone();
        // Taken by the worker at once (then held 1 s).
        let a = scope.spawn(move || post(&u, &json!({"texts": ["good film"]})));
        std::thread::sleep(Duration::from_millis(300));
        // Waits in the queue: it is now full.
        let u = url.clone();
        let b = scope.spawn(move || post(&u, &json!({"texts": ["dull film"]})));
        std::thread::sleep(Duration::from_millis(200));
        let (st, v, retry) = post(&url, &json!({"texts": ["fun"]}));
        assert_eq!(st, 503, "{v}");
        assert!(error_of(&v).contains("requests waiting"), "{v}");
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(a.join().unwrap().0, 200);
        assert_eq!(b.join().unwrap().0, 200);
    });
    // Shutdown with requests in flight: both finish with 200, then the process exits 0.
    let s2 = Server::start(&[run], &["--max-batch", "1"], &[("SLUICE_TEST_SERVE_DELAY_MS", "800")]);
    let url = s2.url("/v1/predict");
    let results = std::thread::scope(|scope| {
        let hs: Vec<_> = ["good film", "awful story"]
            .iter()
            .map(|t| {
                let u = url.clone();
                scope.spawn(move || post(&u, &json!({"texts": [t]})))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let (status, log) = s2.terminate();
        assert!(status.success(), "exit status {status}:\n{log}");
        assert!(log.contains("shut down cleanly"), "{log}");
        hs.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    for (st, v, _) in results {
        assert_eq!(st, 200, "an in-flight request was dropped: {v}");
        assert!(v["predictions"][0]["label"].is_string());
    }
    drop(s);
}

/// A tiny word-for-word "German" → English corpus (as tests/translate_cli.rs writes it).
fn write_translation_run(tmp: &Path) -> PathBuf {
    const WORDS: [(&str, &str); 8] = [
        ("a", "ein"),
        ("dog", "Hund"),
        ("man", "Mann"),
        ("runs", "läuft"),
        ("sits", "sitzt"),
        ("in", "im"),
        ("snow", "Schnee"),
        ("park", "Park"),
    ];
    let data = tmp.join("mt_corpus");
    std::fs::create_dir_all(&data).unwrap();
    let mut state = 99u64;
    let mut next = move |n: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % n
    };
    for (file, n) in [("train.jsonl", 96), ("val.jsonl", 8), ("test.jsonl", 8)] {
        let mut lines = String::new();
        for _ in 0..n {
            let idx: Vec<usize> = (0..2 + next(3)).map(|_| next(WORDS.len())).collect();
            let en: Vec<&str> = idx.iter().map(|&i| WORDS[i].0).collect();
            let de: Vec<&str> = idx.iter().map(|&i| WORDS[i].1).collect();
            lines.push_str(&format!("{{\"en\": \"{}\", \"de\": \"{}\"}}\n", en.join(" "), de.join(" ")));
        }
        std::fs::write(data.join(file), lines).unwrap();
    }
    let cfg = format!(
        "task = \"translate\"\n[run]\nname = \"mt\"\nseed = 3\nthreads = 1\n[data]\ncorpus = \"multi30k\"\n\
         dir = \"{}\"\ndirection = \"de-en\"\n[tokenizer]\nmodel = \"word_level\"\nvocab_size = 60\n\
         [model]\nembedding_dim = 8\nhidden = 8\n[translate]\nbeam = 2\n[train]\nepochs = 1\nbatch_size = 16\nlr = 0.01\n\
         early_stopping_metric = \"loss\"\nearly_stopping_mode = \"min\"\n",
        data.display()
    );
    let path = tmp.join("mt.toml");
    std::fs::write(&path, cfg).unwrap();
    run_dir(tmp, "translator", &path, &[])
}

/// Two runs in one process, each addressed by name; `/v1/translate` gives `train translate`'s
/// outputs and the attention matrix, and the routes refuse the other task's model.
#[test]
fn translation_runs_answer_translate_beside_a_classifier() {
    let tmp = tempfile::tempdir().unwrap();
    let mt = write_translation_run(tmp.path());
    let s = Server::start(&[shared_run(), &mt], &[], &[]);
    let (_, models, _) = decode(agent().get(&s.url("/v1/models")).call());
    let names: Vec<&str> = models["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["sentiment", "translator"]);
    assert_eq!(models["models"][1]["task"], "translate");
    let texts = ["ein Hund läuft im Schnee", "Mann sitzt"];
    for beam in [1usize, 2] {
        let (st, v, _) = post(&s.url("/v1/translate"), &json!({"texts": texts, "beam": beam, "model": "translator"}));
        assert_eq!(st, 200, "{v}");
        let b = beam.to_string();
        let out = train(&["translate", "--run", mt.to_str().unwrap(), "--beam", &b, texts[0], texts[1]], &[]);
        ok(&out);
        let cli: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        assert_eq!(v["outputs"], json!(cli), "beam {beam}");
    }
    let (st, v, _) =
        post(&s.url("/v1/translate"), &json!({"texts": [texts[0]], "model": "translator", "attention": true}));
    assert_eq!(st, 200, "{v}");
    let att = &v["attention"];
    let rows = att["target"].as_array().unwrap().len();
    assert_eq!(att["source"].as_array().unwrap().len(), 5);
    assert_eq!(att["weights"].as_array().unwrap().len(), rows);
    for row in att["weights"].as_array().unwrap() {
        let sum: f64 = row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4, "attention row sums to {sum}");
    }
    for (body, needle) in [
        (json!({"texts": ["Hund"], "model": "translator", "beam": 0}), "beam: 0"),
        (json!({"texts": ["Hund"], "model": "translator", "attention": "yes"}), "attention: expected a boolean"),
    ] {
        let (st, v, _) = post(&s.url("/v1/translate"), &body);
        assert_eq!(st, 422, "{v}");
        assert!(error_of(&v).contains(needle), "{v}");
    }
    let (st, v, _) = post(&s.url("/v1/predict"), &json!({"texts": ["Hund"], "model": "translator"}));
    assert_eq!(st, 422);
    assert!(error_of(&v).contains("\"translator\" is a translate run"), "{v}");
    let (status, log) = s.terminate();
    assert!(status.success(), "{log}");
}

/// `/v1/predict` on a forecasting run: a series of the run's input length (with its dates, the
/// run using calendar features) gives `train predict --csv`'s forecast of the same window.
#[test]
fn forecasting_runs_forecast_on_predict() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, rows) = serve_support::corpora::forecast_config(tmp.path());
    let run = run_dir(tmp.path(), "forecaster", &cfg, &[]);
    let csv = tmp.path().join("f.csv");
    ok(&train(&["predict", "--run", run.to_str().unwrap(), "--csv", csv.to_str().unwrap()], &[]));
    // Window 0 of the test split: its six steps' dates and forecasts.
    let text = std::fs::read_to_string(&csv).unwrap();
    let steps: Vec<(String, f32)> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[0] == "0")
        .map(|f| (f[2].to_string(), f[4].parse::<f32>().unwrap()))
        .collect();
    assert_eq!(steps.len(), 6);
    let first = rows.iter().position(|(d, _)| *d == steps[0].0).expect("the forecast's first date is a row");
    let window = &rows[first - 24..first];
    let series: Vec<f64> = window.iter().map(|r| r.1).collect();
    let dates: Vec<&str> = window.iter().map(|r| r.0.as_str()).collect();

    let s = Server::start(&[&run], &[], &[]);
    let (_, models, _) = decode(agent().get(&s.url("/v1/models")).call());
    let m = &models["models"][0];
    assert_eq!(m["task"], "forecast");
    assert_eq!(m["forecast"]["input_len"], 24);
    assert_eq!(m["forecast"]["horizon"], 6);
    assert_eq!(m["forecast"]["dates"], true);
    let url = s.url("/v1/predict");
    let (st, v, _) = post(&url, &json!({"series": [series, series], "dates": [dates, dates]}));
    assert_eq!(st, 200, "{v}");
    let f = v["forecasts"].as_array().unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!(f[0], f[1]);
    assert_eq!(f[0].as_array().unwrap().len(), 6);
    for (got, (date, want)) in f[0].as_array().unwrap().iter().zip(&steps) {
        // The same inputs (the corpus's z-score), the same network, the same de-normalisation:
        // the same f32, bit for bit (both sides print f32 in its shortest round-trip form).
        let got: f32 = got.to_string().parse().unwrap();
        assert_eq!(got.to_bits(), want.to_bits(), "{date}: served {got} vs train predict's {want}");
    }
    let short: Vec<f64> = series[..23].to_vec();
    let mut bad_dates = dates.clone();
    bad_dates[3] = "July 4th";
    for (body, needle) in [
        (json!({"series": [series]}), "dates: missing"),
        (json!({"series": [short], "dates": [dates]}), "series[0]: 23 rows, the run reads 24"),
        (json!({"series": [series], "dates": [bad_dates]}), "dates[0][3]: \"July 4th\" is not a date"),
        (json!({"series": "1 2 3"}), "series: expected an array"),
        (json!({"texts": ["good"]}), "texts: unknown field"),
        (json!({"series": [series], "dates": [dates, dates]}), "dates: 2 lists for 1 series"),
        (json!({"series": [], "dates": []}), "series: empty array"),
    ] {
        let (st, v, _) = post(&url, &body);
        assert_eq!(st, 422, "{body}: {v}");
        assert!(error_of(&v).contains(needle), "{body}: {v}");
    }
    let mut with_text = series.clone();
    with_text[0] = f64::NAN;
    let body = json!({"series": [with_text], "dates": [dates]}).to_string().replace("NaN", "\"x\"");
    let (st, v, _) = post_raw(&url, body.replace("null", "\"x\"").as_bytes());
    assert_eq!(st, 422, "{v}");
    assert!(error_of(&v).contains("series[0][0]: expected a number"), "{v}");
    let (status, log) = s.terminate();
    assert!(status.success(), "{log}");

    // A run without calendar features reads values only: dates are refused, not ignored.
    let plain = run_dir(tmp.path(), "plain", &cfg, &["--set", "data.calendar=false"]);
    let s = Server::start(&[&plain], &[], &[]);
    let (_, models, _) = decode(agent().get(&s.url("/v1/models")).call());
    assert_eq!(models["models"][0]["forecast"]["dates"], false);
    let url = s.url("/v1/predict");
    let (st, v, _) = post(&url, &json!({"series": [series]}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["forecasts"][0].as_array().unwrap().len(), 6);
    let (st, v, _) = post(&url, &json!({"series": [series], "dates": [dates]}));
    assert_eq!(st, 422, "{v}");
    assert!(error_of(&v).contains("dates: the run uses no calendar features"), "{v}");
    let (status, log) = s.terminate();
    assert!(status.success(), "{log}");
}

/// (status, JSON body) of a POST with a raw body of the given content type.
fn post_typed(url: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
    let (st, v, _) = decode(agent().post(url).set("Content-Type", content_type).send_bytes(body));
    (st, v)
}

/// `/v1/tag` on an entity run: each output is the object `train tag --json` prints for the text
/// (tokens, IOB2 tags, entities with token spans); a classifier beside it refuses the route.
#[test]
fn tagging_runs_answer_tag_as_train_tag_does() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = serve_support::corpora::tag_config(tmp.path());
    let run = run_dir(tmp.path(), "ner", &cfg, &[]);
    let texts = ["Anna lives in Oslo .", "the mayor of Lima met Chen", "Boris Smith left Quito", "unknown words here"];
    let mut args = vec!["tag", "--run", run.to_str().unwrap(), "--json"];
    args.extend_from_slice(&texts);
    let out = train(&args, &[]);
    ok(&out);
    let cli: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(cli.len(), texts.len());

    let s = Server::start(&[&run, shared_run()], &[], &[]);
    let (_, models, _) = decode(agent().get(&s.url("/v1/models")).call());
    let m = &models["models"][0];
    assert_eq!(m["task"], "tag");
    assert_eq!(m["routes"], json!(["/v1/tag"]));
    assert!(m["labels"].as_array().unwrap().iter().any(|l| l == "S-PER"), "{m}");
    let url = s.url("/v1/tag");
    let (st, v, _) = post(&url, &json!({"texts": texts}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["model"], "ner");
    let outputs = v["outputs"].as_array().unwrap();
    assert_eq!(outputs, &cli);
    assert_eq!(outputs[0]["tokens"].as_array().unwrap().len(), 5);
    assert!(outputs.iter().any(|o| !o["entities"].as_array().unwrap().is_empty()), "no entity found: {v}");
    // One text at a time gives the same as all together.
    let (st, one, _) = post(&url, &json!({"texts": [texts[2]], "model": "ner"}));
    assert_eq!(st, 200, "{one}");
    assert_eq!(one["outputs"][0], cli[2]);
    for (body, needle) in [
        (json!({"texts": ["   "]}), "texts[0]: empty text"),
        (json!({"texts": "Anna"}), "texts: expected an array"),
        (json!({"text": "Anna"}), "text: unknown field"),
        (json!({"texts": ["fun"], "model": "sentiment"}), "/v1/tag answers tagging runs"),
    ] {
        let (st, v, _) = post(&url, &body);
        assert_eq!(st, 422, "{body}: {v}");
        assert!(error_of(&v).contains(needle), "{body}: {v}");
    }
    let (st, v, _) = post(&s.url("/v1/predict"), &json!({"texts": ["Anna"]}));
    assert_eq!(st, 422, "{v}");
    let (status, log) = s.terminate();
    assert!(status.success(), "{log}");
}

/// `/v1/transcribe`: one WAV body or several multipart parts give `train transcribe --json`'s
/// texts; an invalid WAV is a 422 naming the part, and the server keeps serving.
#[test]
fn transcription_runs_answer_transcribe_as_train_transcribe_does() {
    use serve_support::corpora::{multipart, transcribe_config, utterance};
    let tmp = tempfile::tempdir().unwrap();
    let cfg = transcribe_config(tmp.path());
    let run = run_dir(tmp.path(), "tones", &cfg, &[]);
    let clips: Vec<Vec<u8>> = ["C A B", "A B", "B B C A"]
        .iter()
        .zip(1u64..)
        .map(|(t, seed)| wav_bytes(8000, 1, &utterance(t, seed)))
        .collect();
    let files: Vec<PathBuf> = (0..clips.len()).map(|i| tmp.path().join(format!("clip{i}.wav"))).collect();
    for (f, c) in files.iter().zip(&clips) {
        std::fs::write(f, c).unwrap();
    }
    let cli = |beam: &str| -> Vec<String> {
        let mut args = vec!["transcribe", "--run", run.to_str().unwrap(), "--json", "--beam", beam];
        args.extend(files.iter().map(|f| f.to_str().unwrap()));
        let out = train(&args, &[]);
        ok(&out);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["text"].as_str().unwrap().to_string())
            .collect()
    };
    let (beam3, greedy) = (cli("3"), cli("1"));

    let s = Server::start(&[&run], &[], &[]);
    let (_, models, _) = decode(agent().get(&s.url("/v1/models")).call());
    assert_eq!(models["models"][0]["task"], "transcribe");
    let url = s.url("/v1/transcribe");
    // One file as the body; the run's beam (3) by default.
    for (i, clip) in clips.iter().enumerate() {
        let (st, v) = post_typed(&url, "audio/wav", clip);
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["outputs"], json!([beam3[i]]), "clip {i}");
    }
    // Several files as multipart parts, in order; ?beam= picks the width.
    let parts: Vec<(String, &[u8])> =
        clips.iter().enumerate().map(|(i, c)| (format!("clip{i}.wav"), c.as_slice())).collect();
    let named: Vec<(&str, &[u8])> = parts.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    let (ct, body) = multipart(&named);
    let (st, v) = post_typed(&url, &ct, &body);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["outputs"], json!(beam3));
    let (st, v) = post_typed(&format!("{url}?beam=1&model=tones"), &ct, &body);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["outputs"], json!(greedy));

    // Errors: an invalid WAV names its part; a stereo file, an empty body, JSON, a bad beam.
    let (ct, body) = multipart(&[("good.wav", &clips[0]), ("notes.wav", b"not audio at all")]);
    let (st, v) = post_typed(&url, &ct, &body);
    assert_eq!(st, 422, "{v}");
    assert!(error_of(&v).contains("part 1 (\"notes.wav\")") && error_of(&v).contains("WAV"), "{v}");
    let stereo = wav_bytes(8000, 2, &utterance("A B", 3));
    for (ct, body, code, needle) in [
        ("audio/wav", &b"RIFF...."[..], 422, "body: not a readable WAV"),
        ("audio/wav", &stereo[..], 422, "body: 2 channels"),
        ("audio/wav", &b""[..], 422, "body: empty"),
        ("application/json", &b"{\"texts\": [\"A\"]}"[..], 415, "body: expected a WAV file"),
    ] {
        let (st, v) = post_typed(&url, ct, body);
        assert_eq!(st, code, "{ct}: {v}");
        assert!(error_of(&v).contains(needle), "{ct}: {v}");
    }
    let (st, v) = post_typed(&format!("{url}?beam=0"), "audio/wav", &clips[0]);
    assert_eq!(st, 422, "{v}");
    assert!(error_of(&v).contains("beam: 0"), "{v}");
    let (st, v) = post_typed(&format!("{url}?lang=en"), "audio/wav", &clips[0]);
    assert_eq!(st, 422, "{v}");
    assert!(error_of(&v).contains("lang: unknown query parameter"), "{v}");
    // Still serving.
    let (st, v) = post_typed(&url, "audio/wav", &clips[1]);
    assert_eq!((st, &v["outputs"]), (200, &json!([beam3[1]])), "{v}");
    let (status, log) = s.terminate();
    assert!(status.success(), "{log}");
}

/// `/v1/predict` on an audio classification run: WAV bodies give `train predict --json`'s
/// digits and probabilities, bit for bit, in the shape of text predictions.
#[test]
fn audio_runs_predict_digits_from_wav_bodies() {
    use serve_support::corpora::{audio_config, multipart};
    let tmp = tempfile::tempdir().unwrap();
    let cfg = audio_config(tmp.path());
    let run = run_dir(tmp.path(), "digits", &cfg, &[]);
    let rec = tmp.path().join("recordings");
    let files: Vec<PathBuf> = [3, 7, 0].iter().map(|d| rec.join(format!("{d}_bob_1.wav"))).collect();
    let mut args = vec!["predict", "--run", run.to_str().unwrap(), "--json"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let out = train(&args, &[]);
    ok(&out);
    let cli: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(cli.len(), 3);
    let check = |p: &Value, c: &Value| {
        assert_eq!(p["label"], c["digit"].to_string().as_str(), "{p} vs {c}");
        let probs = p["probabilities"].as_object().unwrap();
        assert_eq!(
            probs.keys().collect::<Vec<_>>(),
            (0..10).map(|d| d.to_string()).collect::<Vec<_>>().iter().collect::<Vec<_>>()
        );
        for (d, want) in c["probabilities"].as_array().unwrap().iter().enumerate() {
            let got = probs[&d.to_string()].as_f64().unwrap() as f32;
            assert_eq!(got.to_bits(), (want.as_f64().unwrap() as f32).to_bits(), "digit {d}: {p} vs {c}");
        }
    };

    let s = Server::start(&[&run, shared_run()], &[], &[]);
    let url = s.url("/v1/predict");
    let bytes: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    for (b, c) in bytes.iter().zip(&cli) {
        let (st, v) = post_typed(&url, "audio/wav", b);
        assert_eq!(st, 200, "{v}");
        check(&v["predictions"][0], c);
    }
    let (ct, body) = multipart(&[("a.wav", &bytes[0]), ("b.wav", &bytes[1]), ("c.wav", &bytes[2])]);
    let (st, v) = post_typed(&format!("{url}?model=digits"), &ct, &body);
    assert_eq!(st, 200, "{v}");
    for (p, c) in v["predictions"].as_array().unwrap().iter().zip(&cli) {
        check(p, c);
    }
    // Errors: a bad part named; JSON to the audio run; audio to the classifier.
    let (ct, body) = multipart(&[("a.wav", &bytes[0]), ("junk.wav", b"junk")]);
    let (st, v) = post_typed(&url, &ct, &body);
    assert_eq!(st, 422, "{v}");
    assert!(error_of(&v).contains("part 1 (\"junk.wav\"): not a readable WAV"), "{v}");
    let (st, v, _) = post(&url, &json!({"texts": ["one"]}));
    assert_eq!(st, 415, "{v}");
    assert!(error_of(&v).contains("is an audio run"), "{v}");
    let (st, v) = post_typed(&format!("{url}?model=sentiment"), "audio/wav", &bytes[0]);
    assert_eq!(st, 415, "{v}");
    assert!(error_of(&v).contains("classify run"), "{v}");
    let (status, log) = s.terminate();
    assert!(status.success(), "{log}");
}
