//! `hearth serve`: the web app and the Ollama- and OpenAI-compatible API server (the webapp and
//! server crates do the work), and `hearth backup` of the app's database.

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

use crate::models::StoreArgs;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on, `host:port` (`0.0.0.0:11434` for the network, which needs an API
    /// key). Clients find the server through the same variable.
    #[arg(long, env = "HEARTH_HOST", default_value = server::DEFAULT_HOST)]
    host: String,
    /// A file of API keys, one per line; requests must send one as `Authorization: Bearer KEY`.
    #[arg(long, value_name = "PATH")]
    api_key_file: Option<PathBuf>,
    /// An API key (the environment variable; prefer it or a key file to the command line).
    #[arg(
        long = "api-key",
        env = "HEARTH_API_KEY",
        hide_env_values = true,
        hide = true
    )]
    api_key: Option<String>,
    /// Listen on a non-loopback address without API keys: anyone who reaches it can use it.
    #[arg(long)]
    insecure_no_auth: bool,
    /// A browser origin allowed to call the API (repeatable, or comma-separated in
    /// HEARTH_ORIGINS); pages on localhost are always allowed.
    #[arg(long = "allow-origin", env = "HEARTH_ORIGINS", value_delimiter = ',')]
    origins: Vec<String>,
    /// How long a model stays loaded after its last request: "5m", "1h", seconds, or a negative
    /// value for ever.
    #[arg(
        long,
        env = "HEARTH_KEEP_ALIVE",
        default_value = "5m",
        allow_hyphen_values = true
    )]
    keep_alive: String,
    /// Memory the loaded models may use together, in bytes or with a unit (8GiB, 512MB)
    /// [default: the machine's RAM less 10%, at least 1 GiB].
    #[arg(long, env = "HEARTH_MAX_MEMORY", value_parser = parse_bytes)]
    max_memory: Option<u64>,
    /// Requests each loaded model runs at once, each with its own KV cache; with more than one
    /// the weights are also packed for batched decoding (more memory, about twice the throughput)
    /// [default: 4, fewer where the memory budget is short].
    #[arg(long, env = "HEARTH_NUM_PARALLEL")]
    num_parallel: Option<usize>,
    /// Requests that may wait for a slot; beyond that the answer is 503 with Retry-After.
    #[arg(long, env = "HEARTH_MAX_QUEUE", default_value_t = server::DEFAULT_MAX_QUEUE)]
    max_queue: usize,
    /// Threads per loaded model (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Write prompts' sizes to the log (prompt text is never logged otherwise).
    #[arg(long)]
    log_prompts: bool,
    /// Accounts for the web app and the API: sign-in, roles, approval of new users, users' own
    /// API keys. Always on when listening on the network.
    #[arg(long, env = "HEARTH_ACCOUNTS")]
    accounts: bool,
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
pub struct DbArgs {
    /// The web app's database [default: $HEARTH_HOME/hearth.db, HEARTH_HOME defaulting to
    /// ~/.hearth].
    #[arg(long, env = "HEARTH_DB", value_name = "PATH")]
    db: Option<PathBuf>,
}

impl DbArgs {
    fn path(&self) -> Result<PathBuf> {
        if let Some(p) = &self.db {
            return Ok(p.clone());
        }
        let home = match std::env::var_os("HEARTH_HOME").filter(|v| !v.is_empty()) {
            Some(h) => PathBuf::from(h),
            None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty()).context(
                "cannot find the home directory (HOME is not set): set HEARTH_HOME or --db",
            )?)
            .join(".hearth"),
        };
        Ok(home.join("hearth.db"))
    }
}

#[derive(Args)]
pub struct BackupArgs {
    /// Where to write the copy (a new file).
    dest: PathBuf,
    #[command(flatten)]
    db: DbArgs,
}

pub fn backup(args: BackupArgs) -> Result<()> {
    let path = args.db.path()?;
    anyhow::ensure!(
        path.exists(),
        "there is no database at {} (the web app creates it on its first start; see --db)",
        path.display()
    );
    appdb::Db::backup_file(&path, &args.dest)
        .with_context(|| format!("cannot back up {}", path.display()))?;
    eprintln!("backed up {} to {}", path.display(), args.dest.display());
    Ok(())
}

/// "8GiB", "512MB", "1000000" as bytes.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let number: f64 = t[..split]
        .parse()
        .map_err(|_| format!("{text:?} is not a size: write e.g. 8GiB, 512MB or a byte count"))?;
    let scale: f64 = match t[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0f64.powi(4),
        unit => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?} (use B, KB, MB, GB, KiB, MiB, GiB)"
            ))
        }
    };
    Ok((number * scale) as u64)
}

pub fn serve(args: ServeArgs) -> Result<()> {
    let mut config = server::Config::new(args.store.open()?);
    config.host = server::normalize_host(&args.host);
    if let Some(path) = &args.api_key_file {
        config.api_keys = server::security::read_key_file(path)?;
        anyhow::ensure!(
            !config.api_keys.is_empty(),
            "the API key file {} holds no key (one per line)",
            path.display()
        );
    }
    config.api_keys.extend(
        args.api_key
            .filter(|k| !k.trim().is_empty())
            .map(|k| k.trim().to_string()),
    );
    config.insecure_no_auth = args.insecure_no_auth;
    config.origins = args.origins.into_iter().filter(|o| !o.is_empty()).collect();
    config.keep_alive =
        server::options::parse_keep_alive(&serde_json::Value::String(args.keep_alive))
            .context("--keep-alive / HEARTH_KEEP_ALIVE")?;
    config.max_memory = args.max_memory;
    config.num_parallel = args.num_parallel.map(|n| n.max(1));
    config.max_queue = args.max_queue;
    if let Some(t) = args.threads {
        anyhow::ensure!(t > 0, "--threads must be at least 1");
        config.threads = t;
    }
    config.log_prompts = args.log_prompts;
    let network = !server::is_loopback(&config.host)?;
    let mode = if args.accounts || network {
        webapp::Mode::Multi
    } else {
        webapp::Mode::Single
    };
    let db_path = args.db.path()?;
    let db = appdb::Db::open(&db_path)
        .with_context(|| format!("cannot open the web app's database {}", db_path.display()))?;
    if db.interrupted_at_open() > 0 {
        eprintln!(
            "hearth serve: {} answer(s) were being written when the server last stopped; they are kept, marked interrupted",
            db.interrupted_at_open()
        );
    }
    let app = webapp::WebApp::new(
        db,
        webapp::Options {
            mode,
            server_keys: !config.api_keys.is_empty(),
            open_api: args.insecure_no_auth,
        },
    );
    eprintln!(
        "hearth serve: web app at http://{}/ ({}); data in {}",
        config.host,
        match mode {
            webapp::Mode::Single => "single-user, no sign-in",
            webapp::Mode::Multi => "accounts: the first to sign up is the admin",
        },
        db_path.display()
    );
    config.gate = Some(app.clone());
    config.retriever = Some(app.retriever());
    server::run(config, Some(app.extension()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert_eq!(parse_bytes("8GiB"), Ok(8 << 30));
        assert_eq!(parse_bytes("1.5 GB"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("512mb"), Ok(512_000_000));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
    }
}
