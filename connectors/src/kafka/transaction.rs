//! The transaction state machine of the exactly-once Kafka sink, as pure logic (no broker).
//!
//! The sink drives librdkafka's transactional producer through
//! `init → (begin → produce* → commit)*`. This module says which calls are allowed in which state
//! and what to do when a call fails, from the class librdkafka gives the error:
//!
//! | error class (librdkafka)            | reaction                                              |
//! |-------------------------------------|-------------------------------------------------------|
//! | fenced (`_FENCED`, `PRODUCER_FENCED`, `INVALID_PRODUCER_EPOCH`) | fail the query, naming the fencing |
//! | fatal (`rd_kafka_error_is_fatal`)   | fail the query                                        |
//! | abortable (`txn_requires_abort`)    | abort the open transaction, then fail the query       |
//! | retriable (`is_retriable`)          | retry the same call, up to `max_retries` times        |
//! | anything else                       | abort if a transaction is open, then fail the query   |
//!
//! A failed query restarts from its last checkpoint; `init_transactions` with the same
//! `transactional.id` then aborts whatever the failed run left open.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Where the producer is in its transactional life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnState {
    /// Created; `init_transactions` has not succeeded yet.
    Uninitialized,
    /// Initialised, no transaction open.
    Ready,
    /// A transaction is open: records may be produced into it.
    Open,
    /// `commit_transaction` was called and has not succeeded yet.
    Committing,
    /// `abort_transaction` was called and has not succeeded yet.
    Aborting,
    /// The producer is unusable (fenced, fatal error, or gave up); the query fails.
    Failed,
}

/// A call of the transactional API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnStep {
    /// `init_transactions`: fences older producers with the same `transactional.id`.
    Init,
    /// `begin_transaction`.
    Begin,
    /// Producing a record into the open transaction (including its delivery report).
    Produce,
    /// `commit_transaction`.
    Commit,
    /// `abort_transaction`.
    Abort,
}

/// What librdkafka said about a failed call, reduced to what decides the next step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorClass {
    /// The same call may be retried.
    pub retriable: bool,
    /// The open transaction must be aborted.
    pub requires_abort: bool,
    /// The producer instance is unusable.
    pub fatal: bool,
    /// Another producer with the same `transactional.id` took over (a zombie was fenced).
    pub fenced: bool,
}

impl ErrorClass {
    /// The class of an error returned by a transactional API call (or a delivery report).
    pub fn of(error: &KafkaError) -> ErrorClass {
        match error {
            KafkaError::Transaction(e) => ErrorClass {
                retriable: e.is_retriable(),
                requires_abort: e.txn_requires_abort(),
                fatal: e.is_fatal(),
                fenced: is_fencing(e.code()),
            },
            other => ErrorClass::of_code(other.rdkafka_error_code()),
        }
    }

    /// The class of a bare error code (delivery reports and flushes carry no flags): fencing codes
    /// are fenced, a local timeout is retriable, anything else inside a transaction needs an abort.
    pub fn of_code(code: Option<RDKafkaErrorCode>) -> ErrorClass {
        match code {
            Some(code) if is_fencing(code) => ErrorClass { fenced: true, fatal: true, ..ErrorClass::default() },
            Some(RDKafkaErrorCode::OperationTimedOut) => ErrorClass { retriable: true, ..ErrorClass::default() },
            _ => ErrorClass { requires_abort: true, ..ErrorClass::default() },
        }
    }
}

/// Whether `code` means this producer was fenced by a newer one with the same `transactional.id`.
pub fn is_fencing(code: RDKafkaErrorCode) -> bool {
    matches!(code, RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch)
}

/// What the driver must do after a failed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reaction {
    /// Call the same step again.
    Retry,
    /// Call `abort_transaction`, then fail the query.
    AbortAndFail,
    /// Fail the query now (`fenced`: because a newer producer took over the `transactional.id`).
    Fail {
        /// The failure is a fencing.
        fenced: bool,
    },
}

/// A call that is not allowed in the current state (a bug in the driver, never a broker error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("transactional step {step:?} is not allowed in state {state:?}")]
pub struct InvalidTransition {
    /// The state the machine was in.
    pub state: TxnState,
    /// The step that was attempted.
    pub step: TxnStep,
}

/// The state machine: call [`TransactionMachine::start`] before each step, then
/// [`TransactionMachine::succeeded`] or [`TransactionMachine::failed`] with its outcome.
#[derive(Clone, Debug)]
pub struct TransactionMachine {
    state: TxnState,
    max_retries: u32,
    attempts: u32,
    committed: u64,
}

impl TransactionMachine {
    /// A machine for a fresh producer; retriable errors are retried up to `max_retries` times per step.
    pub fn new(max_retries: u32) -> Self {
        TransactionMachine { state: TxnState::Uninitialized, max_retries, attempts: 0, committed: 0 }
    }

    /// The current state.
    pub fn state(&self) -> TxnState {
        self.state
    }

    /// Transactions committed so far.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Checks that `step` is allowed now and moves into it.
    pub fn start(&mut self, step: TxnStep) -> Result<(), InvalidTransition> {
        use TxnState::*;
        let next = match (self.state, step) {
            (Uninitialized, TxnStep::Init) => Uninitialized,
            (Ready, TxnStep::Begin) => Ready,
            (Open, TxnStep::Produce) => Open,
            (Open, TxnStep::Commit) | (Committing, TxnStep::Commit) => Committing,
            (Open | Committing | Aborting, TxnStep::Abort) => Aborting,
            (state, step) => return Err(InvalidTransition { state, step }),
        };
        self.state = next;
        Ok(())
    }

    /// `step` succeeded.
    pub fn succeeded(&mut self, step: TxnStep) {
        self.attempts = 0;
        self.state = match step {
            TxnStep::Init => TxnState::Ready,
            TxnStep::Begin | TxnStep::Produce => TxnState::Open,
            TxnStep::Commit => {
                self.committed += 1;
                TxnState::Ready
            }
            TxnStep::Abort => TxnState::Ready,
        };
    }

    /// `step` failed with an error of class `class`: what to do next. After `AbortAndFail` the
    /// driver calls `start(Abort)`; after `Fail` the machine is `Failed` and allows nothing.
    pub fn failed(&mut self, step: TxnStep, class: ErrorClass) -> Reaction {
        let in_transaction = matches!(step, TxnStep::Begin | TxnStep::Produce | TxnStep::Commit)
            && matches!(self.state, TxnState::Open | TxnState::Committing | TxnState::Ready);
        let reaction = if class.fenced {
            Reaction::Fail { fenced: true }
        } else if class.fatal {
            Reaction::Fail { fenced: false }
        } else if class.requires_abort && step != TxnStep::Abort && step != TxnStep::Init {
            Reaction::AbortAndFail
        } else if class.retriable && self.attempts < self.max_retries {
            self.attempts += 1;
            Reaction::Retry
        } else if in_transaction && step != TxnStep::Begin {
            Reaction::AbortAndFail
        } else {
            Reaction::Fail { fenced: false }
        };
        match reaction {
            Reaction::Retry => {}
            Reaction::AbortAndFail => {
                self.attempts = 0;
                self.state = TxnState::Aborting;
            }
            Reaction::Fail { .. } => self.state = TxnState::Failed,
        }
        reaction
    }

    /// Marks the machine failed (after an abort that preceded failing the query).
    pub fn fail(&mut self) {
        self.state = TxnState::Failed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETRIABLE: ErrorClass = ErrorClass { retriable: true, requires_abort: false, fatal: false, fenced: false };
    const ABORTABLE: ErrorClass = ErrorClass { retriable: false, requires_abort: true, fatal: false, fenced: false };
    const FATAL: ErrorClass = ErrorClass { retriable: false, requires_abort: false, fatal: true, fenced: false };
    const FENCED: ErrorClass = ErrorClass { retriable: false, requires_abort: false, fatal: true, fenced: true };

    fn ready() -> TransactionMachine {
        let mut m = TransactionMachine::new(2);
        m.start(TxnStep::Init).unwrap();
        m.succeeded(TxnStep::Init);
        m
    }

    fn open() -> TransactionMachine {
        let mut m = ready();
        m.start(TxnStep::Begin).unwrap();
        m.succeeded(TxnStep::Begin);
        m
    }

    #[test]
    fn a_happy_epoch_goes_ready_open_committing_ready_and_counts_one_commit() {
        let mut m = ready();
        assert_eq!(m.state(), TxnState::Ready);
        for epoch in 1..=3 {
            m.start(TxnStep::Begin).unwrap();
            m.succeeded(TxnStep::Begin);
            assert_eq!(m.state(), TxnState::Open);
            m.start(TxnStep::Produce).unwrap();
            m.succeeded(TxnStep::Produce);
            m.start(TxnStep::Commit).unwrap();
            assert_eq!(m.state(), TxnState::Committing);
            m.succeeded(TxnStep::Commit);
            assert_eq!((m.state(), m.committed()), (TxnState::Ready, epoch));
        }
    }

    #[test]
    fn steps_out_of_order_are_refused() {
        let mut m = TransactionMachine::new(0);
        for step in [TxnStep::Begin, TxnStep::Produce, TxnStep::Commit, TxnStep::Abort] {
            assert_eq!(m.start(step), Err(InvalidTransition { state: TxnState::Uninitialized, step }));
        }
        let mut m = ready();
        assert!(m.start(TxnStep::Init).is_err(), "init twice");
        assert!(m.start(TxnStep::Produce).is_err(), "produce outside a transaction");
        assert!(m.start(TxnStep::Commit).is_err(), "commit without begin");
        let mut m = open();
        assert!(m.start(TxnStep::Begin).is_err(), "nested begin");
        m.failed(TxnStep::Produce, FENCED);
        for step in [TxnStep::Init, TxnStep::Begin, TxnStep::Produce, TxnStep::Commit, TxnStep::Abort] {
            assert!(m.start(step).is_err(), "{step:?} after failure");
        }
    }

    #[test]
    fn retriable_errors_are_retried_up_to_the_limit_then_abort_and_fail() {
        let mut m = open();
        m.start(TxnStep::Commit).unwrap();
        assert_eq!(m.failed(TxnStep::Commit, RETRIABLE), Reaction::Retry);
        m.start(TxnStep::Commit).unwrap();
        assert_eq!(m.failed(TxnStep::Commit, RETRIABLE), Reaction::Retry);
        m.start(TxnStep::Commit).unwrap();
        assert_eq!(m.failed(TxnStep::Commit, RETRIABLE), Reaction::AbortAndFail, "third failure, limit 2");
        assert_eq!(m.state(), TxnState::Aborting);
        m.start(TxnStep::Abort).unwrap();
        m.succeeded(TxnStep::Abort);
        m.fail();
        assert_eq!(m.state(), TxnState::Failed);
    }

    #[test]
    fn a_success_resets_the_retry_budget() {
        let mut m = open();
        m.start(TxnStep::Commit).unwrap();
        assert_eq!(m.failed(TxnStep::Commit, RETRIABLE), Reaction::Retry);
        assert_eq!(m.failed(TxnStep::Commit, RETRIABLE), Reaction::Retry);
        m.succeeded(TxnStep::Commit);
        m.start(TxnStep::Begin).unwrap();
        m.succeeded(TxnStep::Begin);
        m.start(TxnStep::Commit).unwrap();
        assert_eq!(m.failed(TxnStep::Commit, RETRIABLE), Reaction::Retry);
    }

    #[test]
    fn init_retries_retriable_errors_and_fails_on_others_without_abort() {
        let mut m = TransactionMachine::new(1);
        m.start(TxnStep::Init).unwrap();
        assert_eq!(m.failed(TxnStep::Init, RETRIABLE), Reaction::Retry);
        assert_eq!(m.failed(TxnStep::Init, RETRIABLE), Reaction::Fail { fenced: false });
        let mut m = TransactionMachine::new(1);
        m.start(TxnStep::Init).unwrap();
        assert_eq!(m.failed(TxnStep::Init, ABORTABLE), Reaction::Fail { fenced: false }, "nothing to abort");
    }

    #[test]
    fn abortable_errors_abort_then_fail() {
        for step in [TxnStep::Produce, TxnStep::Commit] {
            let mut m = open();
            m.start(step).unwrap();
            assert_eq!(m.failed(step, ABORTABLE), Reaction::AbortAndFail, "{step:?}");
            assert_eq!(m.state(), TxnState::Aborting);
        }
        let mut m = open();
        m.start(TxnStep::Abort).unwrap();
        assert_eq!(m.failed(TxnStep::Abort, ABORTABLE), Reaction::Fail { fenced: false }, "abort of an abort");
    }

    #[test]
    fn fatal_and_fenced_errors_fail_at_once_and_name_the_fencing() {
        for step in [TxnStep::Init, TxnStep::Begin, TxnStep::Produce, TxnStep::Commit] {
            let mut m = if step == TxnStep::Init { TransactionMachine::new(5) } else { open() };
            if step == TxnStep::Begin {
                m = ready();
            }
            m.start(step).unwrap();
            assert_eq!(m.failed(step, FENCED), Reaction::Fail { fenced: true }, "{step:?}");
            assert_eq!(m.state(), TxnState::Failed);
        }
        let mut m = open();
        m.start(TxnStep::Commit).unwrap();
        let retriable_but_fatal = ErrorClass { retriable: true, ..FATAL };
        assert_eq!(m.failed(TxnStep::Commit, retriable_but_fatal), Reaction::Fail { fenced: false });
    }

    #[test]
    fn bare_error_codes_are_classified() {
        assert!(ErrorClass::of_code(Some(RDKafkaErrorCode::ProducerFenced)).fenced);
        assert!(ErrorClass::of_code(Some(RDKafkaErrorCode::Fenced)).fenced);
        assert!(ErrorClass::of_code(Some(RDKafkaErrorCode::InvalidProducerEpoch)).fenced);
        assert!(ErrorClass::of_code(Some(RDKafkaErrorCode::OperationTimedOut)).retriable);
        let auth = ErrorClass::of_code(Some(RDKafkaErrorCode::TopicAuthorizationFailed));
        assert!(auth.requires_abort && !auth.retriable && !auth.fenced);
        assert!(ErrorClass::of_code(None).requires_abort);
    }
}
