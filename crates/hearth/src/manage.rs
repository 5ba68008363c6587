//! The model store's commands: `pull`, `list`, `rm`, `cp` and `create`.

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use indicatif::DecimalBytes;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use store::{ModelName, Modelfile, Progress, PullEvent, PullSource, Source, StoreError};

use crate::client::Client;
use crate::models::{is_go_template, StoreArgs};
use crate::progress::PullProgress;

#[derive(Args)]
pub struct PullArgs {
    /// A model name (`llama3.2`, `hf.co/user/repo:Q4_K_M`) or the https:// URL of a .gguf file.
    source: PullSource,
    /// Allow plain http, for a self-hosted registry you trust.
    #[arg(long)]
    insecure: bool,
    #[command(flatten)]
    store: StoreArgs,
}

pub fn pull(args: PullArgs) -> Result<()> {
    if let Some(client) = Client::running().filter(|_| !args.store.explicit()) {
        let model = match &args.source {
            PullSource::Registry(name) => name.to_string(),
            PullSource::Url(url) => url.to_string(),
        };
        return pull_on_server(&client, &model, args.insecure);
    }
    let store = args.store.open()?;
    let name = crate::models::pull(&store, &args.source, args.insecure)?;
    if matches!(args.source, PullSource::Url(_)) {
        eprintln!("installed as {name}");
    }
    Ok(())
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    store: StoreArgs,
}

pub fn list(args: ListArgs) -> Result<()> {
    if let Some(client) = Client::running().filter(|_| !args.store.explicit()) {
        return list_on_server(&client);
    }
    let store = args.store.open()?;
    let now = SystemTime::now();
    let mut rows = vec![header(&["NAME", "ID", "SIZE", "MODIFIED"])];
    let mut notes = Vec::new();
    let mut any_ollama = false;
    for entry in store.list()? {
        let mut name = entry.name.to_string();
        if entry.source == Source::Ollama {
            any_ollama = true;
            name += " (ollama)";
        }
        let size = match &entry.problem {
            Some(problem) => {
                notes.push(format!("warning: {}: {problem}", entry.name));
                "?".to_string()
            }
            None => DecimalBytes(entry.size).to_string(),
        };
        let modified = match now.duration_since(entry.modified) {
            Ok(age) => format!("{} ago", human_duration(age)),
            Err(ahead) => format!("{} from now", human_duration(ahead.duration())),
        };
        rows.push(vec![name, entry.digest.short().to_string(), size, modified]);
    }
    print_table(&rows);
    if any_ollama {
        eprintln!(
            "(ollama): in Ollama's store, which Hearth only reads; `hearth cp` copies one into \
             Hearth's store"
        );
    }
    for note in notes {
        eprintln!("{note}");
    }
    Ok(())
}

fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// Columns padded to their widest cell, four spaces apart, as `ollama list` prints them.
fn print_table(rows: &[Vec<String>]) {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|col| rows.iter().map(|r| r[col].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", line.join("    ").trim_end());
    }
}

/// The 12 hex digits of a digest that `list` and `ps` show (`sha256:` or not).
fn short_digest(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.chars().take(12).collect()
}

/// `hearth list` from a running server's `/api/tags`.
fn list_on_server(client: &Client) -> Result<()> {
    let tags = client.get("/api/tags")?;
    let now = SystemTime::now();
    let mut rows = vec![header(&["NAME", "ID", "SIZE", "MODIFIED"])];
    for m in tags["models"].as_array().into_iter().flatten() {
        let modified = match m["modified_at"].as_str().and_then(parse_rfc3339) {
            Some(t) => match now.duration_since(t) {
                Ok(age) => format!("{} ago", human_duration(age)),
                Err(ahead) => format!("{} from now", human_duration(ahead.duration())),
            },
            None => "?".into(),
        };
        rows.push(vec![
            m["name"].as_str().unwrap_or("?").to_string(),
            short_digest(m["digest"].as_str().unwrap_or("")),
            DecimalBytes(m["size"].as_u64().unwrap_or(0)).to_string(),
            modified,
        ]);
    }
    print_table(&rows);
    Ok(())
}

/// A pull done by the server (into its store), with its progress drawn here as `hearth pull`
/// draws its own.
pub fn pull_on_server(client: &Client, model: &str, insecure: bool) -> Result<()> {
    let name: Option<ModelName> = model.parse().ok();
    let mut progress = PullProgress::new();
    let mut last_blob = String::new();
    let body = serde_json::json!({"model": model, "insecure": insecure, "stream": true});
    let result = client.stream("/api/pull", &body, |v| {
        let status = v["status"].as_str().unwrap_or("");
        if let Some(digest) = v["digest"].as_str().filter(|d| !d.is_empty()) {
            last_blob = digest.to_string();
            progress.event(&PullEvent::Blob {
                id: digest,
                media_type: "",
                completed: v["completed"].as_u64().unwrap_or(0),
                total: v["total"].as_u64(),
            });
        } else if status.starts_with("pulling manifest") {
            if let Some(name) = &name {
                progress.event(&PullEvent::Manifest { name });
            }
        } else if status.starts_with("verifying") {
            progress.event(&PullEvent::Verifying { id: &last_blob });
        } else if status == "writing manifest" {
            if let Some(name) = &name {
                progress.event(&PullEvent::WritingManifest { name });
            }
        }
        Ok(true)
    });
    progress.finish(result.is_ok());
    result.with_context(|| format!("the server at {} cannot pull {model}", client.base()))
}

#[derive(Args)]
pub struct PsArgs {}

/// `hearth ps`: the models a running server has loaded.
pub fn ps(_: PsArgs) -> Result<()> {
    let client = Client::required()?;
    let loaded = client.get("/api/ps")?;
    let now = SystemTime::now();
    let mut rows = vec![header(&["NAME", "ID", "SIZE", "PROCESSOR", "UNTIL"])];
    for m in loaded["models"].as_array().into_iter().flatten() {
        let size = m["size"].as_u64().unwrap_or(0);
        let vram = m["size_vram"].as_u64().unwrap_or(0).min(size);
        let processor = match (vram, size) {
            (0, _) => "100% CPU".to_string(),
            (v, s) if v == s => "100% GPU".to_string(),
            (v, s) => {
                let gpu = (v * 100 + s / 2) / s;
                format!("{}%/{gpu}% CPU/GPU", 100 - gpu)
            }
        };
        let until = match m["expires_at"].as_str().and_then(parse_rfc3339) {
            // Ollama's "forever" is a date centuries away.
            Some(t) if t > now + Duration::from_secs(100 * 365 * 86400) => "Forever".into(),
            Some(t) => match t.duration_since(now) {
                Ok(left) => format!("{} from now", human_duration(left)),
                Err(_) => "Stopping...".into(),
            },
            None => "?".into(),
        };
        rows.push(vec![
            m["name"].as_str().unwrap_or("?").to_string(),
            short_digest(m["digest"].as_str().unwrap_or("")),
            DecimalBytes(size).to_string(),
            processor,
            until,
        ]);
    }
    print_table(&rows);
    Ok(())
}

#[derive(Args)]
pub struct StopArgs {
    /// The loaded model to unload.
    model: ModelName,
}

/// `hearth stop MODEL`: unloads a model now (a request with `keep_alive: 0`, as Ollama's).
pub fn stop(args: StopArgs) -> Result<()> {
    let client = Client::required()?;
    let loaded = client.get("/api/ps")?;
    let is_it = |m: &serde_json::Value| {
        m["name"]
            .as_str()
            .and_then(|n| n.parse::<ModelName>().ok())
            .is_some_and(|n| n == args.model)
    };
    if !loaded["models"].as_array().into_iter().flatten().any(is_it) {
        bail!(
            "model {} is not loaded; `hearth ps` lists the ones that are",
            args.model
        );
    }
    let body = serde_json::json!({"model": args.model.to_string(), "keep_alive": 0,
        "stream": false});
    client.stream("/api/generate", &body, |_| Ok(true))?;
    Ok(())
}

/// An RFC 3339 time (`2024-06-04T14:38:31.8375-07:00`, `…Z`), as the API writes them.
fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let (date, time) = text.split_once(['T', 't', ' '])?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let zone_at = time.find(['Z', 'z', '+', '-'])?;
    let (clock, zone) = time.split_at(zone_at);
    let mut hms = clock.splitn(3, ':');
    let h: i64 = hms.next()?.parse().ok()?;
    let mi: i64 = hms.next()?.parse().ok()?;
    let sec: f64 = hms.next()?.parse().ok()?;
    let offset = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (oh, om) = zone[1..].split_once(':')?;
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = (days * 86400 + h * 3600 + mi * 60 - offset) as f64 + sec;
    SystemTime::UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(secs).ok()?)
}

/// An age as `ollama list` writes it: "45 seconds", "About a minute", "3 hours", "2 weeks".
fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let hours = (d.as_secs_f64() / 3600.0).round() as u64;
    match seconds {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{seconds} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", seconds / 60),
        _ => match hours {
            1 => "About an hour".into(),
            2..=47 => format!("{hours} hours"),
            48..=335 => format!("{} days", hours / 24),
            336..=1439 => format!("{} weeks", hours / 24 / 7),
            1440..=17519 => format!("{} months", hours / 24 / 30),
            _ => format!("{} years", hours / 24 / 365),
        },
    }
}

#[derive(Args)]
pub struct RmArgs {
    /// The models to remove.
    #[arg(required = true)]
    names: Vec<ModelName>,
    #[command(flatten)]
    store: StoreArgs,
}

/// Removes each model in turn and stops at the first that cannot be removed, as `ollama rm`.
pub fn rm(args: RmArgs) -> Result<()> {
    let store = args.store.open()?;
    for name in &args.names {
        let report = store.remove(name).map_err(|e| match e {
            StoreError::NotInStore { .. } => {
                anyhow!("model {name} is not installed; `hearth list` shows the models that are")
            }
            e => e.into(),
        })?;
        println!(
            "deleted {name} (freed {})",
            DecimalBytes(report.freed_bytes)
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct CpArgs {
    /// The model to copy.
    source: ModelName,
    /// Its new name (the files are shared, not copied).
    destination: ModelName,
    #[command(flatten)]
    store: StoreArgs,
}

pub fn cp(args: CpArgs) -> Result<()> {
    args.store.open()?.copy(&args.source, &args.destination)?;
    println!("copied {} to {}", args.source, args.destination);
    Ok(())
}

#[derive(Args)]
pub struct CreateArgs {
    /// The new model's name.
    name: ModelName,
    /// The Modelfile: FROM (a .gguf path or a model), PARAMETER, TEMPLATE (Jinja), SYSTEM,
    /// MESSAGE, LICENSE.
    #[arg(short, long, value_name = "PATH", default_value = "Modelfile")]
    file: PathBuf,
    /// Convert a Hugging Face model directory (config.json, model.safetensors, tokenizer.json;
    /// BERT embedding models) instead of reading a Modelfile
    #[arg(long, value_name = "DIR", conflicts_with = "file")]
    from: Option<PathBuf>,
    /// With -f: re-quantize the FROM model's weights (F32, F16, BF16 or Q8_0) into q8_0, q4_0,
    /// q4_K_M or q5_K_M, with llama.cpp's per-tensor choices. With --from: f32, f16 (the
    /// default) or q8_0
    #[arg(short, long, value_name = "TYPE")]
    quantize: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

pub fn create(args: CreateArgs) -> Result<()> {
    if let Some(dir) = &args.from {
        return create_converted(&args, dir);
    }
    let target = match &args.quantize {
        Some(q) => Some(q.parse::<quantize::Target>()?),
        None => None,
    };
    let text = std::fs::read_to_string(&args.file).with_context(|| {
        format!(
            "cannot read the Modelfile {} (give its path with -f)",
            args.file.display()
        )
    })?;
    let modelfile = Modelfile::parse(&text)
        .with_context(|| format!("{} is not a valid Modelfile", args.file.display()))?;
    if let Some(template) = &modelfile.template {
        if is_go_template(template) {
            eprintln!(
                "note: the TEMPLATE is an Ollama Go template, which Hearth does not render: \
                 `hearth run` will use the GGUF file's own chat template"
            );
        } else if let Err(e) = chat::ChatTemplate::new(template, "", "") {
            // Found now rather than at the first run.
            bail!(
                "the TEMPLATE in {} is not a valid Jinja chat template: {e}",
                args.file.display()
            );
        }
    }
    let dir = args.file.parent().unwrap_or(std::path::Path::new(""));
    let store = args.store.open()?;
    eprintln!("creating {} from {}", args.name, modelfile.from);
    match target {
        None => store.create(&args.name, &modelfile, dir)?,
        Some(target) => {
            let mut convert = |src: &std::path::Path, dst: &std::path::Path| {
                requantize(src, dst, target).map_err(Into::into)
            };
            store.create_converted(&args.name, &modelfile, dir, &mut convert)?
        }
    }
    eprintln!("success");
    Ok(())
}

/// `hearth create NAME --from DIR`: converts the Hugging Face model directory into a temporary
/// GGUF file in the store's directory (so importing links it rather than copying) and imports
/// that.
fn create_converted(args: &CreateArgs, dir: &Path) -> Result<()> {
    let ftype = match &args.quantize {
        Some(q) => q.parse::<convert::FileType>()?,
        None => convert::FileType::F16,
    };
    let store = args.store.open()?;
    std::fs::create_dir_all(store.root())
        .with_context(|| format!("cannot create the model store {}", store.root().display()))?;
    let tmp = TempFile(
        store
            .root()
            .join(format!(".hearth-create-{}.gguf", std::process::id())),
    );
    eprintln!("converting {} to {ftype}", dir.display());
    let options = convert::Options { ftype, name: None };
    let summary = convert::convert_dir(dir, &tmp.0, &options)
        .with_context(|| format!("cannot convert {}", dir.display()))?;
    eprintln!(
        "converted {}: {} tensors, {}",
        summary.architecture,
        summary.tensors,
        DecimalBytes(summary.bytes)
    );
    eprintln!("creating {}", args.name);
    store.import(&args.name, &tmp.0)?;
    eprintln!("success");
    Ok(())
}

/// A temporary file, removed when dropped (whether or not it was written).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `hearth create --quantize`: one bar step per tensor, then the sizes.
fn requantize(
    src: &std::path::Path,
    dst: &std::path::Path,
    target: quantize::Target,
) -> Result<(), quantize::QuantizeError> {
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "quantizing {percent:>3}% [{wide_bar}] {pos}/{len} tensors {msg}",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    let report = quantize::quantize_file(src, dst, target, &mut |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        bar.set_message(p.tensor.name.clone());
    });
    bar.finish_and_clear();
    let report = report?;
    eprintln!(
        "quantized to {}: {} -> {}",
        target.name(),
        indicatif::DecimalBytes(report.src_bytes),
        indicatif::DecimalBytes(report.dst_bytes)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_ollama_list() {
        let secs = Duration::from_secs;
        for (age, want) in [
            (secs(0), "Less than a second"),
            (secs(30), "30 seconds"),
            (secs(90), "About a minute"),
            (secs(600), "10 minutes"),
            (secs(3600), "About an hour"),
            (secs(5 * 3600), "5 hours"),
            (secs(3 * 86400), "3 days"),
            (secs(21 * 86400), "3 weeks"),
            (secs(100 * 86400), "3 months"),
            (secs(800 * 86400), "2 years"),
        ] {
            assert_eq!(human_duration(age), want);
        }
    }

    #[test]
    fn rfc3339_times_with_any_offset() {
        let at = |s| parse_rfc3339(s).map(|t| t.duration_since(SystemTime::UNIX_EPOCH).unwrap());
        assert_eq!(at("1970-01-01T00:00:00Z"), Some(Duration::ZERO));
        assert_eq!(
            at("2024-06-04T14:38:31Z"),
            Some(Duration::from_secs(1717511911))
        );
        assert_eq!(
            at("2024-06-04T07:38:31.5-07:00"),
            Some(Duration::from_secs_f64(1717511911.5))
        );
        assert_eq!(at("2024-06-04"), None);
        assert_eq!(at("1969-12-31T23:59:59Z"), None);
    }
}
