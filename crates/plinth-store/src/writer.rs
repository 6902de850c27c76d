//! The single SQLite writer: one thread owns the write connection and runs
//! write jobs with group commit.
//!
//! Jobs queue on a channel. The thread takes every job that is waiting (up to
//! [`MAX_BATCH`]), opens one transaction, runs each job inside its own
//! SAVEPOINT (a failing job rolls back only itself), commits once, and only
//! then answers each job. So every write is still its own all-or-nothing unit
//! and no client hears "done" before its write is committed, while under load
//! many writes share one commit and one thread wake-up.

use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::{Result, StoreError};

/// Most jobs committed together.
const MAX_BATCH: usize = 64;

/// A unit of work on the write connection, type-erased for the queue.
pub(crate) trait Job: Send {
    /// Runs inside a savepoint; returns whether it succeeded (else it is rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Delivers the outcome once the batch's commit is known.
    fn finish(self: Box<Self>, commit: Result<()>);
}

struct TypedJob<T, F> {
    f: Option<F>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let r = match self.f.take() {
            Some(f) => f(conn),
            None => Err(StoreError::Internal("write job ran twice".into())),
        };
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<()>) {
        let outcome = match (commit, self.result) {
            (_, None) => Err(StoreError::Internal("write job did not run".into())),
            // A failed job's error stands whatever happened to the batch.
            (_, Some(Err(e))) => Err(e),
            (Ok(()), Some(Ok(v))) => Ok(v),
            (Err(e), Some(Ok(_))) => Err(e),
        };
        // The requester may have gone away (client disconnected); nothing to do.
        let _ = self.reply.send(outcome);
    }
}

/// The sending side of the writer thread.
pub(crate) struct Writer {
    queue: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    /// Closing the queue ends the thread after the jobs already queued; joining
    /// it closes the connection cleanly (SQLite checkpoints the WAL into the
    /// database file), so a stopped server leaves a self-contained database.
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(t) = self.thread.take() {
            // If the last handle is released by a job on the writer thread
            // itself, the thread ends on its own once the queue is empty.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Writer {
    /// Moves `conn` to a new writer thread.
    pub(crate) fn start(conn: Connection) -> Result<Writer> {
        let (queue, jobs) = mpsc::channel::<Box<dyn Job>>();
        let thread = std::thread::Builder::new()
            .name("plinth-sqlite-writer".into())
            .spawn(move || {
                run(&conn, &jobs);
                drop(conn);
            })
            .map_err(|e| StoreError::Internal(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Runs `f` on the write connection as its own all-or-nothing unit and
    /// returns its result after it is committed.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = TypedJob {
            f: Some(f),
            result: None,
            reply,
        };
        self.queue
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("the writer is closed".into()))?
            .send(Box::new(job))
            .map_err(|_| StoreError::Unavailable("the writer thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer thread has stopped".into()))?
    }
}

fn run(conn: &Connection, jobs: &mpsc::Receiver<Box<dyn Job>>) {
    // Ends when every sender (the store) is gone.
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let commit = run_batch(conn, &mut batch);
        for job in batch {
            job.finish(clone_result(&commit));
        }
    }
}

fn clone_result(r: &Result<()>) -> Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(StoreError::Unavailable(m)) => Err(StoreError::Unavailable(m.clone())),
        Err(e) => Err(StoreError::Internal(e.to_string())),
    }
}

fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(crate::sqlite::map_err)?;
    for job in batch.iter_mut() {
        if let Err(e) = conn.execute_batch("SAVEPOINT job") {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(crate::sqlite::map_err(e));
        }
        let ok = job.run(conn);
        let end = if ok {
            "RELEASE job"
        } else {
            "ROLLBACK TO job; RELEASE job"
        };
        if let Err(e) = conn.execute_batch(end) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(crate::sqlite::map_err(e));
        }
    }
    if let Err(e) = conn.execute_batch("COMMIT") {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(crate::sqlite::map_err(e));
    }
    Ok(())
}
