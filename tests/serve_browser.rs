//! The page of `train serve` in a real browser: Debian's headless Chromium driven over
//! WebDriver (chromedriver). Types a sentence, waits for the heatmap, checks the label against
//! `train predict` and the heatmap's cells against tokens × units, and saves a screenshot
//! next to the test output (`target/tmp/serve_browser.png`); then draws a forecasting run's
//! forecast plot (`serve_browser_forecast.png`) and a tagging run's tokens with their tags.
//!
//! Skipped, with a message, only when chromium or chromedriver is missing and `CI` is unset;
//! in CI (`.ci/run` installs them) a missing browser fails the test.

mod common;
mod serve_support;

use common::*;
use fantoccini::{ClientBuilder, Locator};
use serve_support::Server;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n))).find(|p| p.is_file())
}

/// chromedriver on a free local port; killed on drop.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_label_and_the_gate_heatmap() {
    let (Some(chromium), Some(chromedriver)) =
        (find(&["chromium", "chromium-browser", "google-chrome"]), find(&["chromedriver"]))
    else {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but chromium/chromedriver are missing: .ci/run installs them (apt-get install chromium chromium-driver)");
        }
        eprintln!(
            "SKIPPED serve_browser: chromium and chromedriver not found on PATH \
             (apt-get install chromium chromium-driver); set CI=1 to make this a failure"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let run = run_dir(tmp.path(), "sentiment", &cfg, &["--set", "train.epochs=2"]);
    // A forecasting run and a tagging run beside the classifier: the page draws the forecast
    // plot for the one and tokens with their tags for the other.
    let (fcfg, _) = serve_support::corpora::forecast_config(tmp.path());
    let forecaster = run_dir(tmp.path(), "forecaster", &fcfg, &[]);
    let tcfg = serve_support::corpora::tag_config(tmp.path());
    let tagger = run_dir(tmp.path(), "ner", &tcfg, &[]);
    let server = Server::start(&[&run, &forecaster, &tagger], &[], &[]);
    let text = "the awful boring story";
    let expected = {
        let out = train(&["predict", "--run", run.to_str().unwrap(), "--json", text], &[]);
        ok(&out);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["label"].as_str().unwrap().to_string()
    };

    let port = free_port();
    let driver = Driver(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver"),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "chromedriver did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1280,900", format!("--user-data-dir={}", profile.path().display())],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("opening a Chromium session over WebDriver");

    let result = async {
        client.goto(&server.url("/")).await?;
        client.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("body[data-ready='1']")).await?;
        let input = client.find(Locator::Id("text")).await?;
        input.send_keys(text).await?;
        client.find(Locator::Id("go")).await?.click().await?;
        client.wait().at_most(Duration::from_secs(30)).for_element(Locator::Css("svg#heatmap rect.cell")).await?;
        let label = client.find(Locator::Id("label")).await?.text().await?;
        let cells = client.find_all(Locator::Css("svg#heatmap rect.cell")).await?.len();
        let strip = client.find_all(Locator::Css("svg#heatmap rect.mean")).await?.len();
        // Keyboard: focus the heatmap and move along a row; the status line reads the cell.
        let svg = client.find(Locator::Id("heatmap")).await?;
        svg.send_keys("\u{E014}").await?; // ArrowRight
        let hover = client.find(Locator::Id("hover")).await?.text().await?;
        let png = client.screenshot().await?;

        // The forecasting run: the page pre-fills its test split's first window; Show draws the
        // window and the forecast.
        client.find(Locator::Id("model")).await?.select_by_value("forecaster").await?;
        client.find(Locator::Id("go")).await?.click().await?;
        client.wait().at_most(Duration::from_secs(30)).for_element(Locator::Css("svg#forecast circle.step")).await?;
        let steps = client.find_all(Locator::Css("svg#forecast circle.step")).await?.len();
        let history = client.find_all(Locator::Css("svg#forecast circle.hist")).await?.len();
        let forecast_png = client.screenshot().await?;

        // The tagging run: tokens with their tags.
        client.find(Locator::Id("model")).await?.select_by_value("ner").await?;
        let input = client.find(Locator::Id("text")).await?;
        input.clear().await?;
        input.send_keys("Boris Smith left Quito").await?;
        client.find(Locator::Id("go")).await?.click().await?;
        client.wait().at_most(Duration::from_secs(30)).for_element(Locator::Css("#tags .tok")).await?;
        let mut chips = Vec::new();
        for chip in client.find_all(Locator::Css("#tags .tok")).await? {
            chips.push(chip.text().await?.replace('\n', "/"));
        }
        Ok::<_, fantoccini::error::CmdError>((label, cells, strip, hover, png, steps, history, forecast_png, chips))
    }
    .await;
    let _ = client.close().await;
    drop(driver);
    let (label, cells, strip, hover, png, steps, history, forecast_png, chips) = result.expect("driving the page");

    assert_eq!(label, format!("Label: {expected}"), "the page's label differs from train predict's");
    // The tiny model: 4 tokens × 16 units (8 per direction, both directions shown).
    assert_eq!(strip, 4, "one mean-strip cell per token");
    assert_eq!(cells, 4 * 16, "tokens × units cells");
    assert!(hover.contains("unit") && hover.contains("token"), "keyboard navigation did not read a cell: {hover:?}");
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve_browser.png");
    std::fs::write(&shot, &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
    eprintln!("screenshot: {}", shot.display());
    assert_eq!((history, steps), (24, 6), "the forecast plot: input_len points of input and horizon of forecast");
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve_browser_forecast.png");
    std::fs::write(&shot, &forecast_png).unwrap();
    // The tags are `train tag --json`'s for the same text.
    let out = train(&["tag", "--run", tagger.to_str().unwrap(), "--json", "Boris Smith left Quito"], &[]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want: Vec<String> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .zip(v["tags"].as_array().unwrap())
        .map(|(w, t)| format!("{}/{}", w.as_str().unwrap(), t.as_str().unwrap()))
        .collect();
    assert_eq!(chips, want, "the page's tokens and tags");
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
}
