//! Work the server runs beside its requests (jobs, key health checks, a retirement an admin
//! started): stopped with the server. [`Background::stop`] cuts each task and waits until it is
//! gone, so that what a task leaves in memory as it unwinds (the audit row of a KMS call under
//! way, rows it took to write) is there for the shutdown's last write; a task spawned after the
//! stop never runs.

use std::future::Future;
use std::sync::{Arc, Mutex};

/// The tasks, until they are stopped. Cheap to clone: clones share them.
#[derive(Clone, Default)]
pub struct Background(Arc<Mutex<Tasks>>);

#[derive(Default)]
struct Tasks {
    set: tokio::task::JoinSet<()>,
    stopped: bool,
}

impl Background {
    /// Runs `task` until it ends or the stop; finished tasks are reaped as new ones come.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if tasks.stopped {
            return;
        }
        while tasks.set.try_join_next().is_some() {}
        tasks.set.spawn(task);
    }

    /// Cuts every task and waits until each is gone.
    pub async fn stop(&self) {
        let mut set = {
            let mut tasks = self.0.lock().unwrap_or_else(|p| p.into_inner());
            tasks.stopped = true;
            std::mem::take(&mut tasks.set)
        };
        set.abort_all();
        while set.join_next().await.is_some() {}
    }
}

/// Sets its flag when dropped, as a task's guards (an audit row's) do when it is cut: what
/// tests of stopping look for.
#[cfg(test)]
pub(crate) struct Unwound(pub(crate) Arc<std::sync::atomic::AtomicBool>);

#[cfg(test)]
impl Drop for Unwound {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::Unwound;

    /// A task still running is cut and has unwound when `stop` returns; one spawned after the
    /// stop never runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stop_cuts_and_waits_and_nothing_starts_after() {
        let bg = super::Background::default();
        let unwound = Arc::new(AtomicBool::new(false));
        let (started, running) = tokio::sync::oneshot::channel();
        let guard = Unwound(unwound.clone());
        bg.spawn(async move {
            let _guard = guard;
            let _ = started.send(());
            std::future::pending::<()>().await;
        });
        running.await.unwrap();
        bg.stop().await;
        assert!(
            unwound.load(Ordering::SeqCst),
            "still running after the stop"
        );
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        bg.spawn(async move { flag.store(true, Ordering::SeqCst) });
        tokio::task::yield_now().await;
        assert!(!ran.load(Ordering::SeqCst), "a task started after the stop");
    }
}
