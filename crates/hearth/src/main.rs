//! `hearth`: run open-weight language models on your own machine.
//!
//! A thin command line over the library crates: `run` (one answer or an interactive chat),
//! `tokenize`, `show` and `bench`. The model store, the server and the rest come in later commands.

mod bench;
mod run;
mod show;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
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
        /// Path to a .gguf model file.
        model: PathBuf,
        text: String,
        /// Add no BOS/EOS and treat special-token text as plain text.
        #[arg(long)]
        no_special: bool,
    },
    /// Print a model's architecture, size, quantization, context length and chat template.
    Show {
        /// Path to a .gguf model file.
        model: PathBuf,
    },
    /// Measure prompt and generation speed like llama.cpp's llama-bench.
    Bench(bench::BenchArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Tokenize {
            model,
            text,
            no_special,
        } => tokenize(&model, &text, no_special),
        Command::Show { model } => show::show(&model),
        Command::Bench(args) => bench::bench(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn open(path: &Path) -> Result<gguf::Gguf> {
    gguf::Gguf::open(path).with_context(|| format!("cannot load {}", path.display()))
}

fn tokenize(model: &Path, text: &str, no_special: bool) -> Result<()> {
    let g = open(model)?;
    let tok = tokenizer::Tokenizer::from_gguf(&g)?;
    let ids = tok.encode(text, !no_special, !no_special);
    println!("{}", serde_json::to_string(&ids)?);
    Ok(())
}
