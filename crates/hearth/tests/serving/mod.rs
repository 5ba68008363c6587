//! What the `hearth serve` tests share: a model store holding the real SmolLM2 and a synthetic
//! model, a server on a free loopback port that is killed when the test ends, plain HTTP
//! requests, and a Python virtual environment with the official `openai` and `ollama` packages.

// Each test binary that includes this module uses only some of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The real model the issue asks for: fetched by `scripts/fetch-test-models.sh` (which
/// `scripts/test.sh`, and so CI, runs first).
pub const SMOLLM2_FILE: &str = "smollm2-135m-instruct-q4_1.gguf";
/// Its name in the test stores.
pub const SMOLLM2: &str = "smollm2";
/// A synthetic model (random weights, real tokenizer): a second, different model in the store.
pub const TINY: &str = "tiny";
const TINY_FILE: &str = "llama3-synthetic-q4_0.gguf";

pub fn hearth_bin() -> &'static str {
    env!("CARGO_BIN_EXE_hearth")
}

fn synthetic(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/reference/synthetic")
        .join(name)
}

/// The real SmolLM2 file; fails the test, saying how to get it, when it is missing.
pub fn smollm2_file() -> PathBuf {
    test_model(SMOLLM2_FILE, "smollm2")
}

/// A model that calls tools (SmolLM2's template has none): the real Qwen2.5-Coder-0.5B-Instruct.
pub const QWEN_FILE: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
/// Its name in the test stores.
pub const QWEN: &str = "qwen";

/// The real Qwen2.5-Coder file; fails the test, saying how to get it, when it is missing.
pub fn qwen_file() -> PathBuf {
    test_model(QWEN_FILE, "qwen2")
}

/// A real model fetched by `scripts/fetch-test-models.sh` (`fetch_name` is its name there).
fn test_model(file: &str, fetch_name: &str) -> PathBuf {
    let dir = match std::env::var_os("HEARTH_TEST_MODELS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
            .join(".cache/hearth/test-models"),
    };
    let path = dir.join(file);
    assert!(
        path.is_file(),
        "the real test model {} is missing: run scripts/fetch-test-models.sh {fetch_name} \
         (scripts/test.sh does)",
        path.display()
    );
    path
}

/// SmolLM2's embedding width, read from the file: what every embedding must be as long as.
pub fn smollm2_n_embd() -> usize {
    let g = gguf::Gguf::open(smollm2_file()).expect("SmolLM2 opens");
    g.get_u64("llama.embedding_length")
        .expect("SmolLM2 has llama.embedding_length") as usize
}

/// A model store of its own for one test, with `smollm2` and `tiny` created in it by
/// `hearth create` (the files are copied first: the store hard-links what it imports, and the
/// shared test data must never be linked into a store that a test may change).
pub struct Models {
    pub dir: tempfile::TempDir,
    /// An empty Ollama store, so that nothing from `~/.ollama` shows up.
    pub ollama: tempfile::TempDir,
    /// `HEARTH_HOME`: the web app's database, so that nothing touches `~/.hearth`.
    pub home: tempfile::TempDir,
}

impl Models {
    /// A store with no models.
    pub fn empty() -> Models {
        Models {
            dir: tempfile::tempdir().unwrap(),
            ollama: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// A store with `smollm2` and `tiny`.
    pub fn with_models() -> Models {
        Models::with(&[(SMOLLM2, smollm2_file()), (TINY, synthetic(TINY_FILE))])
    }

    /// A store with `models` (name, file) created in it.
    pub fn with(models: &[(&str, PathBuf)]) -> Models {
        let store = Models::empty();
        let work = tempfile::tempdir().unwrap();
        for (name, file) in models {
            let copy = work.path().join(format!("{name}.gguf"));
            std::fs::copy(file, &copy).unwrap();
            let modelfile = work.path().join(format!("{name}.Modelfile"));
            std::fs::write(&modelfile, format!("FROM {}\n", copy.display())).unwrap();
            store.ok(&["create", name, "-f", modelfile.to_str().unwrap()]);
        }
        store
    }

    /// The `hearth` command with this store, and no server to talk to unless the test names
    /// one with `HEARTH_HOST` (port 9 on loopback, discard, is closed).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(hearth_bin());
        cmd.args(args)
            .env("HEARTH_MODELS", self.dir.path())
            .env("OLLAMA_MODELS", self.ollama.path())
            .env("HEARTH_HOME", self.home.path())
            .env("HEARTH_HOST", "127.0.0.1:9")
            .env_remove("HEARTH_API_KEY")
            .env_remove("HEARTH_DB")
            .env_remove("HEARTH_ACCOUNTS")
            .env_remove("HEARTH_KV_CACHE_TYPE");
        cmd
    }

    /// Runs `hearth` with this store; fails the test unless it succeeds; returns its standard
    /// output and standard error.
    pub fn ok(&self, args: &[&str]) -> (String, String) {
        ok(self.command(args).output().unwrap(), args)
    }
}

/// The standard output and error of a `hearth` that must have succeeded.
pub fn ok(out: Output, args: &[&str]) -> (String, String) {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        out.status.success(),
        "hearth {args:?} failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    (text(&out.stdout), text(&out.stderr))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `hearth serve`, killed (and its log shown, when the test failed) on drop.
pub struct Server {
    child: Child,
    /// host:port, on loopback.
    pub addr: String,
    log: tempfile::NamedTempFile,
}

impl Server {
    /// `hearth serve --host 127.0.0.1:<free port>` on `models`, with `env` added to its
    /// environment and `args` to its command line; waits until /health answers.
    pub fn start(models: &Models, args: &[&str], env: &[(&str, &str)]) -> Server {
        let addr = format!("127.0.0.1:{}", free_port());
        let server = Server::spawn(models, &["--host", &addr], args, env, &addr);
        server.wait_healthy();
        server
    }

    /// `hearth serve` with exactly `args` (no `--host`), not waited for.
    pub fn spawn(
        models: &Models,
        host: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
        addr: &str,
    ) -> Server {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = models.command(&[&["serve"], host, args].concat());
        cmd.env_remove("HEARTH_HOST")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap());
        Server {
            child: cmd.spawn().expect("hearth serve starts"),
            addr: addr.to_string(),
            log,
        }
    }

    /// Kills the server with SIGKILL (no chance to clean up) and waits for it to be gone.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// A new server on `addr` (where a killed one was) with the same store and home.
    pub fn restart(models: &Models, addr: &str) -> Server {
        let server = Server::spawn(models, &["--host", addr], &[], &[], addr);
        server.wait_healthy();
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the server wrote to standard output and error so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Waits for the server to exit (at most `limit`); its exit status, or None if it runs on.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn wait_healthy(&self) {
        let start = Instant::now();
        loop {
            if let Ok(r) = request(&self.addr, "GET", "/health", &[], None) {
                if r.status == 200 {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "hearth serve did not answer GET /health on {} within 30 s; its log:\n{}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- hearth serve log ({}) ---\n{}", self.addr, self.log());
        }
    }
}

/// A complete HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the body of a {} response is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }

    /// The body as NDJSON, one value a line.
    pub fn ndjson(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))
            })
            .collect()
    }
}

/// An HTTP/1.1 request written by hand, so that a test controls every header (`Host`
/// included); `headers` are added to `Host` (unless given), `Connection: close` and, with a
/// body, its type and length. Chunked responses are decoded.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> std::io::Result<Response> {
    let mut stream = open(addr, method, path, headers, body)?;
    let mut reader = BufReader::new(&mut stream);
    let (status, headers) = read_head(&mut reader)?;
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = size.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {size:?}")))?;
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Sends a request and returns the open connection, for a test that reads the response as it
/// comes (and may hang up in the middle).
pub fn open(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head += &format!("Host: {addr}\r\n");
    }
    for (name, value) in headers {
        head += &format!("{name}: {value}\r\n");
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    if !body.is_empty() {
        head += &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    head += "Connection: close\r\n\r\n";
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    Ok(stream)
}

/// The status line and headers (names in lower case) of a response.
pub fn read_head(reader: &mut impl BufRead) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP status line: {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    Ok((status, headers))
}

/// A POST of JSON that must succeed (status 200); its response.
pub fn post(addr: &str, path: &str, body: serde_json::Value) -> Response {
    let r = request(addr, "POST", path, &[], Some(&body)).unwrap();
    assert_eq!(r.status, 200, "POST {path} {body}: {}", r.text());
    r
}

/// The Python packages the client tests use, pinned: a new release is tried on purpose, by
/// changing these (the virtual environment is keyed by them).
pub const PYTHON_PACKAGES: [&str; 2] = ["openai==3.51.0", "ollama==0.6.3"];

/// The Python of a virtual environment holding [`PYTHON_PACKAGES`], made once and cached in
/// `~/.cache/hearth/test-venv/` under a name built from the packages and Python's version;
/// None (after saying so on standard error) where there is no `python3`.
pub fn python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON.get_or_init(|| make_venv(&PYTHON_PACKAGES)).clone()
}

/// Playwright, to drive a browser from the web app's tests (with Debian's Chromium: Playwright's
/// own browser download is not used).
pub const BROWSER_PACKAGES: [&str; 1] = ["playwright==1.65.2"];

/// Like [`python`], with [`BROWSER_PACKAGES`].
pub fn browser_python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON.get_or_init(|| make_venv(&BROWSER_PACKAGES)).clone()
}

fn make_venv(packages: &[&str]) -> Option<PathBuf> {
    let Ok(version) = Command::new("python3")
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
    else {
        eprintln!("skipped: python3 is not installed, so the openai and ollama clients cannot run");
        return None;
    };
    assert!(
        version.status.success(),
        "python3 does not run: {}",
        String::from_utf8_lossy(&version.stderr)
    );
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let key = format!("py{version}-{}", packages.join("-")).replace("==", "-");
    let root = PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
        .join(".cache/hearth/test-venv");
    let venv = root.join(&key);
    let python = venv.join("bin/python");
    if python.is_file() {
        return Some(python);
    }
    // Built beside its final place and renamed into it when complete, so that an interrupted
    // install is never mistaken for a finished one, and two test runs at once do not collide.
    std::fs::create_dir_all(&root).unwrap();
    let building = root.join(format!("{key}.building-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    let run = |cmd: &mut Command, what: &str| {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "cannot {what} for the client tests: {}{}\n(PyPI must be reachable once; the \
             environment is cached in {})",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            root.display()
        );
    };
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&building),
        "create a Python virtual environment",
    );
    run(
        Command::new(building.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(packages),
        &format!("install {}", packages.join(" ")),
    );
    if std::fs::rename(&building, &venv).is_err() {
        // Another run finished first; its environment is as good.
        let _ = std::fs::remove_dir_all(&building);
    }
    assert!(python.is_file(), "{} is missing", python.display());
    Some(python)
}

/// Runs one of the client scripts beside this file with the test's Python, and fails the test
/// with the script's output unless it succeeds; returns its standard output.
pub fn run_script(python: &Path, script: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/serving")
        .join(script);
    let out = Command::new(python)
        .arg(&path)
        .args(args)
        .envs(env.iter().copied())
        // The clients must reach the test's server directly, whatever the machine's proxy.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
