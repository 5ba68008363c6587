//! What the machine and its users are doing: memory, CPU and loaded models, live throughput,
//! and the usage meter with what the same tokens would have cost at a cloud price.

use crate::auth::Caller;
use crate::error::{Result, WebError};
use crate::Ctx;
use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// How far back the live throughput looks.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// A `/proc/meminfo` field in bytes.
fn meminfo(text: &str, field: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The instruction-set extensions the kernels care about that this CPU has.
fn features() -> Vec<&'static str> {
    let mut found = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! check {
            ($($f:tt),*) => {$(
                if std::arch::is_x86_feature_detected!($f) {
                    found.push($f);
                }
            )*};
        }
        check!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni",
            "avxvnni"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            found.push("neon");
        }
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            found.push("dotprod");
        }
    }
    found
}

/// `GET /app/api/machine`.
pub async fn machine(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>> {
    caller.user()?;
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let loaded: Vec<Value> = ctx
        .server
        .scheduler
        .loaded()
        .into_iter()
        .map(|l| json!({"name": l.name, "bytes": l.bytes, "active": l.active, "context": l.n_ctx}))
        .collect();
    let total = ctx.server.metrics.generated_tokens();
    let rate = ctx.app.throughput(total);
    Ok(Json(json!({
        "memory_total": meminfo(&info, "MemTotal:"),
        "memory_available": meminfo(&info, "MemAvailable:"),
        "cpu": cpu_name(),
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "features": features(),
        "kernels": kernels::cpu_features(),
        "loaded": loaded,
        "throughput": {"tokens_per_second_1m": rate, "generated_tokens_total": total},
    })))
}

impl crate::WebApp {
    /// Tokens per second over the last minute, from the server's running total sampled at each
    /// call.
    fn throughput(&self, total: u64) -> f64 {
        let now = Instant::now();
        let mut samples = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        samples.push_back((now, total));
        while samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            samples.pop_front();
        }
        match samples.front() {
            Some((t, first)) if now.duration_since(*t) > Duration::from_millis(500) => {
                (total - first) as f64 / now.duration_since(*t).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// The cloud price the meter compares with, in US dollars per million tokens.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Prices {
    pub input_per_million: f64,
    pub output_per_million: f64,
}

/// Until an admin sets them: a small hosted model's list price, in the range cloud APIs charge.
const DEFAULT_PRICES: Prices = Prices {
    input_per_million: 0.15,
    output_per_million: 0.60,
};
const PRICES_KEY: &str = "cloud_prices";

fn prices(ctx: &Ctx) -> Result<Prices> {
    Ok(ctx
        .app
        .db
        .setting(PRICES_KEY)?
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(DEFAULT_PRICES))
}

/// `GET /app/api/usage`: admins see everyone's rows, users their own.
pub async fn usage(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>> {
    let user = caller.user()?;
    let rows = ctx.app.db.usage((!caller.is_admin()).then_some(user.id))?;
    Ok(Json(json!({"rows": rows, "prices": prices(&ctx)?})))
}

/// `PUT /app/api/prices` (admin).
pub async fn set_prices(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<Prices>,
) -> Result<Json<Value>> {
    caller.admin()?;
    for (name, v) in [
        ("input_per_million", body.input_per_million),
        ("output_per_million", body.output_per_million),
    ] {
        if !v.is_finite() || !(0.0..=1e6).contains(&v) {
            return Err(WebError::BadRequest(format!(
                "{name} must be a price in dollars between 0 and 1000000, not {v}"
            )));
        }
    }
    let text = serde_json::to_string(&body)
        .map_err(|e| server::ServerError::Internal(format!("cannot store the prices: {e}")))?;
    ctx.app.db.set_setting(PRICES_KEY, &text)?;
    Ok(Json(json!({ "prices": body })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_fields_in_bytes() {
        let text = "MemTotal:       24576000 kB\nMemFree: 1 kB\nMemAvailable:   12288000 kB\n";
        assert_eq!(meminfo(text, "MemTotal:"), Some(24576000 * 1024));
        assert_eq!(meminfo(text, "MemAvailable:"), Some(12288000 * 1024));
        assert_eq!(meminfo(text, "Nope:"), None);
    }
}
