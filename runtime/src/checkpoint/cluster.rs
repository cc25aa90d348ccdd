//! Checkpoints of a query that runs as a cluster of processes (`-n N -p I -h hostfile`,
//! `docs/checkpoints.md` §3 "Cluster").
//!
//! Process 0 hosts the query's one real coordinator, a [`LiveCheckpoint`] like a single process
//! has, and serves it over TCP ([`coordinate`]). Every other process *joins* it ([`join`]) and gets
//! a `LiveCheckpoint` of its own with the same interface, so sources, operators and sinks do not
//! know the difference: what changes state (registrations, `seal`, `source_downgrade`,
//! `source_finished`, the reports) is a synchronous request to process 0, which runs the real
//! method; what is read (`boundaries`, `highest_boundary`, `last_committed`, the resume point) is
//! answered from the process's own copy.
//!
//! **Why the invariant of §3 holds across processes.** Process 0 publishes a boundary `T` inside
//! `source_downgrade`, under the downgrade lock, above every capability any source instance of
//! any process has recorded. Before it lets go of the lock it *pushes* `T` to every other process
//! and waits for each to acknowledge that `T` is in its copy. A source instance anywhere can only
//! stamp at a time `≥ T` after its own `source_downgrade` to that time has returned, which takes
//! the same lock, after `T` was published and pushed. So when `T` is published no record `≥ T`
//! exists anywhere, and every process knows `T` before any operator's frontier can pass it — the
//! same two facts a single process gets from its shared lock. Committed epochs are pushed too
//! (after `commits/N` is durable), so sinks everywhere learn them without asking.
//!
//! **Startup.** Process 0 opens (or creates, or resets) the checkpoint directory, then serves.
//! Each other process builds its dataflow once to compute its fingerprint, connects (retrying
//! while process 0 is not up yet), says hello with its process index, worker count and
//! fingerprint (refused if they differ from process 0's), and gets back the checkpoint's metadata
//! and what to resume from. It then checks that it sees the same checkpoint in *its*
//! `--checkpoint DIR` (the directory must be shared storage: each process writes its workers'
//! state files there itself) and opens a second connection on which process 0 pushes boundaries
//! and commits. Participants register while the dataflow is built; `seal` is a barrier: process 0
//! seals its coordinator only once every process has registered everything and asked to seal,
//! and no process's workers start before that.
//!
//! **Messages** are JSON lines (one request, one answer). No authentication: like timely's own
//! connections, the coordinator's port must only be reachable by the cluster.
//!
//! **Address.** `--checkpoint-coordinator HOST:PORT` ([`crate::query::Query::checkpoint_coordinator`]),
//! by default process 0's host from the hostfile with its port plus [`COORDINATOR_PORT_OFFSET`]
//! ([`default_coordinator_address`]); process 0 listens there.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::time::EventTime;

use super::error::CheckpointError;
use super::file::{self, FileKind};
use super::live::{Boundary, LiveCheckpoint};
use super::metadata::{CheckpointMetadata, DataflowFingerprint};
use super::records::{EpochOffsets, PartitionOffset, StateFileRef, StateKind};
use super::{CheckpointDir, Resume, StateFile, METADATA};

/// The coordinator listens on process 0's port (from the hostfile) plus this, unless
/// `--checkpoint-coordinator` says otherwise.
pub const COORDINATOR_PORT_OFFSET: u16 = 1000;

/// How long a process waits for process 0's coordinator to accept its connection at startup.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(120);

/// The coordinator's default address: process 0's host (`addresses[0]` of the hostfile) with
/// its port plus [`COORDINATOR_PORT_OFFSET`].
///
/// ```
/// use weir_runtime::checkpoint::cluster::default_coordinator_address;
/// assert_eq!(default_coordinator_address("10.0.0.5:2101").unwrap(), "10.0.0.5:3101");
/// assert!(default_coordinator_address("10.0.0.5:65000").is_err());
/// ```
pub fn default_coordinator_address(process_0: &str) -> Result<String, String> {
    let (host, port) =
        process_0.rsplit_once(':').ok_or_else(|| format!("process 0's address `{process_0}` has no :port"))?;
    let port: u16 = port.parse().map_err(|_| format!("process 0's address `{process_0}` has no valid port"))?;
    let port = port.checked_add(COORDINATOR_PORT_OFFSET).ok_or_else(|| {
        format!(
            "process 0's port {port} + {COORDINATOR_PORT_OFFSET} is not a valid port for the checkpoint coordinator"
        )
    })?;
    Ok(format!("{host}:{port}"))
}

/// What a process of the cluster says when it joins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The process index (1 .. n-1).
    pub process: usize,
    /// The total worker count it runs with (`-w` × `-n`).
    pub workers: usize,
    /// Its dataflow's fingerprint.
    pub fingerprint: DataflowFingerprint,
}

/// How process 0 takes part: the other processes it pushes to, and the seal barrier.
#[derive(Debug, Default)]
pub(crate) enum Role {
    /// Not a cluster.
    #[default]
    Single,
    /// Process 0: hosts the coordinator.
    Coordinator(Arc<Peers>),
    /// Another process: forwards to process 0.
    Member(Arc<Member>),
}

impl Role {
    pub(crate) fn member(&self) -> Option<&Member> {
        match self {
            Role::Member(member) => Some(member),
            _ => None,
        }
    }

    /// Process 0 published `boundaries`: every other process must have them before the
    /// downgrade lock is released (call it under the lock).
    pub(crate) fn published(&self, boundaries: &[Boundary]) {
        if let (Role::Coordinator(peers), false) = (self, boundaries.is_empty()) {
            peers.broadcast(&Push::Boundaries(boundaries.iter().map(|b| (b.epoch, b.boundary)).collect()));
        }
    }

    /// Process 0 committed epochs: `next` is the last committed epoch + 1.
    pub(crate) fn committed(&self, next: u64) {
        if let Role::Coordinator(peers) = self {
            peers.broadcast(&Push::Committed(next));
        }
    }

    /// Before sealing: process 0 waits for every other process to have registered its
    /// participants; another process forwards the seal and answers `true` (nothing more to do here).
    pub(crate) fn before_seal(&self) -> Result<bool, CheckpointError> {
        match self {
            Role::Single => Ok(false),
            Role::Coordinator(peers) => peers.await_members().map(|()| false),
            Role::Member(member) => member.seal().map(|()| true),
        }
    }

    /// The build failed in this process: instead of sealing, makes every other process's seal
    /// fail (so the whole cluster stops instead of waiting for this process's workers).
    pub(crate) fn abandon(&self, why: &str) {
        match self {
            Role::Single => {}
            Role::Coordinator(peers) => peers.abandon(why),
            Role::Member(member) => {
                let _ = member.request(&Request::Seal { process: member.process, failure: Some(why.to_string()) });
            }
        }
    }

    /// After process 0 sealed: lets the other processes' workers start.
    pub(crate) fn after_seal(&self) {
        if let Role::Coordinator(peers) = self {
            peers.set_sealed();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Hello(JoinRequest),
    /// Makes this connection the one process 0 pushes boundaries and commits on.
    Subscribe {
        process: usize,
    },
    RegisterSource {
        source: String,
        partitions: usize,
        worker: usize,
        capability: Option<EventTime>,
    },
    RegisterStateful {
        operator: String,
    },
    RegisterSink {
        sink: String,
    },
    /// Everything registered (or, with `failure`, the build failed there): the seal barrier.
    Seal {
        process: usize,
        failure: Option<String>,
    },
    Downgrade {
        source: String,
        worker: usize,
        capability: Option<EventTime>,
        records: u64,
    },
    Finished {
        source: String,
        worker: usize,
        final_cuts: Vec<PartitionOffset>,
        records: u64,
    },
    ReportCut {
        epoch: u64,
        source: String,
        cut: PartitionOffset,
    },
    ReportState {
        epoch: u64,
        state: StateFileRef,
    },
    ReportPrepared {
        epoch: u64,
        sink: String,
        worker: usize,
    },
}

#[derive(Debug, Serialize, Deserialize)]
enum Response {
    Done,
    Welcome(Box<Welcome>),
    Failed(String),
}

/// Pushed by process 0, acknowledged with [`Response::Done`] once applied.
#[derive(Debug, Serialize, Deserialize)]
enum Push {
    /// Newly published boundaries (epoch, boundary), in order.
    Boundaries(Vec<(u64, EventTime)>),
    /// The last committed epoch + 1.
    Committed(u64),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Welcome {
    metadata: CheckpointMetadata,
    resume: WireResume,
}

/// [`Resume`] on the wire: state files by name (each process finds them under its own path of
/// the shared directory).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct WireResume {
    epoch: Option<u64>,
    offsets: Option<EpochOffsets>,
    /// (operator, worker, bytes, kind)
    state_files: Vec<(String, usize, u64, StateKind)>,
}

impl WireResume {
    fn from_resume(resume: &Resume) -> Self {
        match resume {
            Resume::Fresh => WireResume { epoch: None, offsets: None, state_files: Vec::new() },
            Resume::FromEpoch { epoch, offsets, state_files, .. } => WireResume {
                epoch: Some(*epoch),
                offsets: Some(offsets.clone()),
                state_files: state_files.iter().map(|f| (f.operator.clone(), f.worker, f.bytes, f.kind)).collect(),
            },
        }
    }

    fn into_resume(self, dir: &CheckpointDir) -> Resume {
        match (self.epoch, self.offsets) {
            (Some(epoch), Some(offsets)) => Resume::FromEpoch {
                epoch,
                offsets,
                state_files: self
                    .state_files
                    .into_iter()
                    .map(|(operator, worker, bytes, kind)| StateFile {
                        path: dir.state_path(&operator, worker, epoch),
                        operator,
                        worker,
                        epoch,
                        bytes,
                        kind,
                    })
                    .collect(),
                compatible_changes: Vec::new(),
                discarded_epochs: Vec::new(),
            },
            _ => Resume::Fresh,
        }
    }
}

/// One JSON-lines connection.
#[derive(Debug)]
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Connection {
    fn new(stream: TcpStream) -> std::io::Result<Self> {
        // Small messages answered at once: Nagle's algorithm would add delayed-ACK latency.
        stream.set_nodelay(true)?;
        Ok(Connection { reader: BufReader::new(stream.try_clone()?), writer: stream })
    }

    fn send<T: Serialize>(&mut self, message: &T) -> std::io::Result<()> {
        let mut line = serde_json::to_string(message).map_err(std::io::Error::other)?;
        line.push('\n');
        self.writer.write_all(line.as_bytes())
    }

    /// The next message; `Ok(None)` when the other side closed the connection.
    fn receive<T: for<'de> Deserialize<'de>>(&mut self) -> std::io::Result<Option<T>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line).map(Some).map_err(std::io::Error::other)
    }
}

// ---------------------------------------------------------------------------------------------
// Process 0
// ---------------------------------------------------------------------------------------------

/// Process 0's side: who joined, the seal barrier, and the connections it pushes on.
#[derive(Debug)]
pub(crate) struct Peers {
    /// Where it listens.
    address: String,
    /// How many other processes the cluster has.
    members: usize,
    barrier: Mutex<Barrier>,
    changed: Condvar,
    subscribers: Mutex<Vec<(usize, Connection)>>,
}

#[derive(Debug, Default)]
struct Barrier {
    joined: BTreeSet<usize>,
    asked_to_seal: BTreeSet<usize>,
    sealed: bool,
    failure: Option<String>,
}

impl Peers {
    fn new(address: &str, members: usize) -> Self {
        Peers {
            address: address.to_string(),
            members,
            barrier: Mutex::new(Barrier::default()),
            changed: Condvar::new(),
            subscribers: Mutex::new(Vec::new()),
        }
    }

    /// Writes `push` to every other process and waits until each has applied it. A process whose
    /// connection fails is dropped (it is gone: its sources cannot downgrade any more either).
    fn broadcast(&self, push: &Push) {
        let mut subscribers = self.subscribers.lock().expect("subscribers");
        let mut alive = vec![true; subscribers.len()];
        for (i, (_, connection)) in subscribers.iter_mut().enumerate() {
            alive[i] = connection.send(push).is_ok();
        }
        for (i, (process, connection)) in subscribers.iter_mut().enumerate() {
            if alive[i] {
                alive[i] = matches!(connection.receive::<Response>(), Ok(Some(Response::Done)));
                if !alive[i] {
                    tracing::error!(process = *process, "lost the connection to a process of the cluster");
                }
            }
        }
        let mut i = 0;
        subscribers.retain(|_| {
            i += 1;
            alive[i - 1]
        });
    }

    /// Waits until every other process has asked to seal (all its participants are registered),
    /// or fails if one of them leaves first.
    fn await_members(&self) -> Result<(), CheckpointError> {
        let mut barrier = self.barrier.lock().expect("cluster barrier");
        loop {
            if let Some(failure) = &barrier.failure {
                return Err(cluster_error(&self.address, failure.clone()));
            }
            if barrier.asked_to_seal.len() == self.members {
                return Ok(());
            }
            // A process that died before asking to seal closed its push connection.
            if let Some(process) = self.closed_subscriber() {
                let failure = format!("process {process} of the cluster left before the query started");
                barrier.failure = Some(failure.clone());
                self.changed.notify_all();
                return Err(cluster_error(&self.address, failure));
            }
            barrier = self.changed.wait_timeout(barrier, Duration::from_millis(100)).expect("cluster barrier").0;
        }
    }

    /// A subscribed process whose connection is closed (only used before sealing, when nothing
    /// is pushed).
    fn closed_subscriber(&self) -> Option<usize> {
        let subscribers = self.subscribers.lock().expect("subscribers");
        subscribers.iter().find_map(|(process, connection)| {
            let stream = &connection.writer;
            stream.set_nonblocking(true).ok()?;
            let closed = matches!(stream.peek(&mut [0u8]), Ok(0));
            let _ = stream.set_nonblocking(false);
            closed.then_some(*process)
        })
    }

    fn set_sealed(&self) {
        self.barrier.lock().expect("cluster barrier").sealed = true;
        self.changed.notify_all();
    }

    /// The build failed in process 0: every other process's seal fails.
    fn abandon(&self, why: &str) {
        let mut barrier = self.barrier.lock().expect("cluster barrier");
        barrier.failure.get_or_insert(format!("process 0 could not build its dataflow: {why}"));
        self.changed.notify_all();
    }

    /// A process asked to seal: waits until process 0 has sealed. With `failure` (its build
    /// failed) every process's seal fails instead.
    fn seal_member(&self, process: usize, failure: Option<String>) -> Result<(), String> {
        let mut barrier = self.barrier.lock().expect("cluster barrier");
        if let Some(why) = failure {
            barrier.failure.get_or_insert(format!("process {process} could not build its dataflow: {why}"));
        }
        barrier.asked_to_seal.insert(process);
        self.changed.notify_all();
        loop {
            if let Some(failure) = &barrier.failure {
                return Err(failure.clone());
            }
            if barrier.sealed {
                return Ok(());
            }
            barrier = self.changed.wait(barrier).expect("cluster barrier");
        }
    }
}

/// Makes `live` (process 0's coordinator, just opened) the coordinator of a cluster with
/// `processes` processes: listens on `address` and serves the other processes from threads of
/// its own. Answers the coordinator to put in the query's context.
pub fn coordinate(
    address: &str,
    processes: usize,
    live: LiveCheckpoint,
) -> Result<Arc<LiveCheckpoint>, CheckpointError> {
    let listener = TcpListener::bind(address)
        .map_err(|e| CheckpointError::io("cannot listen for the cluster's checkpoint coordinator on", address, e))?;
    serve(listener, address, processes, live)
}

/// [`coordinate`] on a listener already bound.
fn serve(
    listener: TcpListener,
    address: &str,
    processes: usize,
    live: LiveCheckpoint,
) -> Result<Arc<LiveCheckpoint>, CheckpointError> {
    let peers = Arc::new(Peers::new(address, processes.saturating_sub(1)));
    let live = Arc::new(live.with_cluster_role(Role::Coordinator(peers.clone())));
    let dir = live.dir().expect("a query's coordinator has a directory");
    let welcome =
        Arc::new(Welcome { metadata: dir.metadata().clone(), resume: WireResume::from_resume(live.resume_point()) });
    let server = live.clone();
    tracing::info!(address, processes, "checkpoint coordinator of the cluster listening");
    std::thread::Builder::new()
        .name("weir-checkpoint-coordinator".to_string())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (live, peers, welcome) = (server.clone(), peers.clone(), welcome.clone());
                let _ = std::thread::Builder::new()
                    .name("weir-checkpoint-peer".to_string())
                    .spawn(move || serve_connection(stream, &live, &peers, &welcome));
            }
        })
        .map_err(|e| CheckpointError::io("cannot start the checkpoint coordinator's thread for", address, e))?;
    Ok(live)
}

fn serve_connection(stream: TcpStream, live: &LiveCheckpoint, peers: &Peers, welcome: &Welcome) {
    let Ok(mut connection) = Connection::new(stream) else { return };
    loop {
        let request = match connection.receive::<Request>() {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "a bad request to the checkpoint coordinator");
                return;
            }
        };
        let response = match request {
            Request::Subscribe { process } => {
                // The last step of joining: from now on the process counts as joined.
                if !peers.barrier.lock().expect("cluster barrier").joined.insert(process) {
                    let _ = connection.send(&Response::Failed(duplicate(process)));
                    return;
                }
                if connection.send(&Response::Done).is_ok() {
                    peers.subscribers.lock().expect("subscribers").push((process, connection));
                }
                return;
            }
            request => handle(request, live, peers, welcome),
        };
        if connection.send(&response).is_err() {
            return;
        }
    }
}

fn handle(request: Request, live: &LiveCheckpoint, peers: &Peers, welcome: &Welcome) -> Response {
    fn answer(result: Result<(), CheckpointError>) -> Response {
        result.map_or_else(|e| Response::Failed(e.to_string()), |()| Response::Done)
    }
    match request {
        Request::Hello(hello) => {
            let refused = refusal(&hello, peers, &welcome.metadata);
            if let Some(why) = refused {
                tracing::error!(process = hello.process, %why, "refused a process of the cluster");
                return Response::Failed(why);
            }
            tracing::info!(process = hello.process, "a process of the cluster joined the checkpoint coordinator");
            Response::Welcome(Box::new(welcome.clone()))
        }
        Request::Subscribe { .. } => unreachable!("handled by the connection"),
        Request::RegisterSource { source, partitions, worker, capability } => {
            live.register_source(&source, partitions, worker, capability);
            Response::Done
        }
        Request::RegisterStateful { operator } => {
            live.register_stateful(&operator);
            Response::Done
        }
        Request::RegisterSink { sink } => {
            live.register_sink(&sink);
            Response::Done
        }
        Request::Seal { process, failure } => {
            peers.seal_member(process, failure).map_or_else(Response::Failed, |()| Response::Done)
        }
        Request::Downgrade { source, worker, capability, records } => {
            live.count_records(records);
            live.source_downgrade(&source, worker, capability);
            Response::Done
        }
        Request::Finished { source, worker, final_cuts, records } => {
            live.count_records(records);
            live.source_finished(&source, worker, final_cuts);
            Response::Done
        }
        Request::ReportCut { epoch, source, cut } => answer(live.report_cut(epoch, &source, cut)),
        Request::ReportState { epoch, state } => answer(live.report_state(epoch, state)),
        Request::ReportPrepared { epoch, sink, worker } => answer(live.report_prepared(epoch, &sink, worker)),
    }
}

/// Why process 0 refuses a joining process, if it does.
fn refusal(hello: &JoinRequest, peers: &Peers, metadata: &CheckpointMetadata) -> Option<String> {
    if hello.process == 0 || hello.process > peers.members {
        return Some(format!(
            "process {} joined, but the cluster has processes 0 .. {} (process 0 hosts the coordinator)",
            hello.process, peers.members
        ));
    }
    if peers.barrier.lock().expect("cluster barrier").joined.contains(&hello.process) {
        return Some(duplicate(hello.process));
    }
    if hello.workers != metadata.workers {
        return Some(format!(
            "process {} runs {} workers in total, process 0 {}: give every process the same -w and -n",
            hello.process, hello.workers, metadata.workers
        ));
    }
    let diff = metadata.fingerprint.diff(&hello.fingerprint);
    if !diff.incompatible.is_empty() || !diff.compatible.is_empty() {
        let differences: Vec<String> = diff.incompatible.into_iter().chain(diff.compatible).collect();
        return Some(format!(
            "process {} builds a different dataflow than process 0: {}. Start every process with the same job and flags",
            hello.process,
            differences.join("; ")
        ));
    }
    None
}

fn duplicate(process: usize) -> String {
    format!("two processes joined as process {process}: give each process its own -p")
}

fn cluster_error(address: &str, problem: String) -> CheckpointError {
    CheckpointError::io("coordinator of the cluster at", address, std::io::Error::other(problem))
}

// ---------------------------------------------------------------------------------------------
// The other processes
// ---------------------------------------------------------------------------------------------

/// Another process's side: connections to process 0's coordinator.
#[derive(Debug)]
pub(crate) struct Member {
    address: String,
    process: usize,
    /// Idle request connections (one per concurrent caller at most).
    pool: Mutex<Vec<Connection>>,
    /// The push connection, until [`Member::listen`] takes it.
    push: Mutex<Option<Connection>>,
    /// The push connection closed: no boundary can arrive any more.
    lost: AtomicBool,
    /// The first failure of a request that has no error to return (registrations at build time),
    /// reported by `seal`.
    failure: Mutex<Option<String>>,
}

impl Member {
    fn connect(address: &str, deadline: Instant) -> Result<Connection, CheckpointError> {
        loop {
            match TcpStream::connect(address) {
                Ok(stream) => {
                    return Connection::new(stream).map_err(|e| {
                        CheckpointError::io("cannot talk to the cluster's checkpoint coordinator at", address, e)
                    })
                }
                Err(error) if Instant::now() >= deadline => {
                    return Err(CheckpointError::io(
                        "cannot reach the cluster's checkpoint coordinator (process 0) at",
                        address,
                        error,
                    ))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// One request, one answer, on an idle connection (or a new one).
    fn call(&self, request: &Request) -> Result<Response, CheckpointError> {
        let pooled = self.pool.lock().expect("connection pool").pop();
        let mut connection = match pooled {
            Some(connection) => connection,
            None => Member::connect(&self.address, Instant::now())?,
        };
        let io = |e| CheckpointError::io("lost the cluster's checkpoint coordinator (process 0) at", &self.address, e);
        connection.send(request).map_err(io)?;
        let response = connection
            .receive::<Response>()
            .map_err(io)?
            .ok_or_else(|| io(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the connection was closed")))?;
        self.pool.lock().expect("connection pool").push(connection);
        Ok(response)
    }

    /// A request whose answer is `Done` or an error.
    fn request(&self, request: &Request) -> Result<(), CheckpointError> {
        match self.call(request)? {
            Response::Done => Ok(()),
            Response::Failed(problem) => Err(cluster_error(&self.address, problem)),
            Response::Welcome(_) => Err(cluster_error(&self.address, "an unexpected answer".to_string())),
        }
    }

    /// A registration at build time: a failure is kept for `seal` to report.
    fn register(&self, request: &Request) {
        if let Err(error) = self.request(request) {
            self.failure.lock().expect("member failure").get_or_insert(error.to_string());
        }
    }

    pub(crate) fn register_source(
        &self,
        source: &str,
        partitions: usize,
        worker: usize,
        capability: Option<EventTime>,
    ) {
        self.register(&Request::RegisterSource { source: source.to_string(), partitions, worker, capability });
    }

    pub(crate) fn register_stateful(&self, operator: &str) {
        self.register(&Request::RegisterStateful { operator: operator.to_string() });
    }

    pub(crate) fn register_sink(&self, sink: &str) {
        self.register(&Request::RegisterSink { sink: sink.to_string() });
    }

    fn seal(&self) -> Result<(), CheckpointError> {
        if let Some(failure) = self.failure.lock().expect("member failure").clone() {
            return Err(cluster_error(&self.address, failure));
        }
        self.request(&Request::Seal { process: self.process, failure: None })
    }

    /// A source's downgrade, under process 0's lock. A process that cannot reach the coordinator
    /// must not stamp anything: it panics (the query fails and is restarted from the checkpoint).
    pub(crate) fn downgrade(&self, source: &str, worker: usize, capability: Option<EventTime>, records: u64) {
        self.must(self.request(&Request::Downgrade { source: source.to_string(), worker, capability, records }));
    }

    pub(crate) fn finished(&self, source: &str, worker: usize, final_cuts: Vec<PartitionOffset>, records: u64) {
        self.must(self.request(&Request::Finished { source: source.to_string(), worker, final_cuts, records }));
    }

    fn must(&self, result: Result<(), CheckpointError>) {
        if self.lost.load(Ordering::Acquire) {
            panic!(
                "process {}: the checkpoint coordinator at {} stopped sending boundaries",
                self.process, self.address
            );
        }
        if let Err(error) = result {
            panic!("process {}: {error}", self.process);
        }
    }

    pub(crate) fn report_cut(&self, epoch: u64, source: &str, cut: PartitionOffset) -> Result<(), CheckpointError> {
        self.request(&Request::ReportCut { epoch, source: source.to_string(), cut })
    }

    pub(crate) fn report_state(&self, epoch: u64, state: StateFileRef) -> Result<(), CheckpointError> {
        self.request(&Request::ReportState { epoch, state })
    }

    pub(crate) fn report_prepared(&self, epoch: u64, sink: &str, worker: usize) -> Result<(), CheckpointError> {
        self.request(&Request::ReportPrepared { epoch, sink: sink.to_string(), worker })
    }

    /// Applies what process 0 pushes to `live` (this process's copy), acknowledging each push
    /// once applied, until the connection closes.
    fn listen(self: &Arc<Self>, live: Weak<LiveCheckpoint>) -> Result<(), CheckpointError> {
        let mut connection = self.push.lock().expect("push connection").take().expect("listened once");
        let member = self.clone();
        std::thread::Builder::new()
            .name("weir-checkpoint-member".to_string())
            .spawn(move || {
                while let Ok(Some(push)) = connection.receive::<Push>() {
                    let Some(live) = live.upgrade() else { break };
                    match push {
                        Push::Boundaries(boundaries) => live.receive_boundaries(
                            &boundaries
                                .into_iter()
                                .map(|(epoch, boundary)| Boundary { epoch, boundary })
                                .collect::<Vec<_>>(),
                        ),
                        Push::Committed(next) => live.receive_committed(next),
                    }
                    if connection.send(&Response::Done).is_err() {
                        break;
                    }
                }
                member.lost.store(true, Ordering::Release);
                tracing::debug!(process = member.process, "the checkpoint coordinator's push connection closed");
            })
            .map_err(|e| {
                CheckpointError::io("cannot start a thread for the checkpoint coordinator at", &self.address, e)
            })?;
        Ok(())
    }
}

/// What a process other than 0 needs to join the cluster's checkpoint coordinator.
#[derive(Clone, Debug)]
pub struct JoinSettings {
    /// The coordinator's address.
    pub address: String,
    /// This process: its index, total workers, fingerprint.
    pub hello: JoinRequest,
    /// The checkpoint directory as this process sees it (shared storage).
    pub dir: PathBuf,
    /// The checkpoint interval (only process 0 publishes; kept for symmetry).
    pub interval: Duration,
    /// Committed epochs kept (process 0 cleans up).
    pub keep: usize,
    /// Records per epoch: this process counts its sources' records and sends the counts along.
    pub records_per_epoch: Option<u64>,
    /// How long to wait for process 0 to accept the connection.
    pub timeout: Duration,
}

/// Joins process 0's coordinator (retrying until `settings.timeout` while it is not up yet):
/// says hello, checks that the checkpoint directory is shared, and answers the query id and this
/// process's `LiveCheckpoint`, which forwards to process 0.
pub fn join(settings: &JoinSettings) -> Result<(String, Arc<LiveCheckpoint>), CheckpointError> {
    let deadline = Instant::now() + settings.timeout;
    let address = settings.address.as_str();
    let mut hello = Member::connect(address, deadline)?;
    let io = |e| CheckpointError::io("lost the cluster's checkpoint coordinator (process 0) at", address, e);
    hello.send(&Request::Hello(settings.hello.clone())).map_err(io)?;
    let welcome = match hello.receive::<Response>().map_err(io)? {
        Some(Response::Welcome(welcome)) => welcome,
        Some(Response::Failed(why)) => return Err(cluster_error(address, why)),
        _ => return Err(cluster_error(address, format!("no welcome from the checkpoint coordinator at {address}"))),
    };
    let dir = shared_dir(&settings.dir, welcome.metadata, settings.hello.process)?;
    let mut push = Member::connect(address, deadline)?;
    push.send(&Request::Subscribe { process: settings.hello.process }).map_err(io)?;
    match push.receive::<Response>().map_err(io)? {
        Some(Response::Done) => {}
        Some(Response::Failed(why)) => return Err(cluster_error(address, why)),
        _ => return Err(cluster_error(address, "the coordinator did not take the subscription".to_string())),
    }
    let member = Arc::new(Member {
        address: address.to_string(),
        process: settings.hello.process,
        pool: Mutex::new(vec![hello]),
        push: Mutex::new(Some(push)),
        lost: AtomicBool::new(false),
        failure: Mutex::new(None),
    });
    let resume = welcome.resume.into_resume(&dir);
    let id = dir.metadata().query_id.clone();
    let live = LiveCheckpoint::open(dir, resume, settings.interval, settings.keep)
        .with_records_per_epoch(settings.records_per_epoch)
        .with_cluster_role(Role::Member(member.clone()));
    let live = Arc::new(live);
    member.listen(Arc::downgrade(&live))?;
    match live.resumed() {
        None => {
            tracing::info!(target: "weir::checkpoint", address, process = settings.hello.process, query_id = %id, "joined the checkpoint coordinator: starting fresh")
        }
        Some((epoch, at)) => {
            tracing::info!(target: "weir::checkpoint", address, process = settings.hello.process, query_id = %id, epoch, resume_at = %at, "joined the checkpoint coordinator: resuming after the last committed epoch")
        }
    }
    Ok((id, live))
}

/// The checkpoint directory process 0 opened, as this process sees it at `path`: it must hold the
/// same checkpoint (shared storage), since every process writes its workers' state files there.
fn shared_dir(path: &Path, metadata: CheckpointMetadata, process: usize) -> Result<CheckpointDir, CheckpointError> {
    let seen: Option<CheckpointMetadata> = file::read_json(&path.join(METADATA), FileKind::Metadata).ok();
    let same = seen.as_ref().is_some_and(|seen| seen.query_id == metadata.query_id && seen.created == metadata.created);
    if !same {
        return Err(CheckpointError::Inconsistent {
            path: path.to_path_buf(),
            problem: format!(
                "process {process} does not see the checkpoint that process 0 opened (query {}) in this directory \
                 ({}): in a cluster every process must reach the same checkpoint directory, on a shared filesystem",
                metadata.query_id,
                match seen {
                    Some(seen) => format!("it holds query {}", seen.query_id),
                    None => "it has no readable metadata".to_string(),
                }
            ),
        });
    }
    Ok(CheckpointDir { root: Arc::new(path.to_path_buf()), metadata: Arc::new(metadata) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{NodeFingerprint, WatermarkState};

    fn fingerprint(kind: &str) -> DataflowFingerprint {
        DataflowFingerprint {
            nodes: vec![NodeFingerprint {
                name: "count".to_string(),
                role: "operator".to_string(),
                kind: kind.to_string(),
                state: "windows".to_string(),
                stateful: true,
                output_mode: None,
                exchange: None,
                key_type: None,
                state_type: None,
            }],
        }
    }

    struct Cluster {
        path: PathBuf,
        address: String,
        workers: usize,
    }

    impl Cluster {
        fn new(name: &str, workers: usize) -> Self {
            let path = std::env::temp_dir().join(format!("weir-cluster-checkpoint-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            Cluster { path, address: String::new(), workers }
        }

        /// Process 0: opens (or resumes) the checkpoint and serves it.
        fn coordinator(&mut self, interval: Duration) -> Arc<LiveCheckpoint> {
            let metadata = CheckpointMetadata::new("q", "cluster", self.workers, fingerprint("tumbling 10s"));
            let (dir, resume) = CheckpointDir::open_or_create(&self.path, &metadata).unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            self.address = listener.local_addr().unwrap().to_string();
            {
                // No limit on epochs in flight: the tests publish boundaries without reporting.
                let live = LiveCheckpoint::open(dir, resume, interval, 2).with_max_epochs_in_flight(None);
                serve(listener, &self.address.clone(), 2, live).unwrap()
            }
        }

        fn join_settings(&self) -> JoinSettings {
            JoinSettings {
                address: self.address.clone(),
                hello: JoinRequest { process: 1, workers: self.workers, fingerprint: fingerprint("tumbling 10s") },
                dir: self.path.clone(),
                interval: Duration::from_secs(1),
                keep: 2,
                records_per_epoch: None,
                timeout: Duration::from_secs(5),
            }
        }

        /// Process 1.
        fn member(&self) -> Arc<LiveCheckpoint> {
            join(&self.join_settings()).unwrap().1
        }
    }

    impl Drop for Cluster {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }

    /// Seals both processes at once (each waits for the other).
    fn seal(coordinator: &Arc<LiveCheckpoint>, member: &Arc<LiveCheckpoint>, workers: usize) {
        let other = member.clone();
        let sealing = std::thread::spawn(move || other.seal(workers));
        coordinator.seal(workers).unwrap();
        sealing.join().unwrap().unwrap();
    }

    fn cut(partition: usize, position: u64) -> PartitionOffset {
        let watermark = WatermarkState { max_event_time: None, watermark: EventTime::MIN, idle: false };
        PartitionOffset { partition, position: position.into(), watermark }
    }

    /// Four source instances, two in each process, downgrade concurrently while boundaries are
    /// published every 50 µs. After any instance's downgrade to `c` returns, every boundary
    /// `≤ c` that process 0 published is already in process 1's copy (it was pushed before the
    /// lock was released), and each instance only ever sees new boundaries above the capability
    /// it had before. Fails if boundaries are pushed after the lock, or not at all.
    #[test]
    fn every_process_knows_a_boundary_before_any_source_passes_it() {
        let mut cluster = Cluster::new("invariant", 4);
        let coordinator = cluster.coordinator(Duration::from_micros(50));
        let member = cluster.member();
        for (live, worker) in [(&coordinator, 0), (&coordinator, 1), (&member, 2), (&member, 3)] {
            live.register_source("s", 4, worker, Some(EventTime::MIN));
        }
        seal(&coordinator, &member, 4);
        let threads: Vec<_> = [(&coordinator, 0), (&coordinator, 1), (&member, 2), (&member, 3)]
            .into_iter()
            .map(|(live, worker)| {
                let (live, coordinator, member) = (live.clone(), coordinator.clone(), member.clone());
                std::thread::spawn(move || {
                    let mut previous = EventTime::MIN;
                    let mut seen = 0;
                    for step in 1..400u64 {
                        let capability = EventTime::from_millis(step * 10 + worker as u64);
                        let boundaries = live.source_downgrade("s", worker, Some(capability));
                        for b in &boundaries[seen..] {
                            assert!(b.boundary > previous, "worker {worker}: boundary {b:?} not above {previous}");
                        }
                        seen = boundaries.len();
                        previous = capability;
                        let known = member.boundaries();
                        for b in coordinator.boundaries().iter().filter(|b| b.boundary <= capability) {
                            assert!(known.contains(b), "process 1 does not know {b:?}, below capability {capability}");
                        }
                    }
                    live.source_finished("s", worker, vec![cut(worker, 0)]);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let (published, known) = (coordinator.boundaries(), member.boundaries());
        assert!(published.len() > 10, "only {} boundaries were published", published.len());
        assert_eq!(known, published, "process 1 ends with every boundary, in order");
        assert_eq!(known.last().unwrap().boundary, EventTime::MAX, "the last boundary ends the input");
        assert_eq!(member.highest_boundary(), Some(EventTime::MAX));
    }

    /// Reports from both processes commit an epoch: process 1 writes its worker's state file into
    /// the shared directory itself; both processes learn the commit. A restart resumes both from
    /// it, process 1 reading its own snapshot back.
    #[test]
    fn reports_from_every_process_commit_and_resume() {
        let participants_workers = 2;
        let mut cluster = Cluster::new("reports", participants_workers);
        let coordinator = cluster.coordinator(Duration::ZERO);
        let member = cluster.member();
        for (live, worker) in [(&coordinator, 0), (&member, 1)] {
            live.register_source("s", 2, worker, Some(EventTime::MIN));
            live.register_stateful("op");
            live.register_sink("out");
        }
        seal(&coordinator, &member, 2);
        coordinator.source_downgrade("s", 0, Some(EventTime::from_millis(10)));
        let boundaries = member.source_downgrade("s", 1, Some(EventTime::from_millis(20)));
        // One boundary per downgrade (interval 0): above MIN, then above 10.
        assert_eq!(boundaries.len(), 2, "{boundaries:?}");
        assert_eq!(member.boundaries(), coordinator.boundaries());
        let epoch = boundaries[0].epoch;
        coordinator.snapshot("op", 0, epoch, b"zero").unwrap();
        coordinator.report_cut(epoch, "s", cut(0, 7)).unwrap();
        coordinator.report_prepared(epoch, "out", 0).unwrap();
        member.snapshot("op", 1, epoch, b"one").unwrap();
        member.report_cut(epoch, "s", cut(1, 9)).unwrap();
        assert_eq!(member.last_committed(), None, "process 1's sink has not prepared yet");
        member.report_prepared(epoch, "out", 1).unwrap();
        assert_eq!(coordinator.last_committed(), Some(epoch));
        assert_eq!(member.last_committed(), Some(epoch), "the commit is pushed before the last report returns");
        assert!(member.report_cut(epoch + 5, "s", cut(1, 9)).is_err(), "errors of process 0 come back");

        // Restart both processes from the checkpoint.
        let coordinator = cluster.coordinator(Duration::ZERO);
        let member = cluster.member();
        assert_eq!(member.resumed(), coordinator.resumed());
        assert_eq!(member.resumed().unwrap().0, epoch);
        assert_eq!(member.resume_state("op", 1).unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(member.resume_cut("s", 1).unwrap().position, serde_json::json!(9));
        assert_eq!(
            member.resume_state_file("op", 1).unwrap().path,
            cluster.path.join("state/op/1").join(epoch.to_string())
        );
        assert_eq!(member.last_committed(), Some(epoch));
    }

    /// A process with another dataflow, another worker count, a directory that is not the shared
    /// one, or a duplicate process index is refused with a message that says so.
    #[test]
    fn mismatched_processes_are_refused() {
        let mut cluster = Cluster::new("refused", 2);
        let _coordinator = cluster.coordinator(Duration::ZERO);
        let error = |settings: JoinSettings| join(&settings).expect_err("refused").to_string();

        let mut other = cluster.join_settings();
        other.hello.fingerprint = fingerprint("tumbling 5s");
        let message = error(other);
        assert!(message.contains("different dataflow") && message.contains("tumbling 5s"), "{message}");

        let mut other = cluster.join_settings();
        other.hello.workers = 4;
        let message = error(other);
        assert!(message.contains("runs 4 workers in total, process 0 2"), "{message}");

        let mut other = cluster.join_settings();
        other.dir = cluster.path.with_extension("elsewhere");
        let message = error(other);
        assert!(message.contains("shared filesystem"), "{message}");

        let _member = cluster.member();
        let message = error(cluster.join_settings());
        assert!(message.contains("two processes joined as process 1"), "{message}");

        let mut other = cluster.join_settings();
        other.hello.process = 2;
        assert!(error(other).contains("processes 0 .. 1"));
    }

    /// A process that leaves after joining but before sealing fails process 0's seal instead of
    /// leaving it waiting.
    #[test]
    fn a_process_leaving_before_the_seal_fails_it() {
        let mut cluster = Cluster::new("leaving", 2);
        let coordinator = cluster.coordinator(Duration::ZERO);
        {
            let mut hello = Connection::new(TcpStream::connect(&cluster.address).unwrap()).unwrap();
            hello.send(&Request::Hello(cluster.join_settings().hello)).unwrap();
            assert!(matches!(hello.receive::<Response>().unwrap(), Some(Response::Welcome(_))));
            let mut push = Connection::new(TcpStream::connect(&cluster.address).unwrap()).unwrap();
            push.send(&Request::Subscribe { process: 1 }).unwrap();
            assert!(matches!(push.receive::<Response>().unwrap(), Some(Response::Done)));
        }
        let message = coordinator.seal(2).expect_err("the seal fails").to_string();
        assert!(message.contains("process 1 of the cluster left before the query started"), "{message}");
    }
}
