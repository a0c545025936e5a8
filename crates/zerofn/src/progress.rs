//! Progress on a terminal: a spinner with the elapsed time for the steps that can take
//! seconds (a deploy's upload, admission and compile; a build; verifying a whole audit
//! log). Nothing is drawn when stderr is not a terminal (scripts, CI, pipes), so what
//! those read stays exactly as it was; the spinner is cleared before the step's result is
//! printed.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A running spinner, cleared when dropped.
pub struct Spinner(Option<ProgressBar>);

impl Spinner {
    /// Starts a spinner saying `message` on stderr, if stderr is a terminal.
    pub fn start(message: impl Into<String>) -> Spinner {
        if !std::io::stderr().is_terminal() {
            return Spinner(None);
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(message.into());
        bar.enable_steady_tick(Duration::from_millis(120));
        Spinner(Some(bar))
    }

    /// Whether anything is drawn (stderr is a terminal).
    #[cfg(test)]
    fn is_drawn(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_drawn_when_stderr_is_not_a_terminal() {
        // Test runners capture stderr: it is not a terminal here, as in CI and pipes.
        if std::io::stderr().is_terminal() {
            return;
        }
        assert!(!Spinner::start("deploying").is_drawn());
    }
}
