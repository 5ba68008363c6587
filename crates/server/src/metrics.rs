//! [`Metrics`]: counters kept while serving, written in Prometheus' text format by `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Upper bounds (seconds) of the time-to-first-token histogram's buckets.
const TTFT_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Requests by (route, status).
    requests: BTreeMap<(String, u16), u64>,
    prompt_tokens: u64,
    generated_tokens: u64,
    generation_seconds: f64,
    last_tokens_per_second: f64,
    /// Counts per bucket of [`TTFT_BUCKETS`], then the overflow.
    ttft_buckets: [u64; TTFT_BUCKETS.len() + 1],
    ttft_sum: f64,
    ttft_count: u64,
}

/// A loaded model as the metrics show it.
pub struct LoadedModel {
    pub name: String,
    pub bytes: u64,
    pub active: usize,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One answered request; `route` is the route's pattern (bounded cardinality).
    pub fn request(&self, route: &str, status: u16) {
        *self
            .lock()
            .requests
            .entry((route.to_string(), status))
            .or_default() += 1;
    }

    /// One finished generation.
    pub fn generation(
        &self,
        prompt_tokens: usize,
        generated: usize,
        ttft: Option<Duration>,
        gen_time: Duration,
    ) {
        let mut m = self.lock();
        m.prompt_tokens += prompt_tokens as u64;
        m.generated_tokens += generated as u64;
        let secs = gen_time.as_secs_f64();
        m.generation_seconds += secs;
        if secs > 0.0 && generated > 0 {
            m.last_tokens_per_second = generated as f64 / secs;
        }
        if let Some(t) = ttft {
            let t = t.as_secs_f64();
            let bucket = TTFT_BUCKETS
                .iter()
                .position(|&b| t <= b)
                .unwrap_or(TTFT_BUCKETS.len());
            m.ttft_buckets[bucket] += 1;
            m.ttft_sum += t;
            m.ttft_count += 1;
        }
    }

    /// Tokens generated since the server started (finished generations).
    pub fn generated_tokens(&self) -> u64 {
        self.lock().generated_tokens
    }

    /// The exposition text.
    pub fn render(&self, queue_len: usize, loaded: &[LoadedModel]) -> String {
        let m = self.lock();
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(
            w,
            "# HELP hearth_requests_total HTTP requests by route and status.\n# TYPE hearth_requests_total counter"
        );
        for ((route, status), n) in &m.requests {
            let _ = writeln!(
                w,
                "hearth_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        for (name, help, value) in [
            (
                "hearth_prompt_tokens_total",
                "Prompt tokens of finished generations.",
                m.prompt_tokens as f64,
            ),
            (
                "hearth_generated_tokens_total",
                "Tokens generated.",
                m.generated_tokens as f64,
            ),
            (
                "hearth_generation_seconds_total",
                "Time spent generating tokens (prompt processing excluded).",
                m.generation_seconds,
            ),
        ] {
            let _ = writeln!(
                w,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let _ = writeln!(
            w,
            "# HELP hearth_last_tokens_per_second Generation speed of the last finished request.\n# TYPE hearth_last_tokens_per_second gauge\nhearth_last_tokens_per_second {}",
            m.last_tokens_per_second
        );
        let _ = writeln!(
            w,
            "# HELP hearth_time_to_first_token_seconds From the request's arrival to its first generated text.\n# TYPE hearth_time_to_first_token_seconds histogram"
        );
        let mut cumulative = 0;
        for (i, n) in m.ttft_buckets.iter().enumerate() {
            cumulative += n;
            let le = TTFT_BUCKETS
                .get(i)
                .map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(
                w,
                "hearth_time_to_first_token_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            w,
            "hearth_time_to_first_token_seconds_sum {}\nhearth_time_to_first_token_seconds_count {}",
            m.ttft_sum, m.ttft_count
        );
        let _ = writeln!(
            w,
            "# HELP hearth_queue_length Requests waiting for a slot or for memory.\n# TYPE hearth_queue_length gauge\nhearth_queue_length {queue_len}"
        );
        let _ = writeln!(
            w,
            "# HELP hearth_loaded_models Models loaded.\n# TYPE hearth_loaded_models gauge\nhearth_loaded_models {}",
            loaded.len()
        );
        let _ = writeln!(
            w,
            "# HELP hearth_model_memory_bytes Estimated memory of a loaded model (weights and KV caches).\n# TYPE hearth_model_memory_bytes gauge"
        );
        for l in loaded {
            let _ = writeln!(
                w,
                "hearth_model_memory_bytes{{model=\"{}\"}} {}",
                escape(&l.name),
                l.bytes
            );
        }
        let _ = writeln!(
            w,
            "# HELP hearth_model_active_requests Requests running on a loaded model.\n# TYPE hearth_model_active_requests gauge"
        );
        for l in loaded {
            let _ = writeln!(
                w,
                "hearth_model_active_requests{{model=\"{}\"}} {}",
                escape(&l.name),
                l.active
            );
        }
        out
    }
}

/// A label value with Prometheus' escapes.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_counters_histogram_and_models() {
        let m = Metrics::default();
        m.request("/api/chat", 200);
        m.request("/api/chat", 200);
        m.request("/api/chat", 404);
        m.generation(
            10,
            20,
            Some(Duration::from_millis(300)),
            Duration::from_secs(2),
        );
        let text = m.render(
            3,
            &[LoadedModel {
                name: "a:latest".into(),
                bytes: 1234,
                active: 1,
            }],
        );
        assert!(text.contains("hearth_requests_total{route=\"/api/chat\",status=\"200\"} 2"));
        assert!(text.contains("hearth_requests_total{route=\"/api/chat\",status=\"404\"} 1"));
        assert!(text.contains("hearth_generated_tokens_total 20"));
        assert!(text.contains("hearth_last_tokens_per_second 10"));
        assert!(text.contains("hearth_time_to_first_token_seconds_bucket{le=\"0.25\"} 0"));
        assert!(text.contains("hearth_time_to_first_token_seconds_bucket{le=\"0.5\"} 1"));
        assert!(text.contains("hearth_time_to_first_token_seconds_bucket{le=\"+Inf\"} 1"));
        assert!(text.contains("hearth_queue_length 3"));
        assert!(text.contains("hearth_model_memory_bytes{model=\"a:latest\"} 1234"));
    }
}
