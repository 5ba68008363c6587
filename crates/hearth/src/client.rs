//! The CLI as a client of a running `hearth serve` (or Ollama), as the Ollama CLI is: where the
//! server is (`HEARTH_HOST`, else 127.0.0.1:11434), whether one answers, and its API's JSON
//! requests and NDJSON streams. `ps` and `stop` need a server; `run`, `pull` and `list` use one
//! when it answers and work on their own when none does.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::time::Duration;

/// Where Ollama's clients, and so Hearth's, look for a server.
const DEFAULT_HOST: &str = "127.0.0.1:11434";
const DEFAULT_PORT: u16 = 11434;

/// A server at a known address.
pub struct Client {
    /// `http://host:port`, without a trailing slash.
    base: String,
    agent: ureq::Agent,
    /// `HEARTH_API_KEY`, sent as `Authorization: Bearer` to a server that wants a key.
    key: Option<String>,
}

/// `HEARTH_HOST` as `scheme://host:port`: `host:port`, `host` (port 11434), `:port`
/// (127.0.0.1), with or without `http://`; `0.0.0.0` (a server listening everywhere) is reached
/// on loopback.
pub fn base_url() -> String {
    url_of(&std::env::var("HEARTH_HOST").unwrap_or_default())
}

fn url_of(var: &str) -> String {
    let var = var.trim().trim_end_matches('/');
    let (scheme, rest) = match var.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => ("http", var),
    };
    let rest = if rest.is_empty() { DEFAULT_HOST } else { rest };
    // The port is what follows the last colon, unless that colon is inside an IPv6 address.
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') && port.parse::<u16>().is_ok() => {
            (host.to_string(), port.to_string())
        }
        _ => (rest.to_string(), DEFAULT_PORT.to_string()),
    };
    let host = match host.as_str() {
        "" | "0.0.0.0" => "127.0.0.1",
        "[::]" => "[::1]",
        other => other,
    };
    format!("{scheme}://{host}:{port}")
}

impl Client {
    fn new(base: String, timeout_connect: Duration) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeout_connect))
            // The server is on this machine or its network: a proxy is not the way there.
            .proxy(None)
            .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client {
            base,
            agent,
            key: std::env::var("HEARTH_API_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
        }
    }

    /// The server at `HEARTH_HOST`, if one answers `/api/version` at once (a refused or
    /// unanswered connection costs at most half a second, and the command goes on without it).
    pub fn running() -> Option<Client> {
        let client = Client::new(base_url(), Duration::from_millis(500));
        let answered = client
            .agent
            .get(format!("{}/api/version", client.base))
            .config()
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .call();
        // Any HTTP answer means a server is there (one that wants a key says 401, which the
        // command's own request then reports).
        answered.is_ok().then_some(client)
    }

    /// The server at `HEARTH_HOST`, for commands that cannot work without one.
    pub fn required() -> Result<Client> {
        Client::running().ok_or_else(|| {
            anyhow!(
                "no server answers at {} (start one with `hearth serve`, or set HEARTH_HOST to \
                 where one runs)",
                base_url()
            )
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn with_key<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.key {
            Some(key) => req.header("Authorization", format!("Bearer {key}")),
            None => req,
        }
    }

    /// GET `path`; its JSON.
    pub fn get(&self, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let response = self
            .with_key(self.agent.get(&url))
            .call()
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        json_body(response, &url)
    }

    /// Whether the server has `model` (`/api/show` finds it).
    pub fn has_model(&self, model: &str) -> Result<bool> {
        let url = format!("{}/api/show", self.base);
        let response = self
            .with_key(self.agent.post(&url))
            .content_type("application/json")
            .send(serde_json::json!({ "model": model }).to_string())
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        if response.status() == 404 {
            return Ok(false);
        }
        json_body(response, &url).map(|_| true)
    }

    /// POST `body` to `path` and call `each` with every line of the NDJSON answer (a single
    /// JSON object is one line) until it returns false. A line with an `error` (a failure after
    /// the stream began) ends it as an error.
    pub fn stream(
        &self,
        path: &str,
        body: &Value,
        mut each: impl FnMut(&Value) -> Result<bool>,
    ) -> Result<()> {
        let url = format!("{}{path}", self.base);
        let response = self
            .with_key(self.agent.post(&url))
            .content_type("application/json")
            .send(body.to_string())
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        if response.status() != 200 {
            json_body(response, &url)?;
            bail!("{url} answered without a body");
        }
        let reader = BufReader::new(response.into_body().into_reader());
        for line in reader.lines() {
            let line = line.with_context(|| format!("the answer from {url} broke off"))?;
            if line.trim().is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(&line)
                .with_context(|| format!("{url} sent a line that is not JSON: {line}"))?;
            if let Some(error) = value.get("error") {
                bail!("{}", error.as_str().unwrap_or(&error.to_string()));
            }
            if !each(&value)? {
                break;
            }
        }
        Ok(())
    }
}

/// The JSON of a response; its `error` as the error when the status is not 200.
fn json_body(response: ureq::http::Response<ureq::Body>, url: &str) -> Result<Value> {
    let status = response.status();
    let text = response
        .into_body()
        .read_to_string()
        .with_context(|| format!("cannot read the answer from {url}"))?;
    let value: Option<Value> = serde_json::from_str(&text).ok();
    if status != 200 {
        let error = value
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(Value::as_str)
            .map_or_else(|| text.trim().to_string(), str::to_string);
        if status == 401 {
            bail!("the server wants an API key: set HEARTH_API_KEY ({error})");
        }
        bail!("{error} ({url}: {status})");
    }
    value.with_context(|| format!("{url} did not answer with JSON: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hearth_host_forms_become_urls() {
        for (var, want) in [
            ("", "http://127.0.0.1:11434"),
            ("127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("example.lan", "http://example.lan:11434"),
            (":9000", "http://127.0.0.1:9000"),
            ("0.0.0.0:11434", "http://127.0.0.1:11434"),
            ("https://example.lan:443/", "https://example.lan:443"),
            ("[::1]:8080", "http://[::1]:8080"),
            ("[::1]", "http://[::1]:11434"),
        ] {
            assert_eq!(url_of(var), want, "HEARTH_HOST={var}");
        }
    }
}
