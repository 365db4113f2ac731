//! A spawned task that ends when asked and is aborted when its owner is dropped: what a `Feed`
//! and a `Relay` hold.

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// `task`, which ends once `stop` fires; dropping this aborts it.
#[derive(Debug)]
pub(crate) struct StoppableTask {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl StoppableTask {
    pub(crate) fn new(stop: oneshot::Sender<()>, task: JoinHandle<()>) -> Self {
        Self {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Fires the stop signal and waits for the task to end.
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for StoppableTask {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
