//! `hearth run`: one answer to a prompt, or an interactive chat.

use anyhow::{bail, Context, Result};
use clap::Args;
use engine::{
    GenerateOptions, GenerationStats, KvType, Message, Model, Sampler, SamplerConfig, Session,
};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Args)]
pub struct RunArgs {
    /// Path to a .gguf model file.
    model: PathBuf,
    /// The prompt, its words joined by spaces; options may come before or after it. Write it
    /// after `--` when it starts with a dash (`hearth run MODEL --raw -- "-1 is negative"`).
    /// Without one (and with a terminal on standard input) an interactive chat starts.
    prompt: Vec<String>,
    /// Randomness of sampling; 0 always picks the most likely token.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Sample from the K most likely tokens only (0: all).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Sample from the smallest set of tokens whose probability adds up to P (1: off).
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Drop tokens less likely than P times the most likely one (0: off).
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// Penalize repeating recent tokens (1: off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// How many recent tokens the penalties look at.
    #[arg(long, default_value_t = 64)]
    repeat_last_n: usize,
    #[arg(long, default_value_t = 0.0)]
    presence_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    frequency_penalty: f32,
    /// Random seed: the same seed and input give the same output (default: a fresh one).
    #[arg(long)]
    seed: Option<u64>,
    /// Maximum number of tokens to generate (-1: until the model stops or the context is full).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    num_predict: i64,
    /// Context size in tokens (default: the model's, at most 4096).
    #[arg(long)]
    ctx_size: Option<usize>,
    /// Threads to compute with (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// How the KV cache stores keys (also -ctk, as llama.cpp): f16, or q8_0 for 34 bytes per 32
    /// values instead of 64, at a small cost in exactness. Default: the environment variable
    /// HEARTH_KV_CACHE_TYPE (like Ollama's OLLAMA_KV_CACHE_TYPE; it sets keys and values), else f16.
    #[arg(long, value_name = "TYPE", value_parser = crate::kv_type_parser())]
    cache_type_k: Option<KvType>,
    /// How the KV cache stores values (also -ctv): f16 or q8_0, as --cache-type-k.
    #[arg(long, value_name = "TYPE", value_parser = crate::kv_type_parser())]
    cache_type_v: Option<KvType>,
    /// System message.
    #[arg(long)]
    system: Option<String>,
    /// Stop when this text is generated (may be repeated).
    #[arg(long)]
    stop: Vec<String>,
    /// No chat template: continue the prompt exactly as `hearth tokenize` tokenizes it.
    #[arg(long)]
    raw: bool,
    /// Print load time and speeds to standard error.
    #[arg(long)]
    verbose: bool,
}

impl RunArgs {
    fn sampler_config(&self) -> SamplerConfig {
        let seed = self.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
        SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            penalty_last_n: self.repeat_last_n,
            seed,
        }
    }

    fn generate_options(&self) -> GenerateOptions {
        GenerateOptions {
            max_tokens: usize::try_from(self.num_predict).ok(),
            stop: self.stop.clone(),
        }
    }
}

pub fn run(args: RunArgs) -> Result<()> {
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    let env_type = env_kv_type()?;
    let type_k = args.cache_type_k.or(env_type).unwrap_or_default();
    let type_v = args.cache_type_v.or(env_type).unwrap_or_default();
    let t0 = Instant::now();
    let model = Model::load(&args.model, threads)
        .with_context(|| format!("cannot load {}", args.model.display()))?;
    let load_time = t0.elapsed();
    let n_ctx = args
        .ctx_size
        .unwrap_or_else(|| model.hparams.n_ctx_train.min(4096));
    if n_ctx == 0 {
        bail!("--ctx-size must be at least 1");
    }
    if args.verbose {
        eprintln!(
            "loaded {} ({}) in {:.2} s; {} threads, {} kernels, context {}",
            args.model.display(),
            model.hparams.arch.name(),
            load_time.as_secs_f64(),
            model.n_threads(),
            kernels::cpu_features(),
            n_ctx
        );
    }
    let mut session = Session::with_cache_types(&model, n_ctx, type_k, type_v)?;
    if args.verbose {
        eprintln!(
            "KV cache: keys {type_k}, values {type_v}, {:.2} MiB for {n_ctx} positions",
            session.cache().bytes() as f64 / (1024.0 * 1024.0)
        );
    }

    let mut prompt = args.prompt.join(" ");
    if prompt.is_empty() && !std::io::stdin().is_terminal() {
        std::io::stdin()
            .read_to_string(&mut prompt)
            .context("cannot read the prompt from standard input")?;
    }
    if prompt.is_empty() {
        return interactive(&args, &model, &mut session);
    }
    let tokens = if args.raw {
        model.tokenizer.encode(&prompt, true, true)
    } else {
        let mut messages = Vec::new();
        if let Some(s) = &args.system {
            messages.push(message("system", s));
        }
        messages.push(message("user", &prompt));
        model.chat_tokens(&messages, true)?
    };
    let mut sampler = Sampler::new(args.sampler_config());
    let mut out = std::io::stdout().lock();
    let stats = session.generate(&tokens, &mut sampler, &args.generate_options(), |text| {
        out.write_all(text.as_bytes()).is_ok() && out.flush().is_ok()
    })?;
    if !args.raw {
        println!();
    }
    if args.verbose {
        report(&stats);
    }
    Ok(())
}

/// The cache type `HEARTH_KV_CACHE_TYPE` names for both keys and values (unset or empty: none).
fn env_kv_type() -> Result<Option<KvType>> {
    const VAR: &str = "HEARTH_KV_CACHE_TYPE";
    match std::env::var(VAR) {
        Ok(name) if name.is_empty() => Ok(None),
        Ok(name) => Ok(Some(name.parse().with_context(|| format!("{VAR}={name}"))?)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(e).context(VAR),
    }
}

fn message(role: &str, content: &str) -> Message {
    Message {
        role: role.to_string(),
        content: content.to_string(),
    }
}

fn report(s: &GenerationStats) {
    let rate = |n: usize, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let (pt, gt) = (s.prompt_time.as_secs_f64(), s.generation_time.as_secs_f64());
    eprintln!(
        "prompt eval: {} tokens in {:.3} s, {:.1} tokens/s",
        s.prompt_tokens,
        pt,
        rate(s.prompt_tokens, pt)
    );
    eprintln!(
        "generation:  {} tokens in {:.3} s, {:.1} tokens/s ({:?})",
        s.generated_tokens,
        gt,
        rate(s.generated_tokens, gt),
        s.stop
    );
}

const HELP: &str = "Commands:
  /set parameter NAME VALUE   temperature, top_k, top_p, min_p, repeat_penalty,
                              repeat_last_n, presence_penalty, frequency_penalty,
                              seed, num_predict
  /set system TEXT            set the system message (clears the conversation)
  /clear                      forget the conversation
  /bye                        exit
  \"\"\"                         begin or end multi-line input
Ctrl-C stops the current answer.";

fn interactive(args: &RunArgs, model: &Model, session: &mut Session) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("cannot install the Ctrl-C handler")?;
    }
    let mut cfg = args.sampler_config();
    let mut opts = args.generate_options();
    let mut system = args.system.clone();
    let mut history: Vec<Message> = Vec::new();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    eprintln!("Type a message, /? for help, /bye to exit.");
    loop {
        eprint!(">>> ");
        let Some(line) = lines.next() else { break };
        let line = line?;
        if stop.swap(false, Ordering::SeqCst) && line.is_empty() {
            eprintln!("Use Ctrl-D or /bye to exit.");
            continue;
        }
        let mut input = line.clone();
        if let Some(first) = line.trim_start().strip_prefix("\"\"\"") {
            input = first.to_string();
            if !first.trim_end().ends_with("\"\"\"") {
                for more in lines.by_ref() {
                    let more = more?;
                    input.push('\n');
                    input.push_str(&more);
                    if more.trim_end().ends_with("\"\"\"") {
                        break;
                    }
                }
            }
            input = input.trim_end().trim_end_matches("\"\"\"").to_string();
        }
        let trimmed = input.trim();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(cmd) = trimmed.strip_prefix('/') {
            let words: Vec<&str> = cmd.split_whitespace().collect();
            match words.as_slice() {
                ["bye"] | ["exit"] => break,
                ["clear"] => {
                    history.clear();
                    session.clear();
                    eprintln!("Cleared the conversation.");
                }
                ["?"] | ["help"] => eprintln!("{HELP}"),
                ["set", "system", ..] => {
                    let text =
                        cmd.trim_start()["set".len()..].trim_start()["system".len()..].trim();
                    system = Some(text.to_string());
                    history.clear();
                    eprintln!("Set the system message.");
                }
                ["set", "parameter", name, value] => {
                    match set_parameter(&mut cfg, &mut opts, name, value) {
                        Ok(()) => eprintln!("Set parameter '{name}' to '{value}'."),
                        Err(e) => eprintln!("error: {e}"),
                    }
                }
                _ => eprintln!("Unknown command '/{cmd}'. Type /? for help."),
            }
            continue;
        }
        history.push(message("user", trimmed));
        let mut messages = Vec::new();
        if let Some(s) = &system {
            messages.push(message("system", s));
        }
        messages.extend(history.iter().cloned());
        let tokens = match model.chat_tokens(&messages, true) {
            Ok(t) => t,
            Err(e) => {
                history.pop();
                eprintln!("error: {e}");
                continue;
            }
        };
        let mut sampler = Sampler::new(cfg.clone());
        cfg.seed = cfg.seed.wrapping_add(1);
        let mut answer = String::new();
        let mut out = std::io::stdout().lock();
        stop.store(false, Ordering::SeqCst);
        let result = session.generate(&tokens, &mut sampler, &opts, |text| {
            answer.push_str(text);
            let ok = out.write_all(text.as_bytes()).is_ok() && out.flush().is_ok();
            ok && !stop.load(Ordering::SeqCst)
        });
        println!();
        match result {
            Ok(stats) => {
                history.push(message("assistant", &answer));
                if args.verbose {
                    report(&stats);
                }
            }
            Err(e) => {
                history.pop();
                eprintln!("error: {e}");
            }
        }
    }
    Ok(())
}

fn set_parameter(
    cfg: &mut SamplerConfig,
    opts: &mut GenerateOptions,
    name: &str,
    value: &str,
) -> Result<()> {
    let f = || value.parse::<f32>().context("expected a number");
    let u = || value.parse::<usize>().context("expected a whole number");
    match name {
        "temperature" => cfg.temperature = f()?,
        "top_k" => cfg.top_k = u()?,
        "top_p" => cfg.top_p = f()?,
        "min_p" => cfg.min_p = f()?,
        "repeat_penalty" => cfg.repeat_penalty = f()?,
        "repeat_last_n" => cfg.penalty_last_n = u()?,
        "presence_penalty" => cfg.presence_penalty = f()?,
        "frequency_penalty" => cfg.frequency_penalty = f()?,
        "seed" => cfg.seed = value.parse().context("expected a whole number")?,
        "num_predict" => {
            let n: i64 = value.parse().context("expected a whole number")?;
            opts.max_tokens = usize::try_from(n).ok();
        }
        other => bail!("unknown parameter '{other}'; type /? for the list"),
    }
    Ok(())
}
