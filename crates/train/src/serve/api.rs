//! The HTTP side: routes, request validation, JSON shapes and errors.
//!
//! Every error is `{"error": "..."}` naming the field at fault: 400 malformed JSON, 404 an
//! unknown model or route, 405 a wrong method, 413 a body over the limit, 422 a well-formed
//! request the model cannot answer (wrong type, empty text, too many texts or tokens), 503
//! with `Retry-After` when a model's queue is full, 504 when a result outlives the timeout.

use super::limits::Limits;
use super::metrics::Metrics;
use super::models::ModelInfo;
use super::queue::{Output, Served, Work};
use crate::inspect::{self, Gate};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request, State as Extract};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Instant;

/// Everything the handlers share.
pub struct State {
    /// The served models, in `--run` order (the first is the default).
    pub models: Vec<Served>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Request limits.
    pub limits: Limits,
}

impl State {
    /// Stops every worker after it has finished its queue.
    pub fn stop(&self) {
        for m in &self.models {
            m.stop();
        }
    }

    fn model(&self, name: Option<&str>) -> Result<&Served, ApiError> {
        match name {
            None => self.models.first().ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "model: none is served")),
            Some(n) => self.models.iter().find(|m| m.info.name == n).ok_or_else(|| {
                let names: Vec<&str> = self.models.iter().map(|m| m.info.name.as_str()).collect();
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("model: no model named {n:?} (served: {})", names.join(", ")),
                )
            }),
        }
    }
}

/// The routes served, for metrics labels (anything else counts as `other`).
const ROUTES: [&str; 9] = [
    "/",
    "/healthz",
    "/metrics",
    "/v1/models",
    "/v1/predict",
    "/v1/inspect",
    "/v1/translate",
    "/v1/tag",
    "/v1/transcribe",
];

/// The application: every route, the body limit, and the middleware that counts requests and
/// turns any bare error into JSON.
pub fn router(state: Arc<State>) -> Router {
    // Audio bodies may be larger than JSON ones; JSON bodies are held to their own limit in
    // `parse_body`.
    let limit = state.limits.max_body_bytes.max(state.limits.max_audio_bytes);
    Router::new()
        .route("/", get(super::page::index))
        .route("/assets/{file}", get(super::page::asset))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        .route("/v1/predict", post(predict))
        .route("/v1/inspect", post(inspect_route))
        .route("/v1/translate", post(translate))
        .route("/v1/tag", post(tag_route))
        .route("/v1/transcribe", post(transcribe_route))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "route: no such route (see GET /v1/models)") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method: this route does not take that method")
        })
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Counts and times every request, and gives a JSON body to an error response that has none.
async fn observe(Extract(state): Extract<Arc<State>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let path = req.uri().path().to_string();
    let route = ROUTES.iter().find(|r| **r == path).copied().unwrap_or("other");
    let mut resp = next.run(req).await;
    let status = resp.status();
    if status.is_client_error() || status.is_server_error() {
        let json =
            resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if !json {
            let headers = resp.headers().clone();
            let mut fixed = ApiError::new(status, format!("request: {}", status.canonical_reason().unwrap_or("error")))
                .into_response();
            if let Some(v) = headers.get(header::RETRY_AFTER) {
                fixed.headers_mut().insert(header::RETRY_AFTER, v.clone());
            }
            resp = fixed;
        }
    }
    state.metrics.observe_request(route, status.as_u16(), start.elapsed().as_secs_f64());
    resp
}

/// An error response: a status and `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), retry_after: None }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(json!({"error": self.message}))).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

type ApiResult = Result<Response, ApiError>;

fn body_error(e: BytesRejection) -> ApiError {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, "body: larger than the server's limit")
    } else {
        ApiError::new(status, format!("body: {}", e.body_text()))
    }
}

/// The body as a JSON object, or the error naming what is wrong with it.
fn parse_body(body: Result<Bytes, BytesRejection>, limits: &Limits) -> Result<Map<String, Value>, ApiError> {
    let body = body.map_err(body_error)?;
    if body.len() > limits.max_body_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body: {} bytes, larger than the server's limit of {} for JSON", body.len(), limits.max_body_bytes),
        ));
    }
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("body: malformed JSON: {e}")))?;
    match v {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::invalid(format!("body: expected a JSON object, got {}", kind(&other)))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Refuses fields the route does not know (a typo would otherwise be silently ignored).
fn known_fields(body: &Map<String, Value>, known: &[&str]) -> Result<(), ApiError> {
    for k in body.keys() {
        if !known.contains(&k.as_str()) {
            return Err(ApiError::invalid(format!("{k}: unknown field (expected one of: {})", known.join(", "))));
        }
    }
    Ok(())
}

fn opt_str<'a>(body: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(ApiError::invalid(format!("{key}: expected a string, got {}", kind(v)))),
    }
}

fn opt_usize(body: &Map<String, Value>, key: &str) -> Result<Option<usize>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) => Ok(Some(v as usize)),
            None => Err(ApiError::invalid(format!("{key}: expected a non-negative integer, got {n}"))),
        },
        Some(v) => Err(ApiError::invalid(format!("{key}: expected a non-negative integer, got {}", kind(v)))),
    }
}

/// One text: a non-empty string within the character limit.
fn check_text<'a>(v: &'a Value, field: &str, limits: &Limits) -> Result<&'a str, ApiError> {
    let Value::String(s) = v else {
        return Err(ApiError::invalid(format!("{field}: expected a string, got {}", kind(v))));
    };
    if s.trim().is_empty() {
        return Err(ApiError::invalid(format!("{field}: empty text")));
    }
    let chars = s.chars().count();
    if chars > limits.max_chars {
        return Err(ApiError::invalid(format!(
            "{field}: {chars} characters, more than the limit of {}",
            limits.max_chars
        )));
    }
    Ok(s)
}

/// `texts`: a non-empty array of texts, at most `max_texts`.
fn texts<'a>(body: &'a Map<String, Value>, limits: &Limits) -> Result<Vec<&'a str>, ApiError> {
    let arr = match body.get("texts") {
        None => return Err(ApiError::invalid("texts: missing (expected an array of strings)")),
        Some(Value::Array(a)) => a,
        Some(v) => return Err(ApiError::invalid(format!("texts: expected an array of strings, got {}", kind(v)))),
    };
    if arr.is_empty() {
        return Err(ApiError::invalid("texts: empty array (give at least one text)"));
    }
    if arr.len() > limits.max_texts {
        return Err(ApiError::invalid(format!(
            "texts: {} texts, more than the limit of {}",
            arr.len(),
            limits.max_texts
        )));
    }
    arr.iter().enumerate().map(|(i, v)| check_text(v, &format!("texts[{i}]"), limits)).collect()
}

/// Sends `work` to `model` and waits for the result within the timeout.
async fn run(state: &State, model: &Served, work: Work) -> Result<Output, ApiError> {
    let rx = model.submit(work).map_err(|_| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: format!("model: {:?} has {} requests waiting; retry later", model.info.name, model.depth()),
        retry_after: Some(1),
    })?;
    match tokio::time::timeout(state.limits.timeout, rx).await {
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("request: no result within {} s", state.limits.timeout.as_secs()),
        )),
        Ok(Err(_)) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "model: the server is shutting down")),
        Ok(Ok(Err(e))) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("model: {e}"))),
        Ok(Ok(Ok(out))) => Ok(out),
    }
}

fn classifier<'a>(
    state: &'a State,
    model: &'a Served,
    route: &str,
) -> Result<&'a super::classify::LoadedClassifier, ApiError> {
    let _ = state;
    model.classifier().ok_or_else(|| {
        ApiError::invalid(format!(
            "model: {:?} is a {} run; {route} answers classification runs (its routes: {})",
            model.info.name,
            model.info.task,
            model.info.routes.join(", ")
        ))
    })
}

/// Encodes a text for a classifier, refusing it beyond the token limit (runs with
/// `data.max_len` truncate instead, as `train predict` does).
fn encode(
    m: &super::classify::LoadedClassifier,
    text: &str,
    field: &str,
    limits: &Limits,
) -> Result<Vec<u32>, ApiError> {
    if m.cfg.data.max_len.is_none() {
        let n = m.tokenizer.encode(text).map_err(|e| ApiError::invalid(format!("{field}: {e}")))?.len();
        if n > limits.max_tokens {
            return Err(ApiError::invalid(format!(
                "{field}: {n} tokens, more than the limit of {} (the run sets no data.max_len to truncate to)",
                limits.max_tokens
            )));
        }
    }
    m.encode(text).map_err(|e| ApiError::invalid(format!("{field}: {e:#}")))
}

/// Class name → probability, in label order; f32 as f32 (shortest form that reads back to the
/// same bits, as `train inspect --json` writes them).
fn probabilities_map(names: &[String], probs: &[f32]) -> IndexedProbs {
    IndexedProbs(
        probs.iter().enumerate().map(|(i, &p)| (names.get(i).cloned().unwrap_or_else(|| i.to_string()), p)).collect(),
    )
}

/// A JSON object whose keys keep the label order.
#[derive(Debug)]
struct IndexedProbs(Vec<(String, f32)>);

impl Serialize for IndexedProbs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct Prediction {
    label: String,
    probabilities: IndexedProbs,
}

#[derive(Serialize)]
struct PredictResponse<'a> {
    model: &'a str,
    predictions: Vec<Prediction>,
}

/// `/v1/inspect`'s answer: the contract's fields (`tokens`, `units`, `values`, `mean`, `label`)
/// and the rest of what `train inspect --json` reports for the sentence.
#[derive(Serialize)]
struct InspectResponse<'a> {
    model: &'a str,
    gate: Gate,
    layer: usize,
    layers: usize,
    directions: usize,
    hidden: usize,
    tokens: &'a [String],
    /// Columns of `values`: directions × hidden.
    units: usize,
    unit_names: Vec<String>,
    values: &'a [Vec<f32>],
    mean: &'a [f64],
    selectivity: Vec<f64>,
    unit_mean: Vec<f64>,
    order: Vec<usize>,
    label: &'a str,
    probability: f32,
    probabilities: IndexedProbs,
}

/// The most probable class (the first on a tie, like argmax).
fn best(probs: &[f32]) -> usize {
    probs.iter().enumerate().fold((0, f32::MIN), |acc, (i, &p)| if p > acc.1 { (i, p) } else { acc }).0
}

async fn predict(Extract(state): Extract<Arc<State>>, req: Request) -> ApiResult {
    if is_audio(&req) {
        return predict_audio(state, req).await;
    }
    let body = parse_body(Bytes::from_request(req, &state).await, &state.limits)?;
    let model = state.model(opt_str(&body, "model")?)?;
    if let Some((f, calendar)) = model.forecaster() {
        return forecast(&state, model, f, calendar, &body).await;
    }
    if model.audio().is_some() {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "body: {:?} is an audio run; send a WAV file (Content-Type: audio/wav) or several as \
                 multipart/form-data, the model named by ?model=NAME",
                model.info.name
            ),
        ));
    }
    known_fields(&body, &["texts", "model"])?;
    let m = classifier(&state, model, "/v1/predict")?;
    let texts = texts(&body, &state.limits)?;
    let seqs = texts
        .iter()
        .enumerate()
        .map(|(i, t)| encode(m, t, &format!("texts[{i}]"), &state.limits))
        .collect::<Result<Vec<_>, _>>()?;
    let Output::Probabilities(probs) = run(&state, model, Work::Classify { seqs }).await? else {
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "model: unexpected result"));
    };
    let predictions = probs
        .iter()
        .map(|p| {
            let b = best(p);
            Prediction {
                label: m.class_names.get(b).cloned().unwrap_or_else(|| b.to_string()),
                probabilities: probabilities_map(&m.class_names, p),
            }
        })
        .collect();
    Ok(axum::Json(PredictResponse { model: &model.info.name, predictions }).into_response())
}

/// `/v1/predict` on a forecasting run: `{"series": [[row, ...] per series], "dates": [[...]]?}`
/// → `{"forecasts": [[step, ...] per series]}`, on the original scale. A row is a number when
/// the run has one value column, else an array of them; each step likewise per target column.
async fn forecast(
    state: &State,
    model: &Served,
    f: &crate::task::forecast::ForecastTask,
    calendar: bool,
    body: &Map<String, Value>,
) -> ApiResult {
    known_fields(body, &["series", "dates", "model"])?;
    let c = f.corpus();
    let (len, horizon) = (c.train.input_len, c.train.horizon);
    let values = c.input_mean.len();
    let in_features = f.forecaster_config().lstm.input_size;
    let series = match body.get("series") {
        None => return Err(ApiError::invalid("series: missing (expected an array of series)")),
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => return Err(ApiError::invalid("series: empty array (give at least one series)")),
        Some(v) => return Err(ApiError::invalid(format!("series: expected an array of series, got {}", kind(v)))),
    };
    if series.len() > state.limits.max_texts {
        return Err(ApiError::invalid(format!(
            "series: {} series, more than the limit of {}",
            series.len(),
            state.limits.max_texts
        )));
    }
    let dates = match (calendar, body.get("dates")) {
        (true, Some(Value::Array(d))) if d.len() == series.len() => Some(d),
        (true, Some(Value::Array(d))) => {
            return Err(ApiError::invalid(format!("dates: {} lists for {} series", d.len(), series.len())))
        }
        (true, _) => {
            return Err(ApiError::invalid(format!(
                "dates: missing; the run uses calendar features, so give each series' {len} row dates (\"YYYY-MM-DD HH:MM\")"
            )))
        }
        (false, None | Some(Value::Null)) => None,
        (false, Some(_)) => {
            return Err(ApiError::invalid("dates: the run uses no calendar features; leave dates out"));
        }
    };
    let freq = c.freq;
    let mut x = Vec::with_capacity(series.len() * len * in_features);
    for (i, s) in series.iter().enumerate() {
        let rows = match s {
            Value::Array(r) if r.len() == len => r,
            Value::Array(r) => {
                return Err(ApiError::invalid(format!("series[{i}]: {} rows, the run reads {len}", r.len())))
            }
            v => {
                return Err(ApiError::invalid(format!("series[{i}]: expected an array of {len} rows, got {}", kind(v))))
            }
        };
        for (t, row) in rows.iter().enumerate() {
            let field = format!("series[{i}][{t}]");
            let nums: Vec<f64> = match row {
                Value::Number(n) if values == 1 => vec![n.as_f64().unwrap_or(f64::NAN)],
                Value::Array(a) if a.len() == values => a.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect(),
                other => {
                    return Err(ApiError::invalid(format!(
                        "{field}: expected {} ({}), got {}",
                        if values == 1 { "a number".to_string() } else { format!("an array of {values} numbers") },
                        c.input_names[..values].join(", "),
                        kind(other)
                    )))
                }
            };
            if nums.iter().any(|v| !v.is_finite()) {
                return Err(ApiError::invalid(format!("{field}: expected finite numbers")));
            }
            // The corpus's own z-score (f64 statistics, then f32), so a window the run saw gives
            // the very inputs its evaluation ran on.
            x.extend(nums.iter().enumerate().map(|(k, &v)| c.normalize_input(k, v)));
            if let Some(d) = dates {
                let field = format!("dates[{i}][{t}]");
                let stamp = d[i].as_array().and_then(|r| r.get(t)).and_then(Value::as_str).ok_or_else(|| {
                    ApiError::invalid(format!("{field}: expected a date string for each of the {len} rows"))
                })?;
                let feats = data::ett::calendar_features(stamp, freq).ok_or_else(|| {
                    ApiError::invalid(format!("{field}: {stamp:?} is not a date (expected YYYY-MM-DD HH:MM)"))
                })?;
                x.extend(feats);
            }
        }
    }
    if x.len() != series.len() * len * in_features {
        return Err(ApiError::invalid(format!(
            "series: rows make {} features each, the model reads {in_features}",
            x.len() / (series.len() * len)
        )));
    }
    let Output::Forecasts(z) = run(state, model, Work::Forecast { x, windows: series.len() }).await? else {
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "model: unexpected result"));
    };
    let out = c.target_names.len();
    let forecasts: Vec<Value> = z
        .chunks(horizon * out)
        .map(|w| {
            let steps: Vec<Value> = w
                .chunks(out)
                .map(|step| {
                    let orig: Vec<f32> =
                        step.iter().enumerate().map(|(k, &v)| v * c.target_std[k] + c.target_mean[k]).collect();
                    if out == 1 {
                        json!(orig[0])
                    } else {
                        json!(orig)
                    }
                })
                .collect();
            Value::Array(steps)
        })
        .collect();
    Ok(axum::Json(json!({"model": model.info.name, "forecasts": forecasts})).into_response())
}

async fn inspect_route(Extract(state): Extract<Arc<State>>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let body = parse_body(body, &state.limits)?;
    let model = state.model(opt_str(&body, "model")?)?;
    known_fields(&body, &["text", "gate", "layer", "model"])?;
    let m = classifier(&state, model, "/v1/inspect")?;
    let text = match body.get("text") {
        None => return Err(ApiError::invalid("text: missing (expected a string)")),
        Some(v) => check_text(v, "text", &state.limits)?,
    };
    let gate = match opt_str(&body, "gate")? {
        None => Gate::O,
        Some(g) => Gate::parse(g).map_err(|_| ApiError::invalid(format!("gate: {g:?}; expected o, i, f, c or h")))?,
    };
    if !model.info.gates.iter().any(|g| Some(g.as_str()) == gate_letter(gate)) {
        return Err(ApiError::invalid(format!("gate: the run's cell traces only {}", model.info.gates.join(", "))));
    }
    let layers = m.layers();
    let layer = opt_usize(&body, "layer")?.unwrap_or(layers - 1);
    if layer >= layers {
        return Err(ApiError::invalid(format!("layer: {layer}; the model has {layers} layer(s) (0..{})", layers - 1)));
    }
    let ids = encode(m, text, "text", &state.limits)?;
    let Output::Trace(trace, probs) =
        run(&state, model, Work::Inspect { text: text.to_string(), ids, gate, layer }).await?
    else {
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "model: unexpected result"));
    };
    let units = m.directions() * m.hidden();
    let (unit_mean, selectivity) = inspect::unit_stats(std::slice::from_ref(&*trace), units);
    let order = inspect::selectivity_order(&selectivity);
    Ok(axum::Json(InspectResponse {
        model: &model.info.name,
        gate,
        layer,
        layers,
        directions: m.directions(),
        hidden: m.hidden(),
        tokens: &trace.tokens,
        units,
        unit_names: inspect::unit_names(m.directions(), m.hidden()),
        values: &trace.values,
        mean: &trace.token_mean,
        selectivity,
        unit_mean,
        order,
        label: &trace.label,
        probability: trace.probability,
        probabilities: probabilities_map(&m.class_names, &probs),
    })
    .into_response())
}

fn gate_letter(g: Gate) -> Option<&'static str> {
    Some(match g {
        Gate::O => "o",
        Gate::I => "i",
        Gate::F => "f",
        Gate::C => "c",
        Gate::H => "h",
    })
}

async fn translate(Extract(state): Extract<Arc<State>>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let body = parse_body(body, &state.limits)?;
    let model = state.model(opt_str(&body, "model")?)?;
    known_fields(&body, &["texts", "beam", "model", "attention"])?;
    let Some(t) = model.translator() else {
        return Err(ApiError::invalid(format!(
            "model: {:?} is a {} run; /v1/translate answers translation runs (its routes: {})",
            model.info.name,
            model.info.task,
            model.info.routes.join(", ")
        )));
    };
    let texts: Vec<String> = texts(&body, &state.limits)?.into_iter().map(str::to_string).collect();
    // Absent: the run's `translate.beam`, as `train translate` does.
    let beam = opt_usize(&body, "beam")?.unwrap_or(t.cfg.translate.beam);
    if beam == 0 || beam > state.limits.max_beam {
        return Err(ApiError::invalid(format!("beam: {beam}; expected 1 to {}", state.limits.max_beam)));
    }
    let attention = match body.get("attention") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(ApiError::invalid(format!("attention: expected a boolean, got {}", kind(v)))),
    };
    let Output::Translations(outputs, att) = run(&state, model, Work::Translate { texts, beam, attention }).await?
    else {
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "model: unexpected result"));
    };
    let mut resp = json!({"model": model.info.name, "outputs": outputs});
    if let Some((rows, cols, weights)) = att {
        resp["attention"] = json!({"target": rows, "source": cols, "weights": weights});
    }
    Ok(axum::Json(resp).into_response())
}

/// Whether the request carries audio (a WAV body or multipart parts) rather than JSON.
fn is_audio(req: &Request) -> bool {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ct = ct.trim().to_ascii_lowercase();
    ct.starts_with("audio/") || ct.starts_with("multipart/form-data")
}

/// The query parameters of an audio request (`model`, and `beam` where the route takes it).
fn audio_query(req: &Request, known: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let q: axum::extract::Query<Vec<(String, String)>> = axum::extract::Query::try_from_uri(req.uri())
        .map_err(|e| ApiError::invalid(format!("query: {}", e.body_text())))?;
    let mut m = Map::new();
    for (k, v) in q.0 {
        if !known.contains(&k.as_str()) {
            return Err(ApiError::invalid(format!(
                "{k}: unknown query parameter (expected one of: {})",
                known.join(", ")
            )));
        }
        let v = match v.parse::<u64>() {
            Ok(n) if k != "model" => Value::from(n),
            _ => Value::String(v),
        };
        m.insert(k, v);
    }
    Ok(m)
}

/// The WAV files of an audio request, each with the name errors give it: the body itself
/// (`audio/wav`), or each part of a `multipart/form-data` body (`part N ("file name")`).
async fn audio_parts(req: Request, state: &Arc<State>) -> Result<Vec<(std::path::PathBuf, Bytes)>, ApiError> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("multipart/form-data"));
    let limits = state.limits;
    let mut parts = Vec::new();
    if multipart {
        let bad = |e: axum::extract::multipart::MultipartError| {
            ApiError::new(e.status(), format!("body: malformed multipart/form-data: {}", e.body_text()))
        };
        let mut mp = axum::extract::Multipart::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), format!("body: {}", e.body_text())))?;
        while let Some(field) = mp.next_field().await.map_err(bad)? {
            let i = parts.len();
            let label = match field.file_name().or(field.name()) {
                Some(n) => format!("part {i} ({n:?})"),
                None => format!("part {i}"),
            };
            let bytes = field.bytes().await.map_err(bad)?;
            if parts.len() == limits.max_texts {
                return Err(ApiError::invalid(format!(
                    "body: more than {} recordings in one request (the limit)",
                    limits.max_texts
                )));
            }
            parts.push((std::path::PathBuf::from(label), bytes));
        }
        if parts.is_empty() {
            return Err(ApiError::invalid("body: a multipart/form-data body with no parts (one WAV file per part)"));
        }
    } else {
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        parts.push((std::path::PathBuf::from("body"), bytes));
    }
    for (name, bytes) in &parts {
        if bytes.is_empty() {
            return Err(ApiError::invalid(format!("{}: empty (expected a WAV file)", name.display())));
        }
    }
    Ok(parts)
}

fn wrong_model(model: &Served, route: &str, answers: &str) -> ApiError {
    ApiError::invalid(format!(
        "model: {:?} is a {} run; {route} answers {answers} runs (its routes: {})",
        model.info.name,
        model.info.task,
        model.info.routes.join(", ")
    ))
}

/// `/v1/predict` with a WAV body or multipart WAV parts: each recording's digit, with the
/// shape of text predictions (`label`, `probabilities` by class name).
async fn predict_audio(state: Arc<State>, req: Request) -> ApiResult {
    let query = audio_query(&req, &["model"]);
    // The body is read before any answer, so a refused request is answered, not reset.
    let parts = audio_parts(req, &state).await;
    let query = query?;
    let model = state.model(opt_str(&query, "model")?)?;
    let Some(a) = model.audio() else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "body: an audio body, but {:?} is a {} run; send it JSON (its routes: {})",
                model.info.name,
                model.info.task,
                model.info.routes.join(", ")
            ),
        ));
    };
    let parts = parts?;
    let mut examples = Vec::with_capacity(parts.len());
    for (name, bytes) in &parts {
        examples.push(a.bytes_example(bytes, name).map_err(|e| ApiError::invalid(format!("{e:#}")))?);
    }
    let Output::Digits(preds) = run(&state, model, Work::Digits { examples }).await? else {
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "model: unexpected result"));
    };
    let names = a.class_names();
    let predictions = preds
        .iter()
        .map(|p| Prediction { label: p.label.clone(), probabilities: probabilities_map(&names, &p.probabilities) })
        .collect();
    Ok(axum::Json(PredictResponse { model: &model.info.name, predictions }).into_response())
}

/// `/v1/tag`: `{"texts": [...]}` → `{"outputs": [{"text", "tokens", "tags", "entities"}]}`, each
/// output what `train tag --json` prints for the text.
async fn tag_route(Extract(state): Extract<Arc<State>>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let body = parse_body(body, &state.limits)?;
    let model = state.model(opt_str(&body, "model")?)?;
    known_fields(&body, &["texts", "model"])?;
    if model.tagger().is_none() {
        return Err(wrong_model(model, "/v1/tag", "tagging"));
    }
    let texts: Vec<String> = texts(&body, &state.limits)?.into_iter().map(str::to_string).collect();
    for (i, t) in texts.iter().enumerate() {
        let n = t.split_whitespace().count();
        if n > state.limits.max_tokens {
            return Err(ApiError::invalid(format!(
                "texts[{i}]: {n} tokens, more than the limit of {}",
                state.limits.max_tokens
            )));
        }
    }
    let Output::Tagged(tagged) = run(&state, model, Work::Tag { texts: texts.clone() }).await? else {
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "model: unexpected result"));
    };
    let outputs: Vec<Value> = texts
        .iter()
        .zip(tagged)
        .map(|(text, t)| json!({"text": text, "tokens": t.tokens, "tags": t.tags, "entities": t.entities}))
        .collect();
    Ok(axum::Json(json!({"model": model.info.name, "outputs": outputs})).into_response())
}

/// `/v1/transcribe`: a WAV body (`audio/wav`) or several as `multipart/form-data` →
/// `{"outputs": ["TEXT", ...]}`, `train transcribe --json`'s texts; `?beam=N&model=NAME`.
async fn transcribe_route(Extract(state): Extract<Arc<State>>, req: Request) -> ApiResult {
    if !is_audio(&req) {
        // Read the body first: a client still sending it would see a reset, not the error.
        let _ = Bytes::from_request(req, &state).await;
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "body: expected a WAV file (Content-Type: audio/wav) or several as multipart/form-data",
        ));
    }
    let query = audio_query(&req, &["model", "beam"]);
    // The body is read before any answer, so a refused request is answered, not reset.
    let parts = audio_parts(req, &state).await;
    let query = query?;
    let model = state.model(opt_str(&query, "model")?)?;
    let Some(t) = model.transcriber() else {
        return Err(wrong_model(model, "/v1/transcribe", "transcription"));
    };
    let beam = opt_usize(&query, "beam")?.unwrap_or(t.t.beam);
    if beam == 0 || beam > state.limits.max_beam {
        return Err(ApiError::invalid(format!("beam: {beam}; expected 1 to {}", state.limits.max_beam)));
    }
    let parts = parts?;
    let mut clips = Vec::with_capacity(parts.len());
    for (name, bytes) in parts {
        let samples = data::audio::an4::decode_audio(&bytes, &name, t.t.sample_rate, t.t.stereo)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let f = t.features(samples, &name).map_err(|e| ApiError::invalid(format!("{e:#}")))?;
        clips.push((name, f));
    }
    let Output::Transcripts(ts) = run(&state, model, Work::Transcribe { clips, beam }).await? else {
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "model: unexpected result"));
    };
    let outputs: Vec<&str> = ts.iter().map(|t| t.text.as_str()).collect();
    Ok(axum::Json(json!({"model": model.info.name, "outputs": outputs})).into_response())
}

async fn models(Extract(state): Extract<Arc<State>>) -> axum::Json<Value> {
    let list: Vec<&ModelInfo> = state.models.iter().map(|m| &m.info).collect();
    axum::Json(json!({"models": list}))
}

async fn metrics(Extract(state): Extract<Arc<State>>) -> Response {
    let depths: Vec<(String, usize)> = state.models.iter().map(|m| (m.info.name.clone(), m.depth())).collect();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render(&depths))
        .into_response()
}
