//! Progress of a running backup or restore: a bar on a terminal, plain log lines elsewhere.

use std::sync::Arc;
use std::time::{Duration, Instant};

use groundwork_backup::Progress;
use indicatif::HumanBytes;

use crate::log;

/// A progress bar on a terminal, plain log lines otherwise.
pub(crate) struct ProgressReporter {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<indicatif::ProgressBar>,
}

impl ProgressReporter {
    /// Starts reporting; `bar` (from `OutputArgs::progress_bar`) draws a bar instead of lines.
    pub(crate) fn start(progress: Arc<Progress>, total: Option<u64>, bar: bool) -> Self {
        if bar {
            let bar = match total {
                Some(total) => indicatif::ProgressBar::new(total),
                None => indicatif::ProgressBar::new_spinner(),
            };
            let template = if total.is_some() {
                "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} stored ({bytes_per_sec}) {msg}"
            } else {
                "{elapsed_precise} {spinner} {bytes} stored ({bytes_per_sec}) {msg}"
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            let shown = bar.clone();
            let task = tokio::spawn(async move {
                loop {
                    shown.set_position(progress.stored_bytes());
                    shown.set_message(format!("{} raw", HumanBytes(progress.raw_bytes())));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
            return Self {
                task: Some(task),
                bar: Some(bar),
            };
        }
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut last_parts = 0;
            let mut last_line = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let parts = progress.parts();
                if parts != last_parts || last_line.elapsed() >= Duration::from_secs(10) {
                    last_parts = parts;
                    last_line = Instant::now();
                    let elapsed = start.elapsed();
                    let millis = elapsed.as_millis().max(1);
                    let rate = u64::try_from(u128::from(progress.raw_bytes()) * 1000 / millis)
                        .unwrap_or(u64::MAX);
                    log(
                        "INFO",
                        &format!(
                            "progress: {} raw, {} stored, {parts} parts, {}/s, {}s elapsed",
                            HumanBytes(progress.raw_bytes()),
                            HumanBytes(progress.stored_bytes()),
                            HumanBytes(rate),
                            elapsed.as_secs(),
                        ),
                    );
                }
            }
        });
        Self {
            task: Some(task),
            bar: None,
        }
    }

    pub(crate) fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
