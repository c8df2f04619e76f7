//! Showing an operation's progress while `watch` follows it: a spinner with
//! the stage and step on a terminal, one plain line per stage otherwise.

use std::io::Write;
use std::time::Duration;

use banger_api::Operation;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::Term;

/// Progress display for one operation.
pub enum Progress {
    /// A spinner on the terminal's stderr.
    Spinner(ProgressBar),
    /// Lines on a non-terminal stderr, one per change of stage.
    Plain {
        /// Prefix of each line (`creating dev`).
        label: String,
        /// The last line printed, to skip repeats.
        last: Option<String>,
    },
}

impl Progress {
    /// Start showing progress for `label`.
    pub fn new(term: Term, label: &str) -> Progress {
        if term.err_tty {
            let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            pb.set_style(style);
            pb.set_prefix(label.to_string());
            pb.set_message("starting");
            pb.enable_steady_tick(Duration::from_millis(100));
            Progress::Spinner(pb)
        } else {
            Progress::Plain {
                label: label.to_string(),
                last: None,
            }
        }
    }

    /// Show the operation's current stage.
    pub fn update(&mut self, op: &Operation, err: &mut dyn Write) {
        let text = stage_text(op);
        match self {
            Progress::Spinner(pb) => pb.set_message(text),
            Progress::Plain { label, last } => {
                if last.as_deref() != Some(text.as_str()) {
                    let _ = writeln!(err, "{label}: {text}");
                    *last = Some(text);
                }
            }
        }
    }

    /// Remove the spinner.
    pub fn finish(self) {
        if let Progress::Spinner(pb) = self {
            pb.finish_and_clear();
        }
    }
}

/// `[2/5] copying root disk`.
pub fn stage_text(op: &Operation) -> String {
    if op.steps > 0 {
        format!("[{}/{}] {}", op.step, op.steps, op.stage)
    } else {
        op.stage.clone()
    }
}
