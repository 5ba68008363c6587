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

use crate::client::Client;
use crate::models::{self, is_go_template, IfMissing, ModelRef, StoreArgs};

#[derive(Args)]
pub struct RunArgs {
    /// A model in the store (NAME; pulled first if it is not there), or a .gguf file.
    model: PathBuf,
    /// The prompt, its words joined by spaces; options may come before or after it. Write it
    /// after `--` when it starts with a dash (`hearth run MODEL --raw -- "-1 is negative"`).
    /// Without one (and with a terminal on standard input) an interactive chat starts.
    prompt: Vec<String>,
    /// Randomness of sampling; 0 always picks the most likely token [default: the model's
    /// PARAMETER, else 0.8; the same for the options below].
    #[arg(long)]
    temperature: Option<f32>,
    /// Sample from the K most likely tokens only (0: all) [default: 40].
    #[arg(long)]
    top_k: Option<usize>,
    /// Sample from the smallest set of tokens whose probability adds up to P (1: off)
    /// [default: 0.95].
    #[arg(long)]
    top_p: Option<f32>,
    /// Drop tokens less likely than P times the most likely one (0: off) [default: 0.05].
    #[arg(long)]
    min_p: Option<f32>,
    /// Penalize repeating recent tokens (1: off) [default: 1].
    #[arg(long)]
    repeat_penalty: Option<f32>,
    /// How many recent tokens the penalties look at [default: 64].
    #[arg(long)]
    repeat_last_n: Option<usize>,
    /// Penalize tokens that appeared at all among the recent ones (0: off) [default: 0].
    #[arg(long)]
    presence_penalty: Option<f32>,
    /// Penalize tokens by how often they appeared among the recent ones (0: off) [default: 0].
    #[arg(long)]
    frequency_penalty: Option<f32>,
    /// Random seed: the same seed and input give the same output [default: the model's, else a
    /// fresh one].
    #[arg(long)]
    seed: Option<u64>,
    /// Maximum number of tokens to generate (-1: until the model stops or the context is full)
    /// [default: -1].
    #[arg(long, allow_hyphen_values = true)]
    num_predict: Option<i64>,
    /// Context size in tokens (default: the model's num_ctx, else its training context, at most
    /// 4096).
    #[arg(long)]
    ctx_size: Option<usize>,
    /// Threads to compute with (default: the model's num_thread, else all cores).
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
    /// System message (default: the model's SYSTEM).
    #[arg(long)]
    system: Option<String>,
    /// Stop when this text is generated (may be repeated; default: the model's stop parameters).
    #[arg(long)]
    stop: Vec<String>,
    /// No chat template: continue the prompt exactly as `hearth tokenize` tokenizes it.
    #[arg(long)]
    raw: bool,
    /// Print load time and speeds to standard error.
    #[arg(long)]
    verbose: bool,
    /// Allow plain http when the model must be pulled first (a self-hosted registry).
    #[arg(long)]
    insecure: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// What a run uses: the engine's defaults, overridden by the model's parameters, overridden by
/// the options given on the command line.
struct Settings {
    sampler: SamplerConfig,
    generate: GenerateOptions,
    n_ctx: Option<usize>,
    threads: Option<usize>,
    /// The model's parameters that Hearth has no use for (Ollama's `mirostat`, `num_gpu`…).
    unused: Vec<String>,
}

impl RunArgs {
    fn settings(&self, params: &serde_json::Map<String, serde_json::Value>) -> Result<Settings> {
        let mut sampler = SamplerConfig {
            seed: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
            ..SamplerConfig::default()
        };
        let mut generate = GenerateOptions::default();
        let (mut n_ctx, mut threads, mut unused) = (None, None, Vec::new());
        for (name, value) in params {
            let bad = || format!("the model's PARAMETER {name} {value} is not usable");
            let count = || {
                value
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .with_context(|| format!("{}: it must be a whole number", bad()))
            };
            match name.as_str() {
                "stop" => {
                    generate.stop = crate::modelfile::values(value)
                        .iter()
                        .map(|v| v.as_str().map(str::to_string))
                        .collect::<Option<_>>()
                        .with_context(|| format!("{}: stops are strings", bad()))?;
                }
                "num_ctx" => n_ctx = Some(count()?),
                "num_thread" => threads = Some(count()?),
                // Ollama's -1: a fresh seed each run.
                "seed" if value.as_i64().is_some_and(|s| s < 0) => {}
                "seed" => sampler.seed = value.as_u64().with_context(bad)?,
                name if SAMPLER_PARAMETERS.contains(&name) => {
                    set_parameter(&mut sampler, &mut generate, name, &value.to_string())
                        .with_context(bad)?
                }
                _ => unused.push(name.clone()),
            }
        }
        let s = &mut sampler;
        s.temperature = self.temperature.unwrap_or(s.temperature);
        s.top_k = self.top_k.unwrap_or(s.top_k);
        s.top_p = self.top_p.unwrap_or(s.top_p);
        s.min_p = self.min_p.unwrap_or(s.min_p);
        s.repeat_penalty = self.repeat_penalty.unwrap_or(s.repeat_penalty);
        s.penalty_last_n = self.repeat_last_n.unwrap_or(s.penalty_last_n);
        s.presence_penalty = self.presence_penalty.unwrap_or(s.presence_penalty);
        s.frequency_penalty = self.frequency_penalty.unwrap_or(s.frequency_penalty);
        s.seed = self.seed.unwrap_or(s.seed);
        if let Some(n) = self.num_predict {
            generate.max_tokens = usize::try_from(n).ok();
        }
        if !self.stop.is_empty() {
            generate.stop = self.stop.clone();
        }
        Ok(Settings {
            sampler,
            generate,
            n_ctx: self.ctx_size.or(n_ctx),
            threads: self.threads.or(threads),
            unused,
        })
    }
}

pub fn run(args: RunArgs) -> Result<()> {
    if let Some(client) = server_for(&args)? {
        return run_on_server(&args, &client);
    }
    let insecure = args.insecure;
    let loaded = models::load(&args.model, &args.store, IfMissing::Pull { insecure })?;
    let stored = loaded.stored.as_ref();
    let no_params = serde_json::Map::new();
    let settings = args.settings(stored.map_or(&no_params, |s| &s.params))?;
    let threads = settings.threads.unwrap_or_else(|| {
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
    let mut model = Model::from_gguf(loaded.gguf, threads)
        .with_context(|| format!("cannot load {}", loaded.label))?;
    let load_time = t0.elapsed();
    let n_ctx = settings
        .n_ctx
        .unwrap_or_else(|| model.hparams.n_ctx_train.min(4096));
    if n_ctx == 0 {
        bail!("--ctx-size must be at least 1");
    }
    if args.verbose {
        eprintln!(
            "loaded {} ({}) in {:.2} s; {} threads, {} kernels, context {}",
            loaded.label,
            model.hparams.arch.name(),
            load_time.as_secs_f64(),
            model.n_threads(),
            kernels::cpu_features(),
            n_ctx
        );
        if !settings.unused.is_empty() {
            eprintln!(
                "the model's parameters {} do not apply to Hearth and are ignored",
                settings.unused.join(", ")
            );
        }
    }
    if let Some(template) = stored.and_then(|s| s.template.as_deref()) {
        use_template(&mut model, template, args.verbose)
            .with_context(|| format!("the TEMPLATE of {} cannot be used", loaded.label))?;
    }
    let mut session = Session::with_cache_types(&model, n_ctx, type_k, type_v)?;
    if args.verbose {
        eprintln!(
            "KV cache: keys {type_k}, values {type_v}, {:.2} MiB for {n_ctx} positions",
            session.cache().bytes() as f64 / (1024.0 * 1024.0)
        );
    }
    let chat = Chat {
        system: args
            .system
            .clone()
            .or_else(|| stored.and_then(|s| s.system.clone())),
        preamble: stored.map_or(Vec::new(), |s| {
            s.messages
                .iter()
                .map(|m| message(&m.role, &m.content))
                .collect()
        }),
    };

    let mut prompt = args.prompt.join(" ");
    if prompt.is_empty() && !std::io::stdin().is_terminal() {
        std::io::stdin()
            .read_to_string(&mut prompt)
            .context("cannot read the prompt from standard input")?;
    }
    if prompt.is_empty() {
        return interactive(&args, settings, chat, &model, &mut session);
    }
    let tokens = if args.raw {
        model.tokenizer.encode(&prompt, true, true)
    } else {
        model.chat_tokens(&chat.messages(&[message("user", &prompt)]), true)?
    };
    let mut sampler = Sampler::new(settings.sampler);
    let mut out = std::io::stdout().lock();
    let stats = session.generate(&tokens, &mut sampler, &settings.generate, |text| {
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

/// A model's TEMPLATE layer replaces the GGUF's chat template when it is Jinja (written by
/// `hearth create`); a Go template (from Ollama's registry) cannot be rendered, and the GGUF's
/// own template, which such models also carry, is kept.
fn use_template(model: &mut Model, template: &str, verbose: bool) -> Result<()> {
    if is_go_template(template) {
        if verbose {
            eprintln!(
                "template: the model's TEMPLATE is an Ollama Go template, which Hearth does not \
                 render; using the GGUF's chat template"
            );
        }
        return Ok(());
    }
    model.set_template(template)?;
    if verbose {
        eprintln!("template: the model's TEMPLATE");
    }
    Ok(())
}

/// What every chat turn starts with: the system message, then the model's few-shot messages.
struct Chat {
    system: Option<String>,
    preamble: Vec<Message>,
}

impl Chat {
    fn messages(&self, conversation: &[Message]) -> Vec<Message> {
        let system = self.system.iter().map(|s| message("system", s));
        system
            .chain(self.preamble.iter().cloned())
            .chain(conversation.iter().cloned())
            .collect()
    }
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
    Message::new(role, content)
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

fn interactive(
    args: &RunArgs,
    settings: Settings,
    mut chat: Chat,
    model: &Model,
    session: &mut Session,
) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("cannot install the Ctrl-C handler")?;
    }
    let (mut cfg, mut opts) = (settings.sampler, settings.generate);
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
                    chat.system = Some(text.to_string());
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
        let tokens = match model.chat_tokens(&chat.messages(&history), true) {
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

/// The options [`set_parameter`] sets (besides `seed`, which a model's parameters may leave
/// random).
const SAMPLER_PARAMETERS: [&str; 9] = [
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repeat_penalty",
    "repeat_last_n",
    "presence_penalty",
    "frequency_penalty",
    "num_predict",
];

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

/// The running server to ask, as the Ollama CLI does: when one answers and the model is a name
/// (a .gguf file, `--models DIR` and the KV cache types are this process's business, not the
/// server's, so they run here).
fn server_for(args: &RunArgs) -> Result<Option<Client>> {
    if matches!(ModelRef::parse(&args.model)?, ModelRef::File(_))
        || args.store.explicit()
        || args.cache_type_k.is_some()
        || args.cache_type_v.is_some()
    {
        return Ok(None);
    }
    Ok(Client::running())
}

impl RunArgs {
    /// The options given on the command line, by their names in the API; the server applies
    /// the model's own parameters under them.
    fn server_options(&self) -> serde_json::Value {
        let mut o = serde_json::Map::new();
        let mut put = |name: &str, value: Option<serde_json::Value>| {
            if let Some(v) = value {
                o.insert(name.to_string(), v);
            }
        };
        put("temperature", self.temperature.map(Into::into));
        put("top_k", self.top_k.map(Into::into));
        put("top_p", self.top_p.map(Into::into));
        put("min_p", self.min_p.map(Into::into));
        put("repeat_penalty", self.repeat_penalty.map(Into::into));
        put("repeat_last_n", self.repeat_last_n.map(Into::into));
        put("presence_penalty", self.presence_penalty.map(Into::into));
        put("frequency_penalty", self.frequency_penalty.map(Into::into));
        put("seed", self.seed.map(Into::into));
        put("num_predict", self.num_predict.map(Into::into));
        put("num_ctx", self.ctx_size.map(Into::into));
        put("num_thread", self.threads.map(Into::into));
        if !self.stop.is_empty() {
            put("stop", Some(self.stop.clone().into()));
        }
        o.into()
    }
}

/// `hearth run` through a running server: the model is pulled there if it is missing, and the
/// answer streams from `/api/chat` (`/api/generate` with `--raw`).
fn run_on_server(args: &RunArgs, client: &Client) -> Result<()> {
    let name = args.model.to_string_lossy().into_owned();
    if !client.has_model(&name)? {
        crate::manage::pull_on_server(client, &name, args.insecure)?;
    }
    let mut prompt = args.prompt.join(" ");
    if prompt.is_empty() && !std::io::stdin().is_terminal() {
        std::io::stdin()
            .read_to_string(&mut prompt)
            .context("cannot read the prompt from standard input")?;
    }
    let system = args.system.iter().map(|s| message("system", s));
    if prompt.is_empty() {
        return interactive_on_server(args, client, &name, system.collect());
    }
    let mut out = std::io::stdout().lock();
    let mut print = |text: &str| out.write_all(text.as_bytes()).is_ok() && out.flush().is_ok();
    let last = if args.raw {
        let body = serde_json::json!({"model": name, "prompt": prompt, "raw": true,
            "options": args.server_options()});
        stream_answer(client, "/api/generate", &body, |v| {
            print(v["response"].as_str().unwrap_or(""))
        })?
    } else {
        let messages: Vec<_> = system.chain([message("user", &prompt)]).collect();
        chat_on_server(client, &name, args, &messages, &mut print)?
    };
    if !args.raw {
        println!();
    }
    if args.verbose {
        report_server(&last);
    }
    Ok(())
}

/// Streams one answer from `path`, handing each piece to `print` (which returns false to stop
/// it); the final object, with the statistics.
fn stream_answer(
    client: &Client,
    path: &str,
    body: &serde_json::Value,
    mut print: impl FnMut(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let mut last = serde_json::Value::Null;
    client.stream(path, body, |v| {
        let go_on = print(v);
        last = v.clone();
        Ok(go_on)
    })?;
    Ok(last)
}

fn chat_on_server(
    client: &Client,
    name: &str,
    args: &RunArgs,
    messages: &[Message],
    print: &mut impl FnMut(&str) -> bool,
) -> Result<serde_json::Value> {
    let messages: Vec<_> = messages
        .iter()
        .map(|m| serde_json::json!({"role": m.role, "content": m.content}))
        .collect();
    let body = serde_json::json!({"model": name, "messages": messages,
        "options": args.server_options()});
    stream_answer(client, "/api/chat", &body, |v| {
        print(v["message"]["content"].as_str().unwrap_or(""))
    })
}

/// The chat of [`interactive`], each turn sent to the server with the conversation so far
/// (the server keeps no conversation; it reuses the cached prefix).
fn interactive_on_server(
    args: &RunArgs,
    client: &Client,
    name: &str,
    mut system: Vec<Message>,
) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("cannot install the Ctrl-C handler")?;
    }
    let mut history: Vec<Message> = Vec::new();
    let mut lines = std::io::stdin().lock().lines();
    eprintln!("Type a message, /bye to exit, /clear to forget the conversation.");
    loop {
        eprint!(">>> ");
        let Some(line) = lines.next() else { break };
        let line = line?;
        let input = line.trim();
        match input {
            "" => continue,
            "/bye" | "/exit" => break,
            "/clear" => {
                history.clear();
                eprintln!("Cleared the conversation.");
                continue;
            }
            _ if input.starts_with("/set system ") => {
                system = vec![message("system", input["/set system ".len()..].trim())];
                history.clear();
                eprintln!("Set the system message.");
                continue;
            }
            _ if input.starts_with('/') => {
                eprintln!("Unknown command '{input}': /bye, /clear and /set system TEXT work here (the model runs in `hearth serve`).");
                continue;
            }
            _ => {}
        }
        history.push(message("user", input));
        let messages: Vec<_> = system.iter().chain(&history).cloned().collect();
        let mut answer = String::new();
        let mut out = std::io::stdout().lock();
        stop.store(false, Ordering::SeqCst);
        let result = chat_on_server(client, name, args, &messages, &mut |text| {
            answer.push_str(text);
            let ok = out.write_all(text.as_bytes()).is_ok() && out.flush().is_ok();
            // Hanging up stops the generation on the server.
            ok && !stop.load(Ordering::SeqCst)
        });
        println!();
        match result {
            Ok(last) => {
                history.push(message("assistant", &answer));
                if args.verbose {
                    report_server(&last);
                }
            }
            Err(e) => {
                history.pop();
                eprintln!("error: {e:#}");
            }
        }
    }
    Ok(())
}

/// [`report`] from the server's final object (durations in nanoseconds).
fn report_server(last: &serde_json::Value) {
    let count = |k: &str| last[k].as_u64().unwrap_or(0) as usize;
    let time = |k: &str| std::time::Duration::from_nanos(last[k].as_u64().unwrap_or(0));
    let rate = |n: usize, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let (pt, gt) = (
        time("prompt_eval_duration").as_secs_f64(),
        time("eval_duration").as_secs_f64(),
    );
    let (pn, gn) = (count("prompt_eval_count"), count("eval_count"));
    eprintln!(
        "prompt eval: {pn} tokens in {pt:.3} s, {:.1} tokens/s",
        rate(pn, pt)
    );
    eprintln!(
        "generation:  {gn} tokens in {gt:.3} s, {:.1} tokens/s ({})",
        rate(gn, gt),
        last["done_reason"].as_str().unwrap_or("?")
    );
}
