//! `hearth`: run open-weight language models on your own machine.
//!
//! A thin command line over the library crates: `run` (one answer or an interactive chat),
//! `tokenize`, `show` and `bench` on a .gguf file or a model in the store, and the store's own
//! commands `pull`, `list`, `rm`, `cp` and `create`; `serve`, the API server, and its clients
//! `ps` and `stop` (`run`, `pull` and `list` also go through a server when one answers), and
//! `backup` of the web app's database.

mod bench;
mod client;
mod manage;
mod modelfile;
mod models;
mod progress;
mod run;
mod serve;
mod show;

use anyhow::{Context, Result};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};
use engine::KvType;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "hearth",
    version,
    about = "Run open-weight language models on your own machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Chat with a model: answer PROMPT and exit, or start an interactive chat without one.
    Run(run::RunArgs),
    /// Print the token ids of TEXT as a JSON array.
    Tokenize {
        /// A model in the store (NAME), or a .gguf file.
        model: PathBuf,
        text: String,
        /// Add no BOS/EOS and treat special-token text as plain text.
        #[arg(long)]
        no_special: bool,
        #[command(flatten)]
        store: models::StoreArgs,
    },
    /// Print what a model is: architecture, size, quantization, template, parameters…
    Show(show::ShowArgs),
    /// Measure prompt and generation speed like llama.cpp's llama-bench.
    Bench(bench::BenchArgs),
    /// Download a model from a registry (Ollama's, hf.co, or any that speaks the same protocol)
    /// or a .gguf file from a URL into the store, verifying every byte.
    Pull(manage::PullArgs),
    /// List the models in the store (and in Ollama's, which Hearth reads).
    #[command(alias = "ls")]
    List(manage::ListArgs),
    /// Remove models from the store, and the files no other model uses.
    Rm(manage::RmArgs),
    /// Copy a model under a new name.
    Cp(manage::CpArgs),
    /// Create a model from a Modelfile, or from a Hugging Face directory (--from).
    Create(manage::CreateArgs),
    /// List the models a running server has loaded (the server at HEARTH_HOST).
    Ps(manage::PsArgs),
    /// Unload a model from a running server now.
    Stop(manage::StopArgs),
    /// Serve the web app and the Ollama and OpenAI APIs (on 127.0.0.1:11434 unless told
    /// otherwise).
    Serve(serve::ServeArgs),
    /// Copy the web app's database (chats, users, settings, usage) to a file, safely while the
    /// server runs.
    Backup(serve::BackupArgs),
}

fn main() {
    let cli = Cli::parse_from(llama_short_options(std::env::args_os()));
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Tokenize {
            model,
            text,
            no_special,
            store,
        } => tokenize(&model, &text, no_special, &store),
        Command::Show(args) => show::show(args),
        Command::Bench(args) => bench::bench(args),
        Command::Pull(args) => manage::pull(args),
        Command::List(args) => manage::list(args),
        Command::Rm(args) => manage::rm(args),
        Command::Cp(args) => manage::cp(args),
        Command::Create(args) => manage::create(args),
        Command::Ps(args) => manage::ps(args),
        Command::Stop(args) => manage::stop(args),
        Command::Serve(args) => serve::serve(args),
        Command::Backup(args) => serve::backup(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// llama.cpp's options of several letters after one dash, which clap cannot declare (it would
/// read `-ctk` as `-c -t -k`), with the long names they stand for.
const LLAMA_SHORT_OPTIONS: [(&str, &str); 2] =
    [("-ctk", "--cache-type-k"), ("-ctv", "--cache-type-v")];

/// The command line with llama.cpp's `-ctk`/`-ctv` written as `--cache-type-k`/`--cache-type-v`,
/// up to a `--` (after which everything is prompt text, kept as it is).
fn llama_short_options(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut options = true;
    args.into_iter()
        .map(|arg| {
            options &= arg != "--";
            match LLAMA_SHORT_OPTIONS.iter().find(|(short, _)| arg == *short) {
                Some((_, long)) if options => OsString::from(long),
                _ => arg,
            }
        })
        .collect()
}

/// Parses a KV cache type by its llama.cpp name (`f16`, `q8_0`); clap lists the names in the
/// help and in the error for any other value.
fn kv_type_parser() -> impl TypedValueParser<Value = KvType> {
    PossibleValuesParser::new(KvType::ALL.map(KvType::name))
        .map(|name| name.parse().expect("every possible value names a type"))
}

fn open(path: &Path) -> Result<gguf::Gguf> {
    gguf::Gguf::open(path).with_context(|| format!("cannot load {}", path.display()))
}

fn tokenize(model: &Path, text: &str, no_special: bool, store: &models::StoreArgs) -> Result<()> {
    let g = models::load(model, store, models::IfMissing::Fail)?.gguf;
    let tok = tokenizer::Tokenizer::from_gguf(&g)?;
    let ids = tok.encode(text, !no_special, !no_special);
    println!("{}", serde_json::to_string(&ids)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn llama_short_options_become_long_ones_before_a_double_dash() {
        let got = llama_short_options(args(&[
            "hearth", "bench", "m.gguf", "-ctk", "q8_0", "-ctv", "f16", "-t", "2",
        ]));
        let want = args(&[
            "hearth",
            "bench",
            "m.gguf",
            "--cache-type-k",
            "q8_0",
            "--cache-type-v",
            "f16",
            "-t",
            "2",
        ]);
        assert_eq!(got, want);
        let prompt = args(&["hearth", "run", "m.gguf", "--", "-ctk", "is", "text"]);
        assert_eq!(llama_short_options(prompt.clone()), prompt);
    }
}
