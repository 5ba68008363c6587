//! Request options: Ollama's `options` object (over the model's `PARAMETER`s) mapped onto the
//! engine's [`SamplerConfig`] and [`GenerateOptions`], and `keep_alive` durations.

use crate::error::{Result, ServerError};
use engine::{GenerateOptions, SamplerConfig};
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What one generation uses: the engine's defaults, overridden by the model's parameters,
/// overridden by the request's options.
#[derive(Clone, Debug)]
pub struct Settings {
    pub sampler: SamplerConfig,
    pub generate: GenerateOptions,
    /// The context size asked for (`num_ctx`), if any.
    pub n_ctx: Option<usize>,
    /// Drop the start of a prompt that does not fit instead of answering 400 (`truncate: true`).
    pub truncate: bool,
}

/// Applies `layers` in order (the model's parameters, then the request's options); unknown keys
/// are ignored as Ollama ignores them, but a known key with a value of the wrong type is a 400.
pub fn settings(layers: &[&Map<String, Value>]) -> Result<Settings> {
    let mut s = Settings {
        sampler: SamplerConfig {
            seed: fresh_seed(),
            ..SamplerConfig::default()
        },
        generate: GenerateOptions::default(),
        n_ctx: None,
        truncate: false,
    };
    for layer in layers {
        for (name, value) in layer.iter() {
            apply(&mut s, name, value)?;
        }
    }
    Ok(s)
}

/// A seed that differs from request to request (Ollama's `seed: -1`).
fn fresh_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn apply(s: &mut Settings, name: &str, value: &Value) -> Result<()> {
    let bad = |what: &str| ServerError::BadRequest(format!("option {name}: {value} {what}"));
    if value.is_null() {
        return Ok(());
    }
    let float = || {
        value
            .as_f64()
            .map(|f| f as f32)
            .ok_or_else(|| bad("is not a number"))
    };
    let count = || {
        value
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| bad("is not a whole number of at least 0"))
    };
    let c = &mut s.sampler;
    match name {
        "temperature" => c.temperature = float()?,
        "top_k" => c.top_k = count()?,
        "top_p" => c.top_p = float()?,
        "min_p" => c.min_p = float()?,
        "repeat_penalty" => c.repeat_penalty = float()?,
        "repeat_last_n" => c.penalty_last_n = count()?,
        "presence_penalty" => c.presence_penalty = float()?,
        "frequency_penalty" => c.frequency_penalty = float()?,
        "seed" => match value.as_i64() {
            Some(n) if n < 0 => c.seed = fresh_seed(),
            _ => c.seed = value.as_u64().ok_or_else(|| bad("is not a whole number"))?,
        },
        // -1: until the model stops; -2 (Ollama: until the context is full) is the same here.
        "num_predict" => {
            let n = value.as_i64().ok_or_else(|| bad("is not a whole number"))?;
            s.generate.max_tokens = usize::try_from(n).ok();
        }
        "num_ctx" => {
            let n = count()?;
            if n == 0 {
                return Err(bad("is not a usable context size"));
            }
            s.n_ctx = Some(n);
        }
        "stop" => {
            s.generate.stop = match value {
                Value::String(one) => vec![one.clone()],
                Value::Array(all) => all
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad("is not a list of strings"))?,
                _ => return Err(bad("is not a string or a list of strings")),
            }
        }
        "truncate" => s.truncate = value.as_bool().ok_or_else(|| bad("is not true or false"))?,
        _ => {}
    }
    Ok(())
}

/// How long a model stays loaded after a request: `None` is forever.
pub type KeepAlive = Option<Duration>;

/// Parses Ollama's `keep_alive`: a Go duration string (`"5m"`, `"1h30m"`, `"-1s"`), a number of
/// seconds, or a string of one; any negative value means forever, zero unloads at once.
pub fn parse_keep_alive(value: &Value) -> Result<KeepAlive> {
    let bad = || {
        ServerError::BadRequest(format!(
            "keep_alive {value} is not a duration: use \"5m\", \"1h30m\", a number of seconds, a negative value (forever) or 0 (unload now)"
        ))
    };
    let seconds = match value {
        Value::Number(n) => n.as_f64().ok_or_else(bad)?,
        Value::String(s) => match s.trim().parse::<f64>() {
            Ok(n) => n,
            Err(_) => go_duration_seconds(s.trim()).ok_or_else(bad)?,
        },
        _ => return Err(bad()),
    };
    if !seconds.is_finite() {
        return Err(bad());
    }
    Ok((seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(1e12))))
}

/// Seconds in a Go `time.ParseDuration` string: an optional sign, then numbers with units
/// (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), e.g. `1h30m`, `2.5s`.
fn go_duration_seconds(text: &str) -> Option<f64> {
    let (sign, mut rest) = match text.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    Some(sign * total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keep_alive_takes_durations_seconds_and_negatives() {
        let ka = |v: Value| parse_keep_alive(&v).unwrap();
        assert_eq!(ka(json!("5m")), Some(Duration::from_secs(300)));
        assert_eq!(ka(json!("1h30m")), Some(Duration::from_secs(5400)));
        assert_eq!(ka(json!("2.5s")), Some(Duration::from_millis(2500)));
        assert_eq!(ka(json!("500ms")), Some(Duration::from_millis(500)));
        assert_eq!(ka(json!(30)), Some(Duration::from_secs(30)));
        assert_eq!(ka(json!("30")), Some(Duration::from_secs(30)));
        assert_eq!(ka(json!(0)), Some(Duration::ZERO));
        assert_eq!(ka(json!("0")), Some(Duration::ZERO));
        assert_eq!(ka(json!(-1)), None);
        assert_eq!(ka(json!("-1m")), None);
        for bad in [
            json!("5 minutes"),
            json!("m"),
            json!(""),
            json!(true),
            json!([1]),
        ] {
            assert!(parse_keep_alive(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_options_override_model_parameters() {
        let model = json!({"temperature": 0.2, "top_k": 10, "stop": ["<end>"], "num_ctx": 2048});
        let request = json!({"temperature": 0.0, "seed": 7, "num_predict": 12, "stop": "\n",
                             "mirostat": 2, "truncate": true});
        let s = settings(&[model.as_object().unwrap(), request.as_object().unwrap()]).unwrap();
        assert_eq!(s.sampler.temperature, 0.0);
        assert_eq!(s.sampler.top_k, 10);
        assert_eq!(s.sampler.seed, 7);
        assert_eq!(s.generate.max_tokens, Some(12));
        assert_eq!(s.generate.stop, vec!["\n".to_string()]);
        assert_eq!(s.n_ctx, Some(2048));
        assert!(s.truncate);
        let unlimited = json!({"num_predict": -1});
        let s = settings(&[unlimited.as_object().unwrap()]).unwrap();
        assert_eq!(s.generate.max_tokens, None);
    }

    #[test]
    fn options_of_the_wrong_type_are_bad_requests() {
        for bad in [
            json!({"temperature": "hot"}),
            json!({"top_k": -3}),
            json!({"num_ctx": 0}),
            json!({"stop": [1, 2]}),
        ] {
            let e = settings(&[bad.as_object().unwrap()]).unwrap_err();
            assert!(matches!(e, ServerError::BadRequest(_)), "{bad}: {e}");
        }
    }
}
