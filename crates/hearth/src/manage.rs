//! The model store's commands: `pull`, `list`, `rm`, `cp` and `create`.

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use indicatif::DecimalBytes;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use store::{ModelName, Modelfile, PullSource, Source, StoreError};

use crate::models::{is_go_template, StoreArgs};

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
    let store = args.store.open()?;
    let now = SystemTime::now();
    let mut rows = vec![[
        "NAME".to_string(),
        "ID".into(),
        "SIZE".into(),
        "MODIFIED".into(),
    ]];
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
        rows.push([name, entry.digest.short().to_string(), size, modified]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|col| rows.iter().map(|r| r[col].len()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", line.join("    ").trim_end());
    }
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
    /// Re-quantize the FROM model's weights (F32, F16, BF16 or Q8_0) into q8_0, q4_0, q4_K_M or
    /// q5_K_M, with llama.cpp's per-tensor choices
    #[arg(short, long, value_name = "TYPE")]
    quantize: Option<quantize::Target>,
    #[command(flatten)]
    store: StoreArgs,
}

pub fn create(args: CreateArgs) -> Result<()> {
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
    match args.quantize {
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
}
