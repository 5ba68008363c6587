//! Progress of a pull on standard error: a bar per blob (bytes, rate, ETA) on a terminal, plain
//! status lines otherwise (a log or a test reads those; byte counts would flood it).

use indicatif::{DecimalBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use store::{Progress, PullEvent};

/// The [`Progress`] `hearth pull` (and `run`, when it pulls first) reports to.
pub struct PullProgress {
    multi: MultiProgress,
    /// One bar per blob, by the event's id, in the order the blobs started.
    bars: Vec<(String, ProgressBar)>,
}

impl PullProgress {
    pub fn new() -> PullProgress {
        PullProgress {
            // Hidden (draws nothing) when standard error is not a terminal.
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Vec::new(),
        }
    }

    /// A status line above the bars, or on its own when there are none.
    fn status(&self, line: &str) {
        if self.multi.is_hidden() || self.multi.println(line).is_err() {
            eprintln!("{line}");
        }
    }

    fn bar(&mut self, id: &str, total: Option<u64>) -> &ProgressBar {
        if let Some(i) = self.bars.iter().position(|(bar_id, _)| bar_id == id) {
            return &self.bars[i].1;
        }
        // Blobs come one after another: the ones before this are downloaded and verified.
        for (_, done) in &self.bars {
            done.set_message("");
        }
        let label = short_id(id).to_string();
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(sized_style()),
            None => ProgressBar::no_length().with_style(unsized_style()),
        };
        let bar = self.multi.add(bar.with_prefix(label.clone()));
        if self.multi.is_hidden() {
            let size = total.map_or(String::new(), |t| format!(" ({})", DecimalBytes(t)));
            eprintln!("pulling {label}{size}");
        }
        self.bars.push((id.to_string(), bar));
        &self.bars.last().expect("just pushed").1
    }

    /// Marks every bar done (on success) or stopped where it was (on failure).
    pub fn finish(&self, ok: bool) {
        for (_, bar) in &self.bars {
            if ok {
                bar.finish_with_message("");
            } else {
                bar.abandon();
            }
        }
        if ok {
            // Below the finished bars, which are drawn no more.
            eprintln!("success");
        }
    }
}

impl Progress for PullProgress {
    fn event(&mut self, event: &PullEvent<'_>) {
        match event {
            PullEvent::Manifest { name } => self.status(&format!("pulling manifest of {name}")),
            PullEvent::Blob {
                id,
                completed,
                total,
                ..
            } => {
                let bar = self.bar(id, *total);
                // A URL's length becomes known once its server answers.
                if let Some(total) = total.filter(|&t| bar.length() != Some(t)) {
                    bar.set_length(total);
                    bar.set_style(sized_style());
                }
                bar.set_position(*completed);
            }
            PullEvent::Retry {
                id,
                attempt,
                reason,
                delay,
            } => {
                let line = format!(
                    "pulling {}: {reason}; retrying in {:.1} s from where it stopped (attempt {})",
                    short_id(id),
                    delay.as_secs_f64(),
                    attempt + 1
                );
                self.bar(id, None).set_message("retrying");
                self.status(&line);
            }
            PullEvent::Verifying { id } => {
                self.bar(id, None).set_message("verifying");
                if self.multi.is_hidden() {
                    eprintln!("verifying sha256 digest of {}", short_id(id));
                }
            }
            PullEvent::WritingManifest { .. } => self.status("writing manifest"),
            // Events a newer store may add are not worth failing a pull over.
            _ => {}
        }
    }
}

fn sized_style() -> ProgressStyle {
    // The bar takes what the terminal's width leaves; the message ("retrying", "verifying")
    // has a fixed width so that the bar does not jump.
    ProgressStyle::with_template(
        "pulling {prefix} {percent:>3}% [{wide_bar}] {decimal_bytes:>9}/{decimal_total_bytes:<9} \
         {decimal_bytes_per_sec:>11} {eta:>3} {msg:9}",
    )
    .expect("the template is valid")
    .progress_chars("=> ")
}

/// For a URL whose server does not say how long the file is.
fn unsized_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "pulling {prefix} {spinner} {decimal_bytes:>9} {decimal_bytes_per_sec:>11} {msg:9}",
    )
    .expect("the template is valid")
}

/// The 12 hex digits Ollama shows for a digest; a URL download's file name as it is.
fn short_id(id: &str) -> &str {
    match id.strip_prefix("sha256:") {
        Some(hex) => &hex[..hex.len().min(12)],
        None => id,
    }
}
