//! Dynamic batching: one worker thread per model owns it and drains a bounded queue.
//!
//! The worker takes the oldest request, then keeps collecting classification requests until
//! their texts reach `max_batch` or `max_wait` has passed since it took the first, and runs
//! them as one padded batch. The classifier masks by length, so each row's numbers are those
//! of running it alone (checked bit for bit in `tests/serve_api.rs`). Other work (inspect,
//! translate) runs one request at a time on the same thread, so a model is never run by two
//! threads at once and compute threads are not oversubscribed.

use super::metrics::Metrics;
use super::models::{Model, ModelInfo};
use crate::inspect::{Gate, SentenceTrace};
use crate::task::translate::AttentionMatrix;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Batching settings (`--max-batch`, `--max-wait-ms`, `--max-queue`).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Most texts in one batch.
    pub max_batch: usize,
    /// Longest wait for a batch to fill once its first request is taken.
    pub max_wait: Duration,
    /// Most requests waiting per model.
    pub max_queue: usize,
}

/// What a request asks the model to do.
pub enum Work {
    /// Class probabilities of encoded texts (batched with other requests).
    Classify {
        /// One id sequence per text.
        seqs: Vec<Vec<u32>>,
    },
    /// One text's gate trace.
    Inspect {
        /// The text.
        text: String,
        /// Its ids.
        ids: Vec<u32>,
        /// The traced gate.
        gate: Gate,
        /// The traced layer.
        layer: usize,
    },
    /// Forecasts of normalised windows, (windows, input_len, in_features) row-major.
    Forecast {
        /// The inputs.
        x: Vec<f32>,
        /// How many windows.
        windows: usize,
    },
    /// Tags of whitespace-tokenised texts.
    Tag {
        /// The texts.
        texts: Vec<String>,
    },
    /// Transcripts of recordings' log-mel frames, each with the request part naming it.
    Transcribe {
        /// (part name, frames) per recording.
        clips: Vec<(std::path::PathBuf, data::audio::Features)>,
        /// Beam width.
        beam: usize,
    },
    /// Digit probabilities of recordings' features.
    Digits {
        /// One example per recording.
        examples: Vec<data::audio::AudioExample>,
    },
    /// Translations, and the first text's attention matrix on request.
    Translate {
        /// Source texts.
        texts: Vec<String>,
        /// Beam width.
        beam: usize,
        /// Whether to return the first text's attention matrix.
        attention: bool,
    },
}

/// A request's result.
pub enum Output {
    /// Per text, every class's probability.
    Probabilities(Vec<Vec<f32>>),
    /// The trace and every class's probability.
    Trace(Box<SentenceTrace>, Vec<f32>),
    /// Translations, and the attention matrix when asked for.
    Translations(Vec<String>, Option<AttentionMatrix>),
    /// Z-scored forecasts, (windows, horizon, out_features) row-major.
    Forecasts(Vec<f32>),
    /// Per text, its tokens with their tags (and entities).
    Tagged(Vec<crate::task::tag::Tagged>),
    /// Per recording, its transcript.
    Transcripts(Vec<crate::task::transcribe::Transcript>),
    /// Per recording, the digit prediction.
    Digits(Vec<crate::task::audio::Prediction>),
}

/// A queued request.
struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Output, String>>,
}

/// The queue was full: the caller answers 503 with `Retry-After`.
#[derive(Debug, Clone, Copy)]
pub struct QueueFull;

/// A model with its worker.
pub struct Served {
    /// What `/v1/models` says about it.
    pub info: ModelInfo,
    /// The model, shared with its worker (the HTTP side reads its tokenizer and names).
    pub model: Arc<Model>,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    depth: Arc<AtomicUsize>,
    max_queue: usize,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Served {
    /// Starts `model`'s worker thread.
    pub fn start(
        model: Model,
        dir: &std::path::Path,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let info = model.info(dir);
        let model = Arc::new(model);
        let worker_model = model.clone();
        let (tx, rx) = mpsc::channel::<Job>();
        let depth = Arc::new(AtomicUsize::new(0));
        let worker_depth = depth.clone();
        let name = info.name.clone();
        // A test hook: each batch waits this long first, so tests can hold requests in flight.
        let delay = std::env::var("SLUICE_TEST_SERVE_DELAY_MS").ok().and_then(|v| v.parse::<u64>().ok());
        let worker = std::thread::Builder::new().name(format!("serve-{name}")).spawn(move || {
            worker_loop(&worker_model, &rx, &worker_depth, settings, &metrics, delay.map(Duration::from_millis))
        })?;
        Ok(Served {
            info,
            model,
            tx: Mutex::new(Some(tx)),
            depth,
            max_queue: settings.max_queue,
            worker: Mutex::new(Some(worker)),
        })
    }

    /// Queues `work`; the receiver yields its result.
    pub fn submit(&self, work: Work) -> Result<oneshot::Receiver<Result<Output, String>>, QueueFull> {
        // Reserve a place first so concurrent submitters cannot overshoot the bound.
        if self.depth.fetch_add(1, Ordering::SeqCst) >= self.max_queue {
            self.depth.fetch_sub(1, Ordering::SeqCst);
            return Err(QueueFull);
        }
        let (reply, rx) = oneshot::channel();
        let sent = self.tx.lock().map(|tx| tx.as_ref().map(|tx| tx.send(Job { work, reply }).is_ok()));
        if !matches!(sent, Ok(Some(true))) {
            self.depth.fetch_sub(1, Ordering::SeqCst);
            return Err(QueueFull);
        }
        Ok(rx)
    }

    /// The classifier, when the model is one.
    pub fn classifier(&self) -> Option<&super::classify::LoadedClassifier> {
        match &*self.model {
            Model::Classify { model, .. } => Some(model),
            _ => None,
        }
    }

    /// The translation model, when the model is one.
    pub fn translator(&self) -> Option<&crate::task::translate::Loaded> {
        match &*self.model {
            Model::Translate { model, .. } => Some(model),
            _ => None,
        }
    }

    /// The forecasting task and whether its inputs carry calendar features, when the model is one.
    pub fn forecaster(&self) -> Option<(&crate::task::forecast::ForecastTask, bool)> {
        match &*self.model {
            Model::Forecast { model, calendar, .. } => Some((model, *calendar)),
            _ => None,
        }
    }

    /// The tagger, when the model is one.
    pub fn tagger(&self) -> Option<&crate::task::tag::LoadedTagger> {
        match &*self.model {
            Model::Tag { model, .. } => Some(model),
            _ => None,
        }
    }

    /// The transcriber, when the model is one.
    pub fn transcriber(&self) -> Option<&crate::task::transcribe::LoadedTranscriber> {
        match &*self.model {
            Model::Transcribe { model, .. } => Some(model),
            _ => None,
        }
    }

    /// The audio classifier, when the model is one.
    pub fn audio(&self) -> Option<&crate::task::audio::LoadedAudio> {
        match &*self.model {
            Model::Audio { model, .. } => Some(model),
            _ => None,
        }
    }

    /// Requests waiting (not yet taken by the worker).
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::SeqCst)
    }

    /// Closes the queue and waits for the worker to finish what it holds.
    pub fn stop(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(h) = self.worker.lock().ok().and_then(|mut w| w.take()) {
            let _ = h.join();
        }
    }
}

fn rows(work: &Work) -> Option<usize> {
    match work {
        Work::Classify { seqs } => Some(seqs.len()),
        _ => None,
    }
}

fn worker_loop(
    model: &Model,
    rx: &mpsc::Receiver<Job>,
    depth: &AtomicUsize,
    s: Settings,
    metrics: &Metrics,
    delay: Option<Duration>,
) {
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => {
                    depth.fetch_sub(1, Ordering::SeqCst);
                    j
                }
                Err(_) => return,
            },
        };
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        let Some(mut n) = rows(&first.work) else {
            let result = guarded(|| run_one(model, first.work));
            let _ = first.reply.send(result);
            continue;
        };
        let mut batch = vec![first];
        let deadline = Instant::now() + s.max_wait;
        while n < s.max_batch {
            let wait = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(j) => {
                    depth.fetch_sub(1, Ordering::SeqCst);
                    match rows(&j.work) {
                        Some(k) if n + k <= s.max_batch => {
                            n += k;
                            batch.push(j);
                        }
                        _ => {
                            carried = Some(j);
                            break;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        metrics.observe_batch(model.name(), n);
        run_classify_batch(model, batch);
    }
}

/// Runs `f`, turning an error or a panic into a message: one bad batch must not end the worker.
fn guarded<T>(f: impl FnOnce() -> anyhow::Result<T>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err("the model failed on this input (internal error)".into()),
    }
}

fn run_classify_batch(model: &Model, batch: Vec<Job>) {
    let Model::Classify { model: m, .. } = model else {
        for j in batch {
            let _ = j.reply.send(Err("this model does not classify texts".into()));
        }
        return;
    };
    let mut jobs = Vec::with_capacity(batch.len());
    let mut all: Vec<&[u32]> = Vec::new();
    for j in &batch {
        if let Work::Classify { seqs } = &j.work {
            all.extend(seqs.iter().map(Vec::as_slice));
        }
    }
    let result = guarded(|| m.probabilities(&all));
    let mut counts = Vec::with_capacity(batch.len());
    for j in batch {
        counts.push(rows(&j.work).unwrap_or(0));
        jobs.push(j.reply);
    }
    match result {
        Ok(probs) => {
            let mut it = probs.into_iter();
            for (reply, k) in jobs.into_iter().zip(counts) {
                let _ = reply.send(Ok(Output::Probabilities(it.by_ref().take(k).collect())));
            }
        }
        Err(e) => {
            for reply in jobs {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// Runs one request that is not batched with others.
fn run_one(model: &Model, work: Work) -> anyhow::Result<Output> {
    match (model, work) {
        (Model::Classify { model: m, .. }, Work::Classify { seqs }) => {
            let all: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
            Ok(Output::Probabilities(m.probabilities(&all)?))
        }
        (Model::Classify { model: m, .. }, Work::Inspect { text, ids, gate, layer }) => {
            let (trace, probs) = m.trace(&text, ids, gate, layer)?;
            Ok(Output::Trace(Box::new(trace), probs))
        }
        (Model::Translate { model: m, .. }, Work::Translate { texts, beam, attention }) => {
            let outputs = m.translate(&texts, beam)?;
            let attention = match (attention, texts.first()) {
                (true, Some(t)) => Some(m.attention(t, beam)?),
                _ => None,
            };
            Ok(Output::Translations(outputs, attention))
        }
        (Model::Forecast { model: m, .. }, Work::Forecast { x, windows }) => {
            Ok(Output::Forecasts(m.forecast_inputs(&x, windows)?))
        }
        (Model::Tag { model: m, .. }, Work::Tag { texts }) => Ok(Output::Tagged(m.tag(&texts)?)),
        (Model::Transcribe { model: m, .. }, Work::Transcribe { clips, beam }) => Ok(Output::Transcripts(
            clips.into_iter().map(|(name, f)| m.transcribe_features(f, &name, beam)).collect::<anyhow::Result<_>>()?,
        )),
        (Model::Audio { model: m, .. }, Work::Digits { examples }) => {
            Ok(Output::Digits(m.predict_examples(&examples)?))
        }
        _ => anyhow::bail!("this model does not answer that route"),
    }
}
