//! `GET /metrics` in Prometheus' text exposition format (version 0.0.4): requests by route and
//! status, a request latency histogram by route, a batch-size histogram and the queue depth
//! by model. A handful of counters behind one mutex: cheap next to a model's forward pass.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Upper bounds of the batch-size buckets, in texts.
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A cumulative histogram.
#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Per bucket (same order as the bounds): observations ≤ the bound, not cumulated yet.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        if let Some(i) = bounds.iter().position(|&b| v <= b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let mut cum = 0u64;
        for (i, b) in bounds.iter().enumerate() {
            cum += self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cum}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    batches: BTreeMap<String, Histogram>,
}

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// One finished request: its route (a known route or `other`), status and latency.
    pub fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        if let Ok(mut m) = self.inner.lock() {
            *m.requests.entry((route.to_string(), status)).or_default() += 1;
            m.latency.entry(route.to_string()).or_default().observe(&LATENCY_BUCKETS, seconds);
        }
    }

    /// One batch run by `model`'s worker, of `size` texts.
    pub fn observe_batch(&self, model: &str, size: usize) {
        if let Ok(mut m) = self.inner.lock() {
            m.batches.entry(model.to_string()).or_default().observe(&BATCH_BUCKETS, size as f64);
        }
    }

    /// The exposition text; `depths` gives each model's current queue depth.
    pub fn render(&self, depths: &[(String, usize)]) -> String {
        let mut out = String::new();
        let Ok(m) = self.inner.lock() else { return out };
        out.push_str("# HELP sluice_requests_total HTTP requests answered, by route and status.\n");
        out.push_str("# TYPE sluice_requests_total counter\n");
        for ((route, status), n) in &m.requests {
            let _ = writeln!(out, "sluice_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP sluice_request_duration_seconds Time from request to response, by route.\n");
        out.push_str("# TYPE sluice_request_duration_seconds histogram\n");
        for (route, h) in &m.latency {
            h.write(&mut out, "sluice_request_duration_seconds", &format!("route=\"{route}\""), &LATENCY_BUCKETS);
        }
        out.push_str("# HELP sluice_batch_size Texts per batch run by a model's worker.\n");
        out.push_str("# TYPE sluice_batch_size histogram\n");
        for (model, h) in &m.batches {
            h.write(&mut out, "sluice_batch_size", &format!("model=\"{}\"", escape(model)), &BATCH_BUCKETS);
        }
        out.push_str("# HELP sluice_queue_depth Requests waiting for a model's worker.\n");
        out.push_str("# TYPE sluice_queue_depth gauge\n");
        for (model, d) in depths {
            let _ = writeln!(out, "sluice_queue_depth{{model=\"{}\"}} {d}", escape(model));
        }
        out
    }
}

/// A label value as the exposition format quotes it.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labelled() {
        let m = Metrics::default();
        m.observe_request("/v1/predict", 200, 0.003);
        m.observe_request("/v1/predict", 200, 0.2);
        m.observe_request("/v1/predict", 422, 0.0001);
        m.observe_batch("r\"1", 3);
        let t = m.render(&[("r\"1".into(), 2)]);
        assert!(t.contains("sluice_requests_total{route=\"/v1/predict\",status=\"200\"} 2\n"), "{t}");
        assert!(t.contains("sluice_requests_total{route=\"/v1/predict\",status=\"422\"} 1\n"));
        assert!(t.contains("sluice_request_duration_seconds_bucket{route=\"/v1/predict\",le=\"0.001\"} 1\n"));
        assert!(t.contains("sluice_request_duration_seconds_bucket{route=\"/v1/predict\",le=\"0.005\"} 2\n"));
        assert!(t.contains("sluice_request_duration_seconds_bucket{route=\"/v1/predict\",le=\"+Inf\"} 3\n"));
        assert!(t.contains("sluice_request_duration_seconds_count{route=\"/v1/predict\"} 3\n"));
        assert!(t.contains("sluice_batch_size_bucket{model=\"r\\\"1\",le=\"2\"} 0\n"));
        assert!(t.contains("sluice_batch_size_bucket{model=\"r\\\"1\",le=\"4\"} 1\n"));
        assert!(t.contains("sluice_queue_depth{model=\"r\\\"1\"} 2\n"));
    }
}
