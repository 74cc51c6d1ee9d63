//! Time-series forecasting (`task = "forecast"`, ETT under the Informer protocol):
//! z-scored windows from the data crate → [`Forecaster`] (LSTM encoder, direct or seq2seq
//! head, optional RevIN) → MSE. Metrics: MSE and MAE on the z-scored scale (the papers'
//! figures) and on the original scale, overall, per horizon step and per target column.
//! `train predict --csv/--plot` writes the test forecasts and draws one window.

use super::{Registration, SplitName, StepOutput, Task};
use crate::config::Config;
use crate::plot::{LinePlot, Series};
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use data::batch::{BatchOptions, BatchOrder, FloatBatch, FloatSource};
use data::{Forecast, ForecastSplit};
use model::forecaster::{error_sums, mse_loss, Forecaster, ForecasterConfig};
use model::rng::SeededRng;
use serde_json::{json, Map, Value};

/// How the registry builds this task and predicts with its runs.
pub const REGISTRATION: Registration =
    Registration { build: |cfg, _, _| Ok(Box::new(ForecastTask::new(cfg)?)), predict: predict_cli };

/// Loads the ETT corpus the config names.
pub fn load_corpus(cfg: &Config) -> Result<Forecast> {
    match data::load(&cfg.data, cfg.run.seed).context("loading the corpus")? {
        data::Corpus::Forecast(f) => Ok(f),
        _ => bail!("task \"forecast\" needs a forecasting corpus (data.corpus = \"series\" or \"ett\")"),
    }
}

/// The model config for a corpus: value columns first (RevIN normalises them), calendar
/// features after; each target column's position among the inputs.
pub fn model_config(cfg: &Config, corpus: &Forecast) -> Result<ForecasterConfig> {
    let in_features = corpus.train.in_features;
    let target_columns = corpus
        .target_names
        .iter()
        .map(|t| {
            corpus.input_names.iter().position(|n| n == t).ok_or_else(|| {
                anyhow!(
                    "target column `{t}` is not among the inputs ({}); RevIN and the seq2seq decoder need it",
                    corpus.input_names.join(", ")
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mc = ForecasterConfig {
        lstm: cfg.model.lstm(in_features),
        out_features: corpus.train.out_features,
        horizon: corpus.train.horizon,
        decoder: cfg.forecast.decoder,
        revin: cfg.forecast.revin,
        revin_affine: cfg.forecast.revin_affine,
        value_features: corpus.input_mean.len(),
        target_columns,
        head_dropout: cfg.model.head_dropout,
    };
    mc.validate().context("the forecaster's config")?;
    Ok(mc)
}

/// Errors of a split, summed per (step, feature) on the z-scored scale.
#[derive(Debug, Clone)]
pub struct ErrorSums {
    /// Forecast steps.
    pub horizon: usize,
    /// Target columns.
    pub features: usize,
    /// Windows summed.
    pub windows: usize,
    /// Squared errors per (step, feature), row-major.
    pub sq: Vec<f64>,
    /// Absolute errors per (step, feature), row-major.
    pub abs: Vec<f64>,
}

impl ErrorSums {
    /// Zero sums.
    pub fn new(horizon: usize, features: usize) -> Self {
        Self { horizon, features, windows: 0, sq: vec![0.0; horizon * features], abs: vec![0.0; horizon * features] }
    }

    /// Adds a batch's errors ((windows, horizon, features) tensors).
    pub fn add(&mut self, prediction: &Tensor, target: &Tensor) -> Result<()> {
        let (sq, ab) = error_sums(prediction, target)?;
        self.windows += prediction.dim(0)?;
        for (a, b) in self.sq.iter_mut().zip(sq) {
            *a += b;
        }
        for (a, b) in self.abs.iter_mut().zip(ab) {
            *a += b;
        }
        Ok(())
    }

    /// MSE and MAE on the z-scored scale and, with `std` (each target column's training
    /// standard deviation: original error = z-scored error × std), on the original scale;
    /// overall, `_by_step` (averaged over columns) and `_by_feature`.
    pub fn metrics(&self, std: &[f32], names: &[String]) -> Map<String, Value> {
        let (h, f, n) = (self.horizon, self.features, self.windows.max(1) as f64);
        let scale = |k: usize, orig: bool, sq: bool| -> f64 {
            if !orig {
                1.0
            } else if sq {
                (std[k] as f64).powi(2)
            } else {
                std[k] as f64
            }
        };
        let mut m = Map::new();
        for (orig, suffix) in [(false, ""), (true, "_original")] {
            for (sq, name) in [(true, "mse"), (false, "mae")] {
                let src = if sq { &self.sq } else { &self.abs };
                let cell = |s: usize, k: usize| src[s * f + k] * scale(k, orig, sq) / n;
                let by_step: Vec<f64> = (0..h).map(|s| (0..f).map(|k| cell(s, k)).sum::<f64>() / f as f64).collect();
                let overall = by_step.iter().sum::<f64>() / h as f64;
                m.insert(format!("{name}{suffix}"), json!(overall));
                m.insert(format!("{name}{suffix}_by_step"), json!(by_step));
                if f > 1 {
                    let by_feature: Map<String, Value> = (0..f)
                        .map(|k| (names[k].clone(), json!((0..h).map(|s| cell(s, k)).sum::<f64>() / h as f64)))
                        .collect();
                    m.insert(format!("{name}{suffix}_by_feature"), Value::Object(by_feature));
                }
            }
        }
        m.insert("windows".into(), json!(self.windows));
        m
    }
}

/// The forecasting task: the ETT corpus plus the model.
pub struct ForecastTask {
    corpus: Forecast,
    model_config: ForecasterConfig,
    net: Forecaster,
    varmap: VarMap,
    device: Device,
    order: BatchOrder,
    plan: Vec<Vec<usize>>,
    eval_batch_size: usize,
}

impl ForecastTask {
    /// Loads the corpus and builds the model (seeded by `run.seed`).
    pub fn new(cfg: &Config) -> Result<Self> {
        let device = cfg.run.device()?;
        let corpus = load_corpus(cfg)?;
        let model_config = model_config(cfg, &corpus)?;
        let varmap = VarMap::new();
        let vb = model::init::seeded_var_builder(&varmap, cfg.run.seed, DType::F32, &device);
        let net = Forecaster::new(&model_config, vb).context("building the model")?;
        let n = corpus.train.num_windows();
        if n == 0 {
            bail!("the training split has no window of input_len + horizon rows");
        }
        let opts = BatchOptions {
            batch_size: cfg.train.batch_size,
            seed: cfg.run.seed,
            pool: 1,
            shuffle: true,
            drop_last: false,
            max_len: None,
        };
        let order = BatchOrder::uniform(n, &opts)?;
        Ok(Self {
            corpus,
            model_config,
            net,
            varmap,
            device,
            order,
            plan: Vec::new(),
            eval_batch_size: cfg.forecast.eval_batch_size,
        })
    }

    /// The loaded corpus (normalisation statistics, names, splits).
    pub fn corpus(&self) -> &Forecast {
        &self.corpus
    }

    fn split(&self, split: SplitName) -> &ForecastSplit {
        match split {
            SplitName::Train => &self.corpus.train,
            SplitName::Validation => &self.corpus.validation,
            SplitName::Test => &self.corpus.test,
        }
    }

    fn tensors(&self, b: &FloatBatch) -> Result<(Tensor, Tensor)> {
        let x = Tensor::from_slice(&b.x, (b.batch_size, b.time, b.in_features), &self.device)?;
        let y = Tensor::from_slice(&b.y, (b.batch_size, b.horizon, b.out_features), &self.device)?;
        Ok((x, y))
    }

    /// Z-scored forecasts of every window of `split`, (windows, horizon, out_features) row-major,
    /// with the error sums.
    pub fn forecast_split(&self, split: SplitName) -> Result<(Vec<f32>, ErrorSums)> {
        let src = self.split(split);
        let mut sums = ErrorSums::new(src.horizon(), src.out_features());
        let mut all = Vec::with_capacity(src.num_examples() * src.horizon() * src.out_features());
        let idx: Vec<usize> = (0..src.num_examples()).collect();
        for chunk in idx.chunks(self.eval_batch_size) {
            let b = FloatBatch::gather(src, chunk);
            let (x, y) = self.tensors(&b)?;
            let p = self.net.forward(&x, false, None)?;
            sums.add(&p, &y)?;
            all.extend(p.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok((all, sums))
    }
}

impl ForecastTask {
    /// The forecaster's config.
    pub fn forecaster_config(&self) -> &ForecasterConfig {
        &self.model_config
    }

    /// Z-scored forecasts of `windows` windows of already normalised inputs,
    /// `x`: (windows, input_len, in_features) row-major → (windows, horizon, out_features).
    /// For a served forecaster (`train serve`).
    pub fn forecast_inputs(&self, x: &[f32], windows: usize) -> Result<Vec<f32>> {
        let c = &self.model_config;
        let in_features = c.lstm.input_size;
        if windows == 0 || !x.len().is_multiple_of(windows * in_features) {
            bail!("{} input values do not make {windows} windows of {in_features} features", x.len());
        }
        let time = x.len() / (windows * in_features);
        let x = Tensor::from_slice(x, (windows, time, in_features), &self.device)?;
        Ok(self.net.forward(&x, false, None)?.flatten_all()?.to_vec1::<f32>()?)
    }
}

impl Task for ForecastTask {
    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn penalised(&self, name: &str) -> bool {
        !name.contains("bias") && !name.starts_with("revin.")
    }

    fn start_epoch(&mut self, epoch: usize) -> Result<usize> {
        self.plan = self.order.plan(epoch as u64);
        Ok(self.plan.len())
    }

    fn train_step(&self, index: usize, rng: &mut SeededRng) -> Result<StepOutput> {
        let b = FloatBatch::gather(&self.corpus.train, &self.plan[index]);
        let (x, y) = self.tensors(&b)?;
        let p = self.net.forward(&x, true, Some(rng))?;
        Ok(StepOutput { loss: mse_loss(&p, &y)?, examples: b.batch_size, tokens: b.batch_size * b.time, correct: None })
    }

    /// `loss` (= `mse`), `mse`, `mae`, `mse_original`, `mae_original`, each also `_by_step`
    /// (and `_by_feature` for several targets), and `windows`.
    fn evaluate(&self, split: SplitName) -> Result<Map<String, Value>> {
        let (_, sums) = self.forecast_split(split)?;
        let mut m = sums.metrics(&self.corpus.target_std, &self.corpus.target_names);
        let mse = m["mse"].clone();
        m.insert("loss".into(), mse);
        Ok(m)
    }

    fn checkpoint_meta(&self) -> Value {
        json!({"kind": "forecaster", "model": &self.model_config, "target_names": &self.corpus.target_names,
               "input_names": &self.corpus.input_names})
    }
}

/// `train predict` for a forecasting run: `--csv` writes every test window (original scale),
/// `--plot` draws one window (`--window`, default the last) against the truth.
pub fn predict_cli(dir: &crate::rundir::RunDir, cfg: &Config, args: &super::PredictArgs) -> Result<()> {
    if args.csv.is_none() && args.plot.is_none() {
        bail!("a forecasting run predicts its test split: give --csv OUT.csv and/or --plot OUT.svg (with --window N)");
    }
    if !args.inputs.is_empty() {
        bail!("a forecasting run takes no inputs (got {:?}); it forecasts the test split of its config", args.inputs);
    }
    let task = ForecastTask::new(cfg)?;
    model::checkpoint::load_into_varmap(dir.best(), task.varmap())
        .with_context(|| format!("loading {}", dir.best().display()))?;
    let (pred, sums) = task.forecast_split(SplitName::Test)?;
    let c = task.corpus();
    let test = &c.test;
    let (l, h, f) = (test.input_len, test.horizon, test.out_features);
    let n = test.num_windows();
    // Original scale: z-scored × std + mean, column by column.
    let original = |z: f32, k: usize| z * c.target_std[k] + c.target_mean[k];
    let truth = |i: usize, s: usize, k: usize| test.targets[(i + l + s) * f + k];
    let date = |row: usize| test.dates.get(row).map(String::as_str).unwrap_or("");
    if let Some(path) = &args.csv {
        // In memory first, then one atomic write: an interrupted run leaves no half file.
        let mut out = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["window".to_string(), "step".into(), "date".into()];
        for name in &c.target_names {
            header.push(format!("{name}_truth"));
            header.push(format!("{name}_forecast"));
        }
        out.write_record(&header)?;
        let mut row = Vec::with_capacity(header.len());
        for i in 0..n {
            for s in 0..h {
                row.clear();
                row.extend([i.to_string(), (s + 1).to_string(), date(i + l + s).to_string()]);
                for k in 0..f {
                    let p = pred[(i * h + s) * f + k];
                    row.push(original(truth(i, s, k), k).to_string());
                    row.push(original(p, k).to_string());
                }
                out.write_record(&row)?;
            }
        }
        let bytes = out.into_inner().map_err(|e| anyhow!("{}", e.error()))?;
        crate::atomic::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {} test windows × {h} steps to {}", n, path.display());
    }
    if let Some(path) = &args.plot {
        let i = args.window.unwrap_or(n.saturating_sub(1));
        if i >= n {
            bail!("--window {i}: the test split has {n} windows (0..={})", n.saturating_sub(1));
        }
        let k = c.target_names.iter().position(|t| *t == cfg.data.target).unwrap_or(0);
        let history: Vec<(f64, f64)> =
            (0..l).map(|r| (r as f64 - l as f64 + 1.0, original(test.targets[(i + r) * f + k], k) as f64)).collect();
        let mut truth_line = vec![*history.last().expect("input_len ≥ 1")];
        truth_line.extend((0..h).map(|s| ((s + 1) as f64, original(truth(i, s, k), k) as f64)));
        let fc: Vec<(f64, f64)> =
            (0..h).map(|s| ((s + 1) as f64, original(pred[(i * h + s) * f + k], k) as f64)).collect();
        let z_mse = (0..h).map(|s| (pred[(i * h + s) * f + k] - truth(i, s, k)).powi(2) as f64).sum::<f64>() / h as f64;
        let name = &c.target_names[k];
        let plot = LinePlot::new(format!(
            "{name}: test window {i}, forecast from {} (horizon {h}, this window's MSE {z_mse:.4} z-scored)",
            date(i + l)
        ))
        .labels("steps from the forecast start", format!("{name} (original scale)"))
        .series(Series::new("input window", history).color("#555555"))
        .series(Series::new("truth", truth_line).color("#0072B2"))
        .series(Series::new("forecast", fc).color("#D55E00").dashed())
        .marker(0.5, "forecast start");
        plot.save(path)?;
        eprintln!("drew test window {i} ({name}) to {}", path.display());
    }
    let m = sums.metrics(&c.target_std, &c.target_names);
    println!(
        "test mse {:.6} mae {:.6} (z-scored); mse {:.6} mae {:.6} (original scale); {} windows",
        m["mse"].as_f64().unwrap_or(f64::NAN),
        m["mae"].as_f64().unwrap_or(f64::NAN),
        m["mse_original"].as_f64().unwrap_or(f64::NAN),
        m["mae_original"].as_f64().unwrap_or(f64::NAN),
        n
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn metrics_average_over_windows_steps_and_features() {
        let mut s = ErrorSums::new(2, 2);
        // Two windows; errors (step, feature): window 0 = [[1, 2], [0, 0]], window 1 = [[1, 0], [0, 4]].
        let p = Tensor::new(&[[[1f32, 2.], [0., 0.]], [[1., 0.], [0., 4.]]], &Device::Cpu).unwrap();
        let t = Tensor::zeros((2, 2, 2), DType::F32, &Device::Cpu).unwrap();
        s.add(&p, &t).unwrap();
        let m = s.metrics(&[2.0, 0.5], &["a".into(), "b".into()]);
        // Squared errors per cell averaged over windows: [[1, 2], [0, 8]] → steps [1.5, 4], mean 2.75.
        assert_eq!(m["mse"], json!(2.75));
        assert_eq!(m["mse_by_step"], json!([1.5, 4.0]));
        assert_eq!(m["mse_by_feature"]["a"], json!(0.5));
        // Original scale: feature a × 4, b × 0.25 → cells [[4, 0.5], [0, 2]] → 1.625.
        assert_eq!(m["mse_original"], json!(1.625));
        // MAE cells [[1, 1], [0, 2]] → 1.0; original [[2, 0.5], [0, 1]] → 0.875.
        assert_eq!(m["mae"], json!(1.0));
        assert_eq!(m["mae_original"], json!(0.875));
        assert_eq!(m["windows"], json!(2));
    }
}
