//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use timely::worker::Worker;

/// Runs `body` on `workers` worker threads of this process and then steps every worker until its
/// dataflows are done; panics if any worker panicked.
pub fn run_workers<F>(workers: usize, body: F)
where
    F: Fn(&mut Worker) + Send + Sync + 'static,
{
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        body(worker);
        while worker.has_dataflows() {
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
    })
    .expect("timely starts");
    for result in guards.join() {
        result.expect("worker succeeded");
    }
}

/// A fresh, empty directory for one test.
pub fn temp_dir(test: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "weir-connectors-{test}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A `Write` into a shared buffer, to capture what a sink prints.
#[derive(Clone, Default)]
pub struct SharedBuffer(pub Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("utf-8 output")
    }
}

impl std::io::Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
