//! A small HTTP/1.1 model registry on loopback for tests: it serves manifests and blobs the way
//! Ollama's registry does (`/v2/<namespace>/<model>/manifests/<tag>`, `/v2/…/blobs/<digest>`),
//! plus plain files for URL pulls, and can be told to misbehave ([`Fault`]) so that resume, retry
//! and verification can be tested against a real socket.
//!
//! - [`Registry::start`] binds `127.0.0.1:0`; [`Registry::host`] is the host part of the model
//!   names it serves; [`Registry::add_model`] serves a model from its layers' bytes.
//! - [`manifest_json`] writes a manifest with digests as given (valid or hostile).
//! - [`test_options`] are [`PullOptions`] for loopback: plain http, short backoff.
//!
//! Used by the `store` crate's acceptance tests and the `hearth` binary's end-to-end tests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use store::{media_type, Digest, PullOptions};

/// How the server misbehaves when it serves one blob or file.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Sends `bytes` body bytes, then closes the connection; for the next `times` requests.
    DropAfter { bytes: usize, times: usize },
    /// Sends `bytes` body bytes, then sends nothing more until the fault is cleared.
    StallAfter { bytes: usize },
    /// Sends the body in `chunk`-byte pieces with `delay` between them.
    Throttle { chunk: usize, delay: Duration },
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct Logged {
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
}

#[derive(Default)]
struct State {
    /// `<namespace>/<model>/<tag>` → manifest bytes.
    manifests: HashMap<String, Vec<u8>>,
    /// Digest string → bytes (the bytes need not match the digest: that is a test case).
    blobs: HashMap<String, Vec<u8>>,
    /// Any other path → bytes (for URL pulls), served with an ETag.
    files: HashMap<String, Vec<u8>>,
    /// Digest string or file path → fault.
    faults: HashMap<String, Fault>,
    log: Vec<Logged>,
}

/// A registry serving manifests and blobs from memory on `127.0.0.1:<port>`, a thread per
/// connection, one request per connection. It stops when dropped.
pub struct Registry {
    host: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Registry {
    pub fn start() -> Registry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (st, sp) = (st.clone(), sp.clone());
                thread::spawn(move || {
                    // A client that went away mid-response is part of the tests.
                    let _ = handle(stream, &st, &sp);
                });
            }
        });
        Registry { host, state, stop }
    }

    /// `127.0.0.1:<port>`, the host part of model names served here.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Serves a model: each layer's bytes as a blob, plus a config blob and the manifest.
    /// Returns the manifest bytes.
    pub fn add_model(&self, repo: &str, tag: &str, layers: &[(&str, &[u8])]) -> Vec<u8> {
        let config = br#"{"model_format":"gguf","model_family":"llama"}"#;
        let mut refs = Vec::new();
        for (mt, bytes) in layers {
            let digest = Digest::of_bytes(bytes).to_string();
            self.put_blob(&digest, bytes);
            refs.push((mt.to_string(), digest, bytes.len() as u64));
        }
        let config_digest = Digest::of_bytes(config).to_string();
        self.put_blob(&config_digest, config);
        let manifest = manifest_json(
            (media_type::CONFIG, &config_digest, config.len() as u64),
            &refs,
        );
        self.put_manifest(repo, tag, &manifest);
        manifest
    }

    pub fn put_manifest(&self, repo: &str, tag: &str, bytes: &[u8]) {
        self.state
            .lock()
            .unwrap()
            .manifests
            .insert(format!("{repo}/{tag}"), bytes.to_vec());
    }

    pub fn put_blob(&self, digest: &str, bytes: &[u8]) {
        self.state
            .lock()
            .unwrap()
            .blobs
            .insert(digest.to_string(), bytes.to_vec());
    }

    /// The bytes served for a digest string.
    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        self.state.lock().unwrap().blobs.get(digest).cloned()
    }

    pub fn put_file(&self, path: &str, bytes: &[u8]) {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.to_string(), bytes.to_vec());
    }

    /// Makes the blob (by digest string) or file (by path) misbehave.
    pub fn set_fault(&self, key: &str, fault: Fault) {
        self.state
            .lock()
            .unwrap()
            .faults
            .insert(key.to_string(), fault);
    }

    pub fn clear_fault(&self, key: &str) {
        self.state.lock().unwrap().faults.remove(key);
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// The requests for one blob (by digest string) or file path.
    pub fn requests_for(&self, key: &str) -> Vec<Logged> {
        self.log()
            .into_iter()
            .filter(|l| l.path.ends_with(key))
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.host);
    }
}

/// Manifest JSON in the Docker v2 shape, with digests written as given (valid or not).
pub fn manifest_json(config: (&str, &str, u64), layers: &[(String, String, u64)]) -> Vec<u8> {
    let layer = |(mt, digest, size): (&str, &str, u64)| {
        format!(r#"{{"mediaType":"{mt}","digest":"{digest}","size":{size}}}"#)
    };
    let layers: Vec<String> = layers.iter().map(|(m, d, s)| layer((m, d, *s))).collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{}]}}"#,
        media_type::MANIFEST,
        layer(config),
        layers.join(",")
    )
    .into_bytes()
}

fn handle(stream: TcpStream, state: &Mutex<State>, stop: &AtomicBool) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut out = stream;
    let (body, key, etag, content_type) = {
        let mut st = state.lock().unwrap();
        st.log.push(Logged {
            path: path.clone(),
            range: headers.get("range").cloned(),
            if_range: headers.get("if-range").cloned(),
        });
        let route: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match route.as_slice() {
            ["v2", ns, model, "manifests", tag] => {
                match st.manifests.get(&format!("{ns}/{model}/{tag}")) {
                    Some(m) => (m.clone(), None, None, media_type::MANIFEST),
                    None => return not_found(&mut out),
                }
            }
            ["v2", _, _, "blobs", digest] => match st.blobs.get(*digest) {
                Some(b) => (
                    b.clone(),
                    Some(digest.to_string()),
                    None,
                    "application/octet-stream",
                ),
                None => return not_found(&mut out),
            },
            _ => match st.files.get(&path) {
                Some(f) => (
                    f.clone(),
                    Some(path.clone()),
                    Some(format!("\"{}\"", Digest::of_bytes(f).short())),
                    "application/octet-stream",
                ),
                None => return not_found(&mut out),
            },
        }
    };

    let start = match headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
    {
        Some(n) => {
            let n: usize = n.parse().unwrap();
            let same = match (headers.get("if-range"), &etag) {
                (Some(sent), Some(current)) => sent == current,
                _ => true,
            };
            if n >= body.len() {
                let head = format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", body.len());
                return out.write_all(head.as_bytes());
            }
            same.then_some(n)
        }
        None => None,
    };
    let mut head = match start {
        Some(n) => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {n}-{}/{}\r\n",
            body.len() - 1,
            body.len()
        ),
        None => "HTTP/1.1 200 OK\r\n".to_string(),
    };
    let body = &body[start.unwrap_or(0)..];
    head += &format!(
        "Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(etag) = etag {
        head += &format!("ETag: {etag}\r\n");
    }
    head += "\r\n";
    out.write_all(head.as_bytes())?;

    let fault = key.as_ref().and_then(|k| {
        let mut st = state.lock().unwrap();
        let fault = st.faults.get(k).cloned();
        if let Some(Fault::DropAfter { bytes, times }) = fault {
            if times <= 1 {
                st.faults.remove(k);
            } else {
                st.faults.insert(
                    k.clone(),
                    Fault::DropAfter {
                        bytes,
                        times: times - 1,
                    },
                );
            }
        }
        fault
    });
    match fault {
        None => out.write_all(body)?,
        Some(Fault::DropAfter { bytes, .. }) => {
            out.write_all(&body[..bytes.min(body.len())])?;
            out.flush()?;
            out.shutdown(Shutdown::Both)?;
        }
        Some(Fault::StallAfter { bytes }) => {
            out.write_all(&body[..bytes.min(body.len())])?;
            out.flush()?;
            let key = key.expect("faults are keyed");
            while !stop.load(Ordering::SeqCst)
                && matches!(
                    state.lock().unwrap().faults.get(&key),
                    Some(Fault::StallAfter { .. })
                )
            {
                thread::sleep(Duration::from_millis(20));
            }
            out.shutdown(Shutdown::Both)?;
        }
        Some(Fault::Throttle { chunk, delay }) => {
            for piece in body.chunks(chunk) {
                out.write_all(piece)?;
                out.flush()?;
                thread::sleep(delay);
            }
        }
    }
    Ok(())
}

fn not_found(out: &mut TcpStream) -> std::io::Result<()> {
    let body = r#"{"errors":[{"code":"NOT_FOUND","message":"not found"}]}"#;
    let head = format!("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    out.write_all(head.as_bytes())?;
    out.write_all(body.as_bytes())
}

/// Options for loopback pulls: plain http, short backoff.
pub fn test_options() -> PullOptions {
    PullOptions {
        insecure: true,
        max_attempts: 4,
        retry_delay: Duration::from_millis(10),
        stall_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
    }
}
