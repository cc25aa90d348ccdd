//! Where a query runs: worker threads in this process, and the processes of a cluster.

use std::path::Path;

use crate::error::BuildError;

/// How many workers run a query and where (timely's communication configuration).
///
/// `Execution::workers(4)` runs four threads in this process; a cluster of `n` processes with `w`
/// threads each is `Execution::cluster(w, process_index, addresses)`, every process started with
/// the same addresses and its own index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Execution {
    /// Worker threads per process.
    pub workers: usize,
    /// This process's index in `addresses` (0 when not clustered).
    pub process: usize,
    /// `host:port` of every process, in process order; empty when not clustered.
    pub addresses: Vec<String>,
}

impl Default for Execution {
    fn default() -> Self {
        Execution::workers(1)
    }
}

impl Execution {
    /// `n` worker threads in this process.
    pub fn workers(n: usize) -> Self {
        Execution { workers: n.max(1), process: 0, addresses: Vec::new() }
    }

    /// One process of a cluster: `workers` threads here, this process is `process`, and
    /// `addresses` lists every process's `host:port` in order.
    pub fn cluster(workers: usize, process: usize, addresses: Vec<String>) -> Result<Self, BuildError> {
        if addresses.is_empty() {
            return Err(BuildError::invalid(
                "cluster",
                "no process addresses were given",
                "list one host:port per process",
            ));
        }
        if process >= addresses.len() {
            return Err(BuildError::invalid(
                "process index",
                format!("process {process} is not among the {} processes listed", addresses.len()),
                "use -p 0 .. n-1, where n is the number of lines of the hostfile",
            ));
        }
        Ok(Execution { workers: workers.max(1), process, addresses })
    }

    /// A cluster of `processes` processes described by a hostfile (one `host:port` per line, in
    /// process order), or on `127.0.0.1:2101..` when no hostfile is given.
    pub fn from_flags(
        workers: usize,
        processes: usize,
        process: usize,
        hostfile: Option<&Path>,
    ) -> Result<Self, BuildError> {
        if processes <= 1 && hostfile.is_none() {
            if process != 0 {
                return Err(BuildError::invalid(
                    "process index",
                    "-p was given without a cluster",
                    "add -n N (and -h hostfile)",
                ));
            }
            return Ok(Execution::workers(workers));
        }
        let addresses = match hostfile {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    BuildError::invalid(
                        "hostfile",
                        format!("cannot read {}: {e}", path.display()),
                        "give a file with one host:port per line",
                    )
                })?;
                let lines: Vec<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from)
                    .collect();
                if processes > 1 && lines.len() < processes {
                    return Err(BuildError::invalid(
                        "hostfile",
                        format!("{} lists {} processes but -n is {processes}", path.display(), lines.len()),
                        "list one host:port per process",
                    ));
                }
                let n = if processes > 1 { processes } else { lines.len() };
                lines.into_iter().take(n).collect()
            }
            None => (0..processes).map(|i| format!("127.0.0.1:{}", 2101 + i)).collect(),
        };
        Execution::cluster(workers, process, addresses)
    }

    /// Total workers across all processes.
    pub fn total_workers(&self) -> usize {
        self.workers * self.addresses.len().max(1)
    }

    /// Whether this is one process of a multi-process cluster.
    pub fn is_cluster(&self) -> bool {
        self.addresses.len() > 1
    }

    /// The timely configuration for this execution.
    pub fn timely_config(&self) -> timely::Config {
        let communication = if self.is_cluster() {
            timely::CommunicationConfig::Cluster {
                threads: self.workers,
                process: self.process,
                addresses: self.addresses.clone(),
                report: false,
                zerocopy: false,
            }
        } else if self.workers > 1 {
            timely::CommunicationConfig::Process(self.workers)
        } else {
            timely::CommunicationConfig::Thread
        };
        timely::Config { communication, worker: timely::WorkerConfig::default() }
    }
}
