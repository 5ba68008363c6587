//! Acceptance tests of the model store against a real HTTP registry on loopback (the
//! `test-registry` crate), serving the synthetic GGUF models of `testdata/reference/synthetic`.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use store::{
    media_type, Digest, ModelName, Modelfile, PullEvent, PullSource, Source, Store, StoreError,
};
use support::{snapshot, synthetic, synthetic_path, wait_until};
use test_registry::{manifest_json, test_options, Fault, Registry};

const MODEL_FILE: &str = "llama3-synthetic-q4_0.gguf";
const TEMPLATE: &str = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}";
const SYSTEM: &str = "You are a terse assistant.";
const PARAMS: &str = r#"{"temperature":0.2,"stop":["<|end|>"]}"#;
const LICENSE: &str = "Apache-2.0";

/// Serves `library/tiny:latest` (the Q4_0 synthetic model plus template, system, params and
/// license layers); returns the model bytes.
fn serve_tiny(registry: &Registry) -> Vec<u8> {
    let model = synthetic(MODEL_FILE);
    registry.add_model(
        "library/tiny",
        "latest",
        &[
            (media_type::MODEL, &model),
            (media_type::TEMPLATE, TEMPLATE.as_bytes()),
            (media_type::SYSTEM, SYSTEM.as_bytes()),
            (media_type::PARAMS, PARAMS.as_bytes()),
            (media_type::LICENSE, LICENSE.as_bytes()),
        ],
    );
    model
}

fn tiny(registry: &Registry) -> ModelName {
    ModelName::parse(&format!("{}/library/tiny", registry.host())).unwrap()
}

fn pull(store: &Store, name: &ModelName) -> Result<(), StoreError> {
    store.pull_model(name, &test_options(), &mut |_: &PullEvent<'_>| {})
}

fn no_partial_files(store: &Store) -> bool {
    fs::read_dir(store.root().join("blobs")).map_or(true, |d| {
        d.flatten()
            .all(|e| !e.file_name().to_string_lossy().contains("partial"))
    })
}

/// Pull, list, resolve and check: every layer arrives, the model is listed under its name with
/// its manifest digest and total size, and resolving gives the GGUF path and the text layers.
#[test]
fn happy_path_pull_list_resolve_verify() {
    let registry = Registry::start();
    let model = serve_tiny(&registry);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let name = tiny(&registry);

    let mut finished = Vec::new();
    let mut wrote_manifest = false;
    store
        .pull_model(&name, &test_options(), &mut |e: &PullEvent<'_>| match e {
            PullEvent::Blob {
                id,
                completed,
                total: Some(total),
                ..
            } if completed == total => finished.push(id.to_string()),
            PullEvent::WritingManifest { .. } => wrote_manifest = true,
            _ => {}
        })
        .unwrap();
    assert!(wrote_manifest);
    let model_digest = Digest::of_bytes(&model);
    assert!(finished.contains(&model_digest.to_string()), "{finished:?}");

    let list = store.list().unwrap();
    assert_eq!(list.len(), 1);
    let entry = &list[0];
    assert_eq!(entry.name, name);
    assert_eq!(entry.source, Source::Hearth);
    assert!(entry.problem.is_none());
    let manifest_bytes = fs::read(
        dir.path()
            .join("manifests")
            .join(registry.host())
            .join("library/tiny/latest"),
    )
    .unwrap();
    assert_eq!(entry.digest, Digest::of_bytes(&manifest_bytes));
    let layer_bytes = model.len() + TEMPLATE.len() + SYSTEM.len() + PARAMS.len() + LICENSE.len();
    assert!(
        entry.size > layer_bytes as u64,
        "{} includes the config blob",
        entry.size
    );

    let resolved = store.resolve(&name).unwrap();
    assert_eq!(
        resolved.model_path,
        dir.path().join("blobs").join(model_digest.file_name())
    );
    assert_eq!(resolved.template.as_deref(), Some(TEMPLATE));
    assert_eq!(resolved.system.as_deref(), Some(SYSTEM));
    assert_eq!(resolved.params["temperature"], 0.2);
    assert_eq!(resolved.params["stop"][0], "<|end|>");
    assert_eq!(resolved.license, [LICENSE]);
    let gguf = store.verify(&resolved).unwrap();
    assert_eq!(gguf.architecture(), Some("llama"));
    assert!(store.is_verified(&resolved.model_path, &model_digest));
    assert!(no_partial_files(&store));

    // Short names resolve case-insensitively, and a second pull downloads no blob again.
    let upper = ModelName::parse(&format!("{}/library/TINY:Latest", registry.host())).unwrap();
    assert_eq!(store.resolve(&upper).unwrap().name, name);
    let blob_requests = |r: &Registry| {
        r.log()
            .iter()
            .filter(|l| l.path.contains("/blobs/"))
            .count()
    };
    let before = blob_requests(&registry);
    pull(&store, &name).unwrap();
    assert_eq!(blob_requests(&registry), before);
    assert_eq!(store.list().unwrap().len(), 1);
}

/// The server closes the connection twice in the middle of the model blob: the pull resumes
/// with `Range` requests from where each attempt stopped and finishes with a verified blob.
#[test]
fn dropped_connection_mid_blob_resumes_with_range() {
    let registry = Registry::start();
    let model = serve_tiny(&registry);
    let digest = Digest::of_bytes(&model).to_string();
    registry.set_fault(
        &digest,
        Fault::DropAfter {
            bytes: 200_000,
            times: 2,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let name = tiny(&registry);

    let mut retries = 0;
    store
        .pull_model(&name, &test_options(), &mut |e: &PullEvent<'_>| {
            if matches!(e, PullEvent::Retry { .. }) {
                retries += 1;
            }
        })
        .unwrap();
    assert_eq!(retries, 2);
    let ranges: Vec<Option<String>> = registry
        .requests_for(&digest)
        .into_iter()
        .map(|l| l.range)
        .collect();
    assert_eq!(
        ranges,
        [
            None,
            Some("bytes=200000-".into()),
            Some("bytes=400000-".into())
        ]
    );
    let resolved = store.resolve(&name).unwrap();
    store.verify(&resolved).unwrap();
    assert_eq!(fs::read(&resolved.model_path).unwrap(), model);
    assert!(no_partial_files(&store));
}

/// A transfer that stalls (the server stops sending without closing) times out after the
/// stall timeout and resumes where it stopped; a transfer that keeps failing without progress
/// gives up after the bounded number of attempts, keeping nothing listed.
#[test]
fn stalled_transfers_resume_and_failing_ones_give_up_after_bounded_retries() {
    let registry = Registry::start();
    let model = serve_tiny(&registry);
    let digest = Digest::of_bytes(&model).to_string();
    registry.set_fault(&digest, Fault::StallAfter { bytes: 300_000 });
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let name = tiny(&registry);
    let options = store::PullOptions {
        stall_timeout: Duration::from_millis(300),
        ..test_options()
    };
    store
        .pull_model(&name, &options, &mut |_: &PullEvent<'_>| {})
        .unwrap();
    registry.clear_fault(&digest);
    let ranges: Vec<Option<String>> = registry
        .requests_for(&digest)
        .into_iter()
        .map(|l| l.range)
        .collect();
    assert_eq!(
        ranges,
        [
            None,
            Some("bytes=300000-".into()),
            Some("bytes=600000-".into())
        ]
    );
    store.verify(&store.resolve(&name).unwrap()).unwrap();

    let other = tempfile::tempdir().unwrap();
    let store = Store::new(other.path());
    registry.set_fault(
        &digest,
        Fault::DropAfter {
            bytes: 0,
            times: 100,
        },
    );
    let before = registry.requests_for(&digest).len();
    let err = pull(&store, &name).unwrap_err();
    let StoreError::TransferFailed { attempts, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(*attempts, test_options().max_attempts);
    assert_eq!(registry.requests_for(&digest).len() - before, 4);
    assert!(err.to_string().contains("run the same pull again"), "{err}");
    assert!(store.list().unwrap().is_empty());
}

/// A blob whose bytes do not hash to the digest in the manifest is rejected: the pull fails
/// with a digest mismatch, the model is not listed, no manifest is written, the bad bytes are
/// neither installed nor kept as a partial download.
#[test]
fn blob_not_matching_its_digest_is_rejected_and_nothing_installed() {
    let registry = Registry::start();
    let model = serve_tiny(&registry);
    let digest = Digest::of_bytes(&model);
    let mut tampered = model.clone();
    tampered[model.len() / 2] ^= 0xff;
    registry.put_blob(&digest.to_string(), &tampered);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let name = tiny(&registry);

    let err = pull(&store, &name).unwrap_err();
    let StoreError::DigestMismatch { expected, got, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(*expected, digest.to_string());
    assert_eq!(*got, Digest::of_bytes(&tampered).to_string());
    assert!(err.to_string().contains("nothing was installed"), "{err}");
    assert!(store.list().unwrap().is_empty());
    assert!(!dir.path().join("manifests").exists());
    assert!(!store.blob_path(&digest).exists());
    assert!(no_partial_files(&store));
    assert!(matches!(
        store.resolve(&name),
        Err(StoreError::NotInStore { .. })
    ));
}

/// Manifests with a traversal digest or a digest of the wrong length are rejected before any
/// file is touched: a store that already holds a model is byte-for-byte unchanged, a store that
/// does not exist yet is not created, and no blob is requested.
#[test]
fn malicious_manifest_digests_are_rejected_before_any_file_is_touched() {
    let registry = Registry::start();
    serve_tiny(&registry);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    pull(&store, &tiny(&registry)).unwrap();
    let before = snapshot(dir.path());
    let blob_requests = registry
        .log()
        .iter()
        .filter(|l| l.path.contains("/blobs/"))
        .count();
    let fresh = Store::new(dir.path().join("fresh"));

    let good = format!("sha256:{}", "a".repeat(64));
    let config = (media_type::CONFIG, good.as_str(), 10);
    let cases = [
        ("traversal", "sha256:../../x".to_string()),
        (
            "deep-traversal",
            format!("sha256:../../../../{}", "a".repeat(52)),
        ),
        ("short", format!("sha256:{}", "a".repeat(63))),
        ("long", format!("sha256:{}", "a".repeat(65))),
        ("uppercase", format!("sha256:{}", "A".repeat(64))),
        ("dash", format!("sha256-{}", "a".repeat(64))),
    ];
    for (model, digest) in &cases {
        let manifest = manifest_json(config, &[(media_type::MODEL.into(), digest.clone(), 5)]);
        registry.put_manifest(&format!("library/{model}"), "latest", &manifest);
        let name = ModelName::parse(&format!("{}/library/{model}", registry.host())).unwrap();
        for s in [&store, &fresh] {
            let err = pull(s, &name).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidDigest { .. }),
                "{model}: {err}"
            );
        }
    }
    // The same for a bad config digest.
    let manifest = manifest_json(
        (media_type::CONFIG, "sha256:../../config", 10),
        &[(media_type::MODEL.into(), good.clone(), 5)],
    );
    registry.put_manifest("library/badconfig", "latest", &manifest);
    let err = pull(
        &store,
        &ModelName::parse(&format!("{}/library/badconfig", registry.host())).unwrap(),
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::InvalidDigest { .. }), "{err}");

    assert_eq!(
        snapshot(dir.path())
            .into_iter()
            .filter(|(p, _)| !p.starts_with(fresh.root()))
            .collect::<Vec<_>>(),
        before.into_iter().collect::<Vec<_>>()
    );
    assert!(!fresh.root().exists());
    assert_eq!(
        registry
            .log()
            .iter()
            .filter(|l| l.path.contains("/blobs/"))
            .count(),
        blob_requests
    );
}

/// Hostile sizes: a manifest declaring a model larger than the disk is refused before any
/// download, and a server sending more bytes than the manifest declares is cut off, the
/// download discarded; neither leaves a model or a partial file behind.
#[test]
fn hostile_sizes_are_refused() {
    let registry = Registry::start();
    let model = synthetic(MODEL_FILE);
    let digest = Digest::of_bytes(&model).to_string();
    registry.put_blob(&digest, &model);
    let config = Digest::of_bytes(b"{}").to_string();
    registry.put_blob(&config, b"{}");
    let manifest = |size: u64| {
        manifest_json(
            (media_type::CONFIG, &config, 2),
            &[(media_type::MODEL.into(), digest.clone(), size)],
        )
    };
    registry.put_manifest("library/huge", "latest", &manifest(1 << 60));
    registry.put_manifest("library/short", "latest", &manifest(1000));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());

    let huge = ModelName::parse(&format!("{}/library/huge", registry.host())).unwrap();
    let err = pull(&store, &huge).unwrap_err();
    assert!(
        matches!(err, StoreError::NoSpace { needed, .. } if needed > 1 << 59),
        "{err}"
    );
    assert!(registry.log().iter().all(|l| !l.path.contains("/blobs/")));

    let short = ModelName::parse(&format!("{}/library/short", registry.host())).unwrap();
    let err = pull(&store, &short).unwrap_err();
    assert!(
        matches!(err, StoreError::Oversized { expected: 1000, .. }),
        "{err}"
    );
    assert!(store.list().unwrap().is_empty());
    assert!(no_partial_files(&store));
    assert!(!store
        .blob_path(&Digest::parse(&digest, "test").unwrap())
        .exists());
}

/// An unknown model is a 404 from the registry: the error names the model and the registry,
/// and the store is not created. An unreachable registry says so, naming the host.
#[test]
fn unknown_model_and_unreachable_registry_give_clear_errors() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let name = ModelName::parse(&format!("{}/library/no-such-model:7b", registry.host())).unwrap();
    let err = pull(&store, &name).unwrap_err();
    assert!(matches!(err, StoreError::ModelNotFound { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("library/no-such-model:7b") && msg.contains(registry.host()),
        "{msg}"
    );
    assert!(!store.root().exists());

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let name = ModelName::parse(&format!("{closed}/library/tiny")).unwrap();
    let err = pull(&store, &name).unwrap_err();
    let StoreError::Unreachable { host, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(*host, closed);
    assert!(!store.root().exists());
}

/// Run as a child process by `killed_pull_leaves_no_model_and_next_pull_resumes`: pulls from
/// the registry and store named in the environment (the registry stalls, the parent kills it).
#[test]
#[ignore = "a child process of killed_pull_leaves_no_model_and_next_pull_resumes"]
fn child_pull() {
    let (Ok(host), Ok(root)) = (
        std::env::var("HEARTH_TEST_REGISTRY"),
        std::env::var("HEARTH_TEST_STORE"),
    ) else {
        return;
    };
    let name = ModelName::parse(&format!("{host}/library/tiny")).unwrap();
    let options = store::PullOptions {
        stall_timeout: Duration::from_secs(120),
        ..test_options()
    };
    Store::new(root)
        .pull_model(&name, &options, &mut |_: &PullEvent<'_>| {})
        .unwrap();
}

/// A pull killed (SIGKILL) in the middle of the model blob leaves a consistent store — the
/// model is not listed, there is no manifest — and the next pull resumes the partial blob with
/// a `Range` request from exactly where the killed one stopped.
#[test]
fn killed_pull_leaves_no_model_and_next_pull_resumes() {
    const SENT: usize = 300_000;
    let registry = Registry::start();
    let model = serve_tiny(&registry);
    let digest = Digest::of_bytes(&model);
    registry.set_fault(&digest.to_string(), Fault::StallAfter { bytes: SENT });
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let partial = dir
        .path()
        .join("blobs")
        .join(format!("{}-partial", digest.file_name()));

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_pull",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HEARTH_TEST_REGISTRY", registry.host())
        .env("HEARTH_TEST_STORE", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        Duration::from_secs(60),
        "the child has written the stalled bytes",
        || fs::metadata(&partial).is_ok_and(|m| m.len() >= SENT as u64),
    );
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(store.list().unwrap().is_empty());
    assert!(!dir.path().join("manifests").exists());
    assert!(!store.blob_path(&digest).exists());
    assert_eq!(fs::metadata(&partial).unwrap().len(), SENT as u64);

    registry.clear_fault(&digest.to_string());
    pull(&store, &tiny(&registry)).unwrap();
    let last = registry.requests_for(&digest.to_string()).pop().unwrap();
    assert_eq!(last.range, Some(format!("bytes={SENT}-")));
    let resolved = store.resolve(&tiny(&registry)).unwrap();
    store.verify(&resolved).unwrap();
    assert!(!partial.exists());
}

/// Four threads, each with its own `Store` on the same root, pull the same model at once from
/// a slow registry: all succeed, the model blob is downloaded once (the others wait on its lock
/// and find it installed), and the result is one intact model with no partial files.
#[test]
fn concurrent_pulls_of_one_model_do_not_corrupt_the_store() {
    let registry = Registry::start();
    let model = serve_tiny(&registry);
    let digest = Digest::of_bytes(&model);
    registry.set_fault(
        &digest.to_string(),
        Fault::Throttle {
            chunk: 64 << 10,
            delay: Duration::from_millis(5),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let name = tiny(&registry);
    let start = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (root, name, start) = (dir.path().to_path_buf(), name.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                pull(&Store::new(root), &name)
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    let store = Store::new(dir.path());
    assert_eq!(store.list().unwrap().len(), 1);
    assert_eq!(registry.requests_for(&digest.to_string()).len(), 1);
    let resolved = store.resolve(&name).unwrap();
    store.verify(&resolved).unwrap();
    assert!(no_partial_files(&store));
    // Config + model + four text layers, nothing else.
    assert_eq!(fs::read_dir(dir.path().join("blobs")).unwrap().count(), 6);
}

/// A plain https-style URL pull (over loopback http with the insecure opt-in): the file is
/// validated as GGUF and installed under a name from its file name; an interrupted download
/// resumes with `If-Range` carrying the server's ETag. Without the opt-in, http is refused.
#[test]
fn url_pull_installs_a_gguf_and_resumes_with_if_range() {
    let registry = Registry::start();
    let model = synthetic(MODEL_FILE);
    registry.put_file("/files/Tiny-Q4_0.gguf", &model);
    registry.set_fault(
        "/files/Tiny-Q4_0.gguf",
        Fault::DropAfter {
            bytes: 100_000,
            times: 1,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let source =
        PullSource::parse(&format!("http://{}/files/Tiny-Q4_0.gguf", registry.host())).unwrap();

    let refused = store.pull(
        &source,
        &store::PullOptions::default(),
        &mut |_: &PullEvent<'_>| {},
    );
    assert!(
        matches!(refused, Err(StoreError::InsecureScheme { .. })),
        "{refused:?}"
    );
    assert!(!dir.path().join("blobs").exists());

    let name = store
        .pull(&source, &test_options(), &mut |_: &PullEvent<'_>| {})
        .unwrap();
    assert_eq!(
        name.to_string(),
        format!("{}/url/Tiny-Q4_0:latest", registry.host())
    );
    let requests = registry.requests_for("/files/Tiny-Q4_0.gguf");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].range.as_deref(), Some("bytes=100000-"));
    assert!(requests[1].if_range.is_some());
    let resolved = store.resolve(&name).unwrap();
    assert_eq!(resolved.model.digest, Digest::of_bytes(&model));
    store.verify(&resolved).unwrap();
    assert!(no_partial_files(&store));
}

/// Import a .gguf (hard-linked: same file system), then create a model from a Modelfile with
/// every instruction, then derive a model from it: the layers resolve to what the Modelfiles
/// said, parameters merge over the base's, and a non-GGUF file is refused before any write.
#[test]
fn import_and_create_from_modelfiles() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    fs::create_dir(&work).unwrap();
    fs::copy(synthetic_path(MODEL_FILE), work.join("tiny.gguf")).unwrap();
    let store = Store::new(dir.path().join("store"));

    fs::write(work.join("notes.gguf"), b"not a model").unwrap();
    let bad = ModelName::parse("bad").unwrap();
    let err = store.import(&bad, &work.join("notes.gguf")).unwrap_err();
    assert!(matches!(err, StoreError::Gguf { .. }), "{err}");
    assert!(!store.root().exists());

    let plain = ModelName::parse("tiny-plain").unwrap();
    store.import(&plain, &work.join("tiny.gguf")).unwrap();
    let resolved = store.resolve(&plain).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        assert_eq!(
            ino(&resolved.model_path),
            ino(&work.join("tiny.gguf")),
            "imported by hard link"
        );
    }
    assert!(
        store.is_verified(&resolved.model_path, &resolved.model.digest),
        "import records the hash it computed"
    );
    store.verify(&resolved).unwrap();

    let modelfile = r#"
# A tiny assistant.
FROM ./tiny.gguf
PARAMETER temperature 0.3
PARAMETER num_ctx 2048
PARAMETER stop "<|end|>"
PARAMETER stop "<|user|>"
TEMPLATE """{% for m in messages %}
<|{{ m.role }}|>{{ m.content }}
{% endfor %}"""
SYSTEM """You are "Tiny".
Answer briefly."""
MESSAGE user Hi
MESSAGE assistant Hello!
LICENSE """Apache-2.0"""
"#;
    let assistant = ModelName::parse("me/tiny-assistant:v1").unwrap();
    store
        .create(&assistant, &Modelfile::parse(modelfile).unwrap(), &work)
        .unwrap();
    let r = store.resolve(&assistant).unwrap();
    assert_eq!(
        r.model.digest, resolved.model.digest,
        "the same weights blob is shared"
    );
    assert_eq!(
        r.template.as_deref(),
        Some("{% for m in messages %}\n<|{{ m.role }}|>{{ m.content }}\n{% endfor %}")
    );
    assert_eq!(
        r.system.as_deref(),
        Some("You are \"Tiny\".\nAnswer briefly.")
    );
    assert_eq!(
        serde_json::Value::Object(r.params.clone()),
        serde_json::json!({"temperature": 0.3, "num_ctx": 2048, "stop": ["<|end|>", "<|user|>"]})
    );
    assert_eq!(
        r.messages
            .iter()
            .map(|m| (m.role.as_str(), m.content.as_str()))
            .collect::<Vec<_>>(),
        [("user", "Hi"), ("assistant", "Hello!")]
    );
    assert_eq!(r.license, ["Apache-2.0"]);
    store.verify(&r).unwrap();

    let derived = ModelName::parse("me/tiny-hot").unwrap();
    let child =
        Modelfile::parse("FROM me/tiny-assistant:v1\nPARAMETER temperature 1.5\nSYSTEM Be bold.")
            .unwrap();
    store.create(&derived, &child, &work).unwrap();
    let d = store.resolve(&derived).unwrap();
    assert_eq!(d.params["temperature"], 1.5);
    assert_eq!(d.params["num_ctx"], 2048);
    assert_eq!(d.system.as_deref(), Some("Be bold."));
    assert_eq!(d.template, r.template);
    assert_eq!(d.messages, r.messages);

    let names: Vec<String> = store
        .list()
        .unwrap()
        .iter()
        .map(|e| e.name.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "me/tiny-assistant:v1",
            "me/tiny-hot:latest",
            "tiny-plain:latest"
        ]
    );
}

/// Integrity on load: a blob verified once is not hashed again while its size and mtime are
/// unchanged (proved by corrupting it behind the cache's back and restoring the mtime), and is
/// hashed again — and rejected — once the mtime differs.
#[test]
fn integrity_check_rehashes_only_after_size_or_mtime_change() {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(synthetic_path(MODEL_FILE), dir.path().join("tiny.gguf")).unwrap();
    let store = Store::new(dir.path().join("store"));
    let name = ModelName::parse("tiny").unwrap();
    store.import(&name, &dir.path().join("tiny.gguf")).unwrap();
    let resolved = store.resolve(&name).unwrap();
    store.verify(&resolved).unwrap();

    let path = &resolved.model_path;
    let mtime = fs::metadata(path).unwrap().modified().unwrap();
    let mut bytes = fs::read(path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    fs::write(path, &bytes).unwrap();
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    store
        .verify(&resolved)
        .expect("same size and mtime: the cached verification stands");

    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_modified(mtime + Duration::from_secs(1)).unwrap();
    drop(file);
    let err = store.verify(&resolved).unwrap_err();
    assert!(matches!(err, StoreError::BlobCorrupt { .. }), "{err}");
    assert!(err.to_string().contains("hearth rm tiny:latest"), "{err}");

    fs::write(path, &bytes[..10]).unwrap();
    assert!(
        matches!(store.verify(&resolved), Err(StoreError::BlobSize { expected, got: 10, .. }) if expected == bytes.len() as u64)
    );
}

/// Blob garbage collection keeps every blob some manifest references (including one shared by
/// two models) and partial downloads, and deletes orphans; `remove` frees exactly the blobs
/// that no remaining model uses.
#[test]
fn gc_and_remove_keep_referenced_blobs() {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(synthetic_path(MODEL_FILE), dir.path().join("tiny.gguf")).unwrap();
    let store = Store::new(dir.path().join("store"));
    let base = ModelName::parse("base").unwrap();
    let derived = ModelName::parse("derived").unwrap();
    store.import(&base, &dir.path().join("tiny.gguf")).unwrap();
    store
        .create(
            &derived,
            &Modelfile::parse("FROM base\nSYSTEM Be brief.").unwrap(),
            dir.path(),
        )
        .unwrap();
    let model_blob = store.resolve(&base).unwrap().model_path;

    let orphan = b"an orphaned blob";
    let orphan_path = store.blob_path(&Digest::of_bytes(orphan));
    fs::write(&orphan_path, orphan).unwrap();
    let partial = store
        .root()
        .join("blobs")
        .join(format!("{}-partial", Digest::of_bytes(b"x").file_name()));
    fs::write(&partial, b"half").unwrap();
    let leftover = store.root().join("blobs").join(".sha256-abc.tmp-1-0");
    fs::write(&leftover, b"crash").unwrap();

    let report = store.gc().unwrap();
    assert_eq!(report.removed, [Digest::of_bytes(orphan)]);
    assert_eq!(report.freed_bytes, orphan.len() as u64);
    assert!(!orphan_path.exists() && !leftover.exists() && partial.exists());
    for name in [&base, &derived] {
        let r = store.resolve(name).unwrap();
        store.verify(&r).unwrap();
    }

    // Removing `derived` frees its config and system blobs but not the shared weights.
    let report = store.remove(&derived).unwrap();
    assert_eq!(report.removed.len(), 2);
    assert!(model_blob.exists());
    assert!(matches!(
        store.resolve(&derived),
        Err(StoreError::NotInStore { .. })
    ));
    store.verify(&store.resolve(&base).unwrap()).unwrap();
    let report = store.remove(&base).unwrap();
    assert!(report.removed.len() == 2 && !model_blob.exists());
    assert!(store.list().unwrap().is_empty());
    assert!(
        !store.root().join("manifests/registry.ollama.ai").exists(),
        "empty directories are removed"
    );
}

/// An existing Ollama store is used read-only: its models are listed and resolve (names match
/// case-insensitively), verification caches in Hearth's store, `rm` is refused, `cp` and `pull`
/// bring its blobs into Hearth's store without downloading them — and the Ollama directory is
/// byte-for-byte unchanged at the end.
#[test]
fn ollama_store_is_read_only_and_saves_downloads() {
    let registry = Registry::start();
    let model = synthetic(MODEL_FILE);
    let dir = tempfile::tempdir().unwrap();
    let ollama = dir.path().join("ollama");
    // Ollama's layout, written by hand: blobs by digest, manifests by name.
    let manifest = registry.add_model(
        "library/tiny",
        "latest",
        &[
            (media_type::MODEL, &model),
            (media_type::SYSTEM, SYSTEM.as_bytes()),
        ],
    );
    let parsed = store::Manifest::parse(&manifest, "tiny").unwrap();
    fs::create_dir_all(ollama.join("blobs")).unwrap();
    for layer in parsed.blobs() {
        let bytes = registry.blob(&layer.digest.to_string()).unwrap();
        fs::write(ollama.join("blobs").join(layer.digest.file_name()), bytes).unwrap();
    }
    let host_dir = ollama
        .join("manifests")
        .join(registry.host())
        .join("library/tiny");
    fs::create_dir_all(&host_dir).unwrap();
    fs::write(host_dir.join("latest"), &manifest).unwrap();
    let hf_dir = ollama.join("manifests/hf.co/SomeUser/Tiny-GGUF");
    fs::create_dir_all(&hf_dir).unwrap();
    fs::write(hf_dir.join("Q4_0"), &manifest).unwrap();
    let before = snapshot(&ollama);

    let store = Store::new(dir.path().join("hearth")).with_ollama(Some(ollama.clone()));
    let list = store.list().unwrap();
    assert_eq!(
        list.iter()
            .map(|e| (e.name.to_string(), e.source))
            .collect::<Vec<_>>(),
        [
            (
                format!("{}/library/tiny:latest", registry.host()),
                Source::Ollama
            ),
            ("hf.co/SomeUser/Tiny-GGUF:Q4_0".to_string(), Source::Ollama),
        ]
    );
    let hf = ModelName::parse("hf.co/someuser/tiny-gguf:q4_0").unwrap();
    let resolved = store.resolve(&hf).unwrap();
    assert_eq!(resolved.source, Source::Ollama);
    assert_eq!(resolved.system.as_deref(), Some(SYSTEM));
    assert!(resolved.model_path.starts_with(&ollama));
    store.verify(&resolved).unwrap();
    let err = store.remove(&hf).unwrap_err();
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err}");

    let copy = ModelName::parse("my-tiny").unwrap();
    store.copy(&hf, &copy).unwrap();
    let copied = store.resolve(&copy).unwrap();
    assert_eq!(copied.source, Source::Hearth);
    store.verify(&copied).unwrap();

    // A pull of the model Ollama has takes its blobs from the Ollama store: no blob download.
    let fresh = Store::new(dir.path().join("hearth2")).with_ollama(Some(ollama.clone()));
    pull(&fresh, &tiny(&registry)).unwrap();
    assert!(
        registry.log().iter().all(|l| !l.path.contains("/blobs/")),
        "{:?}",
        registry.log()
    );
    assert_eq!(fresh.list().unwrap()[0].source, Source::Hearth);
    fresh
        .verify(&fresh.resolve(&tiny(&registry)).unwrap())
        .unwrap();

    assert_eq!(
        snapshot(&ollama),
        before,
        "the Ollama store was not modified"
    );
}

/// The real SmolLM2 model, when `scripts/fetch-test-models.sh` has fetched it, pulled through
/// the loopback registry and verified (the required cases above use the synthetic models).
#[test]
fn real_test_model_pulls_and_verifies_when_present() {
    let Some(path) = std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".cache/hearth/test-models/smollm2-135m-instruct-q4_1.gguf"))
        .filter(|p| p.is_file())
    else {
        eprintln!("skipped: the real test models are not fetched (scripts/fetch-test-models.sh)");
        return;
    };
    let registry = Registry::start();
    let model = fs::read(path).unwrap();
    registry.add_model("library/smollm2", "135m", &[(media_type::MODEL, &model)]);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let name = ModelName::parse(&format!("{}/library/smollm2:135m", registry.host())).unwrap();
    pull(&store, &name).unwrap();
    let gguf = store.verify(&store.resolve(&name).unwrap()).unwrap();
    assert_eq!(gguf.architecture(), Some("llama"));
}

/// `create_converted` (behind `hearth create --quantize`) installs what the conversion wrote in
/// place of the base's model layer, keeps the base's other layers, and leaves nothing behind
/// when the conversion fails.
#[test]
fn create_converted_replaces_the_model_layer_and_cleans_up_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let base = ModelName::parse("base").unwrap();
    store.import(&base, &synthetic_path(MODEL_FILE)).unwrap();
    let mut modelfile = Modelfile::parse("FROM base\nSYSTEM Be brief.\n").unwrap();

    // A stand-in conversion: another synthetic model's bytes.
    let other = synthetic_path("llama3-synthetic-q8_0.gguf");
    let converted = ModelName::parse("converted").unwrap();
    let mut copy = |src: &Path, dst: &Path| {
        assert_eq!(src, store.resolve(&base).unwrap().model_path);
        fs::copy(&other, dst).map(drop).map_err(|e| e.into())
    };
    store
        .create_converted(&converted, &modelfile, dir.path(), &mut copy)
        .unwrap();
    let got = store.resolve(&converted).unwrap();
    assert_eq!(got.model.digest, Digest::of_file(&other).unwrap().0);
    assert_eq!(got.system.as_deref(), Some("Be brief."));
    store.verify(&got).unwrap();

    // A failing conversion, and one that writes something that is not a GGUF file.
    modelfile.system = None;
    let failed = ModelName::parse("failed").unwrap();
    let mut fail = |_: &Path, _: &Path| Err("out of memory".into());
    let err = store
        .create_converted(&failed, &modelfile, dir.path(), &mut fail)
        .unwrap_err();
    assert!(matches!(err, StoreError::Convert { .. }), "{err}");
    let mut garbage = |_: &Path, dst: &Path| fs::write(dst, b"garbage").map_err(|e| e.into());
    let err = store
        .create_converted(&failed, &modelfile, dir.path(), &mut garbage)
        .unwrap_err();
    assert!(matches!(err, StoreError::Gguf { .. }), "{err}");
    assert!(!store.contains(&failed).unwrap());
    let leftovers: Vec<_> = fs::read_dir(store.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("converted"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
