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
use axum::extract::{Request, State as Extract};
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
const ROUTES: [&str; 7] = ["/", "/healthz", "/metrics", "/v1/models", "/v1/predict", "/v1/inspect", "/v1/translate"];

/// The application: every route, the body limit, and the middleware that counts requests and
/// turns any bare error into JSON.
pub fn router(state: Arc<State>) -> Router {
    let limit = state.limits.max_body_bytes;
    Router::new()
        .route("/", get(super::page::index))
        .route("/assets/{file}", get(super::page::asset))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        .route("/v1/predict", post(predict))
        .route("/v1/inspect", post(inspect_route))
        .route("/v1/translate", post(translate))
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

/// The body as a JSON object, or the error naming what is wrong with it.
fn parse_body(body: Result<Bytes, BytesRejection>) -> Result<Map<String, Value>, ApiError> {
    let body = body.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "body: larger than the server's limit")
        } else {
            ApiError::new(status, format!("body: {}", e.body_text()))
        }
    })?;
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

async fn predict(Extract(state): Extract<Arc<State>>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let body = parse_body(body)?;
    let model = state.model(opt_str(&body, "model")?)?;
    if let Some((f, calendar)) = model.forecaster() {
        return forecast(&state, model, f, calendar, &body).await;
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
        (false, _) => None,
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
            for (k, v) in nums.iter().enumerate() {
                // The corpus z-scores in f64 with its statistics, then rounds to f32.
                x.push(((v - c.input_mean[k] as f64) / c.input_std[k] as f64) as f32);
            }
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
    let body = parse_body(body)?;
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
    let body = parse_body(body)?;
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

async fn models(Extract(state): Extract<Arc<State>>) -> axum::Json<Value> {
    let list: Vec<&ModelInfo> = state.models.iter().map(|m| &m.info).collect();
    axum::Json(json!({"models": list}))
}

async fn metrics(Extract(state): Extract<Arc<State>>) -> Response {
    let depths: Vec<(String, usize)> = state.models.iter().map(|m| (m.info.name.clone(), m.depth())).collect();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render(&depths))
        .into_response()
}
