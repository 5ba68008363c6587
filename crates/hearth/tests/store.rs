//! The model store from a user's side, end to end with the `hearth` binary: `pull` from a
//! registry on loopback (the `test-registry` crate), `list`, `show`, `tokenize` and `run` by
//! name (pulling first when needed; the model's parameters, system message and template applied),
//! `create`, `cp` and `rm`, an unreachable registry, and a corrupted blob.

mod common;

use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use common::{prompt_tokens, synthetic, TestStore};
use store::{media_type, Digest};
use test_registry::Registry;

const MODEL: &str = "llama3-synthetic-q4_0.gguf";
/// What Ollama's registry serves as a template: Go's text/template, which Hearth does not render.
const GO_TEMPLATE: &str =
    "{{ if .System }}<|system|>{{ .System }}{{ end }}<|user|>{{ .Prompt }}<|assistant|>";
const SYSTEM: &str = "You are a terse assistant.";
/// `mirostat` is one of Ollama's options that Hearth has no use for.
const PARAMS: &str = r#"{"temperature":0,"num_predict":3,"stop":["<|end|>"],"mirostat":0}"#;

/// Serves `library/tiny:latest` (the synthetic model with Ollama-style template, system and
/// params layers); returns its name and manifest bytes.
fn serve_tiny(registry: &Registry) -> (String, Vec<u8>) {
    let model = fs::read(synthetic(MODEL)).unwrap();
    let manifest = registry.add_model(
        "library/tiny",
        "latest",
        &[
            (media_type::MODEL, &model),
            (media_type::TEMPLATE, GO_TEMPLATE.as_bytes()),
            (media_type::SYSTEM, SYSTEM.as_bytes()),
            (media_type::PARAMS, PARAMS.as_bytes()),
        ],
    );
    (format!("{}/library/tiny:latest", registry.host()), manifest)
}

/// The GGUF blob of the synthetic model in a store.
fn model_blob(store: &TestStore) -> PathBuf {
    let digest = Digest::of_file(&synthetic(MODEL)).unwrap().0;
    store.models.path().join("blobs").join(digest.file_name())
}

/// Creates model `name` in `store` from a Modelfile of `FROM ./tiny.gguf` plus `rest`, next to a
/// copy of the synthetic model (the store hard-links what it imports: never the test data).
/// Returns the directory, which must outlive the test's use of the model file.
fn create(store: &TestStore, name: &str, rest: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(synthetic(MODEL), dir.path().join("tiny.gguf")).unwrap();
    let modelfile = dir.path().join("Modelfile");
    fs::write(&modelfile, format!("FROM ./tiny.gguf\n{rest}")).unwrap();
    store.ok(&["create", name, "-f", modelfile.to_str().unwrap()]);
    dir
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// A registry model pulled with `hearth pull` is listed (name, manifest digest prefix), shown
/// (Modelfile with its blob path, template, system, parameters), tokenized and run by name —
/// and the run uses the model's parameters and system message exactly as if they were given
/// as options to a run of the file, while options given on the command line still win.
#[test]
fn pull_list_show_and_run_a_registry_model() {
    let registry = Registry::start();
    let (name, manifest) = serve_tiny(&registry);
    let store = TestStore::new();
    let (_, err) = store.ok(&["pull", &name, "--insecure"]);
    for step in ["pulling manifest", "writing manifest", "success"] {
        assert!(err.contains(step), "{err}");
    }

    let (list, _) = store.ok(&["list"]);
    assert!(list.starts_with("NAME"), "{list}");
    let row = list
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("{name} is not listed:\n{list}"));
    assert!(row.contains(Digest::of_bytes(&manifest).short()), "{row}");
    // `ls`, and `--models` over HEARTH_MODELS.
    let elsewhere = TestStore::new();
    let (ls, _) = elsewhere.ok(&["ls", "--models", path(store.models.path())]);
    assert!(ls.contains(&name), "{ls}");

    let (modelfile, _) = store.ok(&["show", &name, "--modelfile"]);
    let from = format!("FROM {}", model_blob(&store).display());
    assert!(modelfile.lines().any(|l| l == from), "{modelfile}");
    assert!(
        modelfile.contains("PARAMETER temperature 0\n") && modelfile.contains("SYSTEM"),
        "{modelfile}"
    );
    assert_eq!(
        store.ok(&["show", &name, "--template"]).0.trim_end(),
        GO_TEMPLATE
    );
    assert_eq!(store.ok(&["show", &name, "--system"]).0.trim_end(), SYSTEM);
    let (shown, _) = store.ok(&["show", &name]);
    assert!(
        shown.contains("architecture        llama") && shown.contains("Go template"),
        "{shown}"
    );

    let file = synthetic(MODEL);
    let by_name = store.ok(&["tokenize", &name, "Hello world"]).0;
    assert_eq!(
        by_name,
        store.ok(&["tokenize", path(&file), "Hello world"]).0
    );

    let greedy = ["--temperature", "0", "--num-predict", "4", "Hi"];
    let (text, _) = store.ok(&[&["run", name.as_str()][..], &greedy].concat());
    assert!(!text.trim().is_empty(), "no text generated");

    // The model's temperature, num_predict, stop and system, as options of a run of the file.
    let (text, err) = store.ok(&["run", &name, "--verbose", "Hi"]);
    let as_options = [
        "--temperature",
        "0",
        "--num-predict",
        "3",
        "--stop",
        "<|end|>",
        "--system",
        SYSTEM,
        "--verbose",
        "Hi",
    ];
    let (want, want_err) = store.ok(&[&["run", path(&file)][..], &as_options].concat());
    assert_eq!(text, want);
    assert_eq!(
        prompt_tokens(err.as_bytes()),
        prompt_tokens(want_err.as_bytes())
    );
    assert!(err.contains("generation:  3 tokens"), "{err}");
    assert!(
        err.contains("Go template") && err.contains("using the GGUF's chat template"),
        "{err}"
    );
    assert!(err.contains("mirostat") && err.contains("ignored"), "{err}");
    // A command-line option wins over the model's parameter.
    let (_, err) = store.ok(&["run", &name, "--num-predict", "1", "--verbose", "Hi"]);
    assert!(err.contains("generation:  1 tokens"), "{err}");
}

/// `hearth run NAME` on a model the store does not have pulls it first (as `ollama run` does),
/// then runs it; the next run finds it installed and asks the registry nothing.
#[test]
fn run_pulls_a_missing_model_first() {
    let registry = Registry::start();
    let (name, _) = serve_tiny(&registry);
    let store = TestStore::new();
    let greedy = ["--temperature", "0", "--num-predict", "4", "Hi"];
    let (text, err) = store.ok(&[&["run", name.as_str(), "--insecure"][..], &greedy].concat());
    assert!(!text.trim().is_empty(), "no text generated");
    assert!(
        err.contains("pulling manifest") && err.contains("success"),
        "{err}"
    );
    assert!(store.ok(&["list"]).0.contains(&name));

    let requests = registry.log().len();
    let (again, _) = store.ok(&[&["run", name.as_str()][..], &greedy].concat());
    assert_eq!(again, text);
    assert_eq!(registry.log().len(), requests);
}

/// `hearth create` from a Modelfile (FROM a .gguf path, PARAMETER, SYSTEM) makes a model whose
/// runs use those defaults; a model created FROM it with a Jinja TEMPLATE renders prompts with
/// that template; an invalid template is refused at create time; `cp` shares the model under a
/// new name; `rm` deletes, and names an unknown model in a clear error.
#[test]
fn create_run_copy_and_remove() {
    let store = TestStore::new();
    let dir = create(
        &store,
        "terse",
        &format!("PARAMETER temperature 0\nPARAMETER num_predict 4\nSYSTEM {SYSTEM}\n"),
    );
    let (text, err) = store.ok(&["run", "terse", "--verbose", "Hi"]);
    let file = dir.path().join("tiny.gguf");
    let as_options = [
        "--temperature",
        "0",
        "--num-predict",
        "4",
        "--system",
        SYSTEM,
        "--verbose",
        "Hi",
    ];
    let (want, want_err) = store.ok(&[&["run", path(&file)][..], &as_options].concat());
    assert_eq!(text, want);
    assert_eq!(
        prompt_tokens(err.as_bytes()),
        prompt_tokens(want_err.as_bytes())
    );

    // A Jinja TEMPLATE replaces the file's: the prompt is exactly the template's rendering.
    let jinja = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant] ";
    let modelfile = dir.path().join("Jinja.modelfile");
    fs::write(
        &modelfile,
        format!("FROM terse\nTEMPLATE \"\"\"{jinja}\"\"\"\n"),
    )
    .unwrap();
    store.ok(&["create", "terse-jinja", "-f", path(&modelfile)]);
    let (_, err) = store.ok(&["run", "terse-jinja", "--verbose", "Hi"]);
    assert!(err.contains("template: the model's TEMPLATE"), "{err}");
    let rendered = format!("[system] {SYSTEM}\n[user] Hi\n[assistant] ");
    let (ids, _) = store.ok(&["tokenize", path(&file), &rendered]);
    let ids: Vec<u32> = serde_json::from_str(&ids).unwrap();
    assert_eq!(prompt_tokens(err.as_bytes()), ids.len());
    let (params, _) = store.ok(&["show", "terse-jinja", "--parameters"]);
    assert!(
        params.contains("temperature") && params.contains("num_predict"),
        "{params}"
    );

    fs::write(&modelfile, "FROM terse\nTEMPLATE \"{% for %}\"\n").unwrap();
    let out = store.hearth(&["create", "broken", "-f", path(&modelfile)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not a valid Jinja chat template"), "{err}");

    store.ok(&["cp", "terse", "terse-copy"]);
    assert_eq!(
        store.ok(&["show", "terse-copy", "--system"]).0.trim_end(),
        SYSTEM
    );
    let (list, _) = store.ok(&["list"]);
    for name in ["terse:latest", "terse-jinja:latest", "terse-copy:latest"] {
        assert!(list.contains(name), "{list}");
    }
    assert!(!list.contains("broken"), "{list}");

    let (out, _) = store.ok(&["rm", "terse-copy"]);
    assert!(out.starts_with("deleted terse-copy:latest"), "{out}");
    assert!(!store.ok(&["list"]).0.contains("terse-copy"));
    let out = store.hearth(&["rm", "no-such-model"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no-such-model:latest is not installed") && !err.contains("panicked"),
        "{err}"
    );

    // Removing the last models that use the weights deletes the blob, not the imported file.
    store.ok(&["rm", "terse", "terse-jinja"]);
    assert!(!model_blob(&store).exists());
    assert!(file.is_file());
}

/// A registry that cannot be reached: the error names the host and lists the models that are
/// available offline, for `pull` and for `run` of a missing model alike.
#[test]
fn unreachable_registry_names_the_host_and_lists_local_models() {
    let store = TestStore::new();
    let _dir = create(&store, "local", "");
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let name = format!("{closed}/library/tiny");
    for args in [
        &["pull", name.as_str(), "--insecure"][..],
        &["run", name.as_str(), "--insecure", "Hi"],
    ] {
        let out = store.hearth(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!("cannot reach {closed}"))
                && err.contains("models available locally: local:latest"),
            "{args:?}: {err}"
        );
    }
}

/// A blob changed on disk after it was pulled (a flipped byte, a newer mtime) is caught by the
/// integrity check on load: `hearth run` fails with the store's error, which says what to do.
#[test]
fn corrupted_blob_fails_run_with_the_integrity_error() {
    let registry = Registry::start();
    let (name, _) = serve_tiny(&registry);
    let store = TestStore::new();
    store.ok(&["pull", &name, "--insecure"]);
    let blob = model_blob(&store);
    let mut bytes = fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&blob, &bytes).unwrap();
    let mtime = fs::metadata(&blob).unwrap().modified().unwrap();
    fs::File::options()
        .write(true)
        .open(&blob)
        .unwrap()
        .set_modified(mtime + Duration::from_secs(2))
        .unwrap();

    let out = store.hearth(&[
        "run",
        &name,
        "--temperature",
        "0",
        "--num-predict",
        "4",
        "Hi",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is corrupt: its sha256 is") && err.contains("hearth rm"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty());
}

/// The real SmolLM2 model, when `scripts/fetch-test-models.sh` has fetched it, pulled from the
/// loopback registry with an Ollama-style Go template and run by name: the same greedy answer
/// as a run of the file (the synthetic cases above always run).
#[test]
fn real_model_pulls_and_runs_by_name_when_present() {
    let dir = std::env::var_os("HEARTH_TEST_MODELS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/hearth/test-models"))
        });
    let Some(file) = dir
        .map(|d| d.join("smollm2-135m-instruct-q4_1.gguf"))
        .filter(|p| p.is_file())
    else {
        eprintln!("skipped: the real test models are not fetched (scripts/fetch-test-models.sh)");
        return;
    };
    let registry = Registry::start();
    let model = fs::read(&file).unwrap();
    let template = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n";
    registry.add_model(
        "library/smollm2",
        "135m",
        &[
            (media_type::MODEL, &model),
            (media_type::TEMPLATE, template.as_bytes()),
            (
                media_type::PARAMS,
                br#"{"stop":["<|im_start|>","<|im_end|>"]}"#,
            ),
        ],
    );
    let name = format!("{}/library/smollm2:135m", registry.host());
    let store = TestStore::new();
    let greedy = [
        "--temperature",
        "0",
        "--num-predict",
        "16",
        "What is the capital of France?",
    ];
    let (text, _) = store.ok(&[&["run", name.as_str(), "--insecure"][..], &greedy].concat());
    let (want, _) = store.ok(&[&["run", path(&file)][..], &greedy].concat());
    assert!(!text.trim().is_empty(), "no text generated");
    assert_eq!(text, want);
}

/// `hearth create --quantize` re-quantizes the FROM model (here an F16 file, then a model in the
/// store) and installs the result: the new model is Q8_0 / Q4_K_M, keeps the Modelfile's
/// parameters, and runs; a quantized FROM is refused with the quantizer's message.
#[test]
fn create_quantize_installs_a_requantized_model() {
    let store = TestStore::new();
    let dir = tempfile::tempdir().unwrap();
    fs::copy(
        synthetic("llama3-synthetic-f16.gguf"),
        dir.path().join("f16.gguf"),
    )
    .unwrap();
    let modelfile = dir.path().join("Modelfile");
    fs::write(&modelfile, "FROM ./f16.gguf\nPARAMETER temperature 0\n").unwrap();
    let (_, err) = store.ok(&[
        "create",
        "small",
        "-f",
        path(&modelfile),
        "--quantize",
        "q8_0",
    ]);
    assert!(err.contains("quantized to q8_0"), "{err}");
    let (shown, _) = store.ok(&["show", "small"]);
    assert!(shown.contains("quantization        Q8_0"), "{shown}");
    let (params, _) = store.ok(&["show", "small", "--parameters"]);
    assert!(params.contains("temperature"), "{params}");
    let (text, _) = store.ok(&["run", "small", "--num-predict", "3", "Hi"]);
    assert!(!text.is_empty());

    // From a model in the store, to a K-quant mix.
    fs::write(&modelfile, "FROM small\n").unwrap();
    store.ok(&["create", "smaller", "-f", path(&modelfile), "-q", "Q4_K_M"]);
    let (shown, _) = store.ok(&["show", "smaller"]);
    assert!(shown.contains("Q4_K"), "{shown}");

    fs::write(&modelfile, "FROM smaller\n").unwrap();
    let out = store.hearth(&["create", "again", "-f", path(&modelfile), "-q", "q4_0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot create again"), "{err}");
    assert!(!store.ok(&["list"]).0.contains("again"));
}

/// `hearth bench` takes a store name as well as a file, reports it by its whole name, and says
/// to pull a model that is not installed (it never downloads by itself).
#[test]
fn bench_takes_a_store_name() {
    let store = TestStore::new();
    let _dir = create(&store, "benched", "");
    let (out, _) = store.ok(&[
        "bench", "benched", "-p", "8", "-n", "2", "-r", "1", "--json",
    ]);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["model_filename"], "benched:latest", "{out}");
    let out = store.hearth(&["bench", "not-installed", "-p", "8", "-n", "0", "-r", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("pull"), "{err}");
}
