//! How an operation runs without doing I/O.
//!
//! An operation is written as straight-line `async` code over an [`Io`]:
//! each `io.call(request).await` is a point where the operation stops until
//! the caller has performed that request. Nothing here polls a socket or a
//! file: [`Operation::poll`] runs the code until every branch waits on a
//! request, and hands the new requests out; [`Operation::respond`] hands one
//! result back, in any order, and the next poll goes on from there. The
//! caller chooses how many requests run at once and in which order, which is
//! what lets the tests drive operations over a simulated share with any
//! interleaving they like (see `crates/core/tests/ops.rs`).
//!
//! Requests that do not depend on each other are asked for together
//! ([`Io::all`], [`join_all`]), so a caller can run them in parallel: on a
//! network share, round trips, not CPU, are what an operation costs.

use super::io::{Failure, IoError, Level, Log, Request, Response};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// A request's number within its operation, unique for the operation's life.
pub type RequestId = u32;

/// What an operation shares with the futures it awaits.
#[derive(Default)]
struct Exchange {
    next_id: RequestId,
    issued: Vec<(RequestId, Request)>,
    outstanding: BTreeSet<RequestId>,
    answered: BTreeMap<RequestId, Response>,
    wakers: BTreeMap<RequestId, Waker>,
    logs: Vec<Log>,
    /// Parts of the answer handed out early, as the text of a JSON array
    /// being written (`[a,b` until taken).
    emitted: String,
}

/// The operation's side of the exchange: it asks, and awaits answers.
#[derive(Clone, Default)]
pub struct Io(Rc<RefCell<Exchange>>);

impl Io {
    /// One request, answered when the caller responds to it.
    pub fn call(&self, request: Request) -> Call {
        Call {
            io: self.clone(),
            state: CallState::Unissued(request),
        }
    }

    /// Requests that do not depend on each other, answered in order.
    pub async fn all(&self, requests: Vec<Request>) -> Vec<Response> {
        join_all(requests.into_iter().map(|r| self.call(r))).await
    }

    /// Hands the caller part of the answer now: `write` appends one JSON
    /// value (written once, straight where the caller takes it); nothing
    /// waits on it.
    pub fn emit_with(&self, write: impl FnOnce(&mut String)) {
        let emitted = &mut self.0.borrow_mut().emitted;
        emitted.push(if emitted.is_empty() { '[' } else { ',' });
        write(emitted);
    }

    /// Leaves a message for the caller's logger; nothing waits on it.
    pub fn log(&self, level: Level, message: impl Into<String>, fields: serde_json::Value) {
        self.0.borrow_mut().logs.push(Log {
            level,
            message: message.into(),
            fields: fields.to_string(),
        });
    }
}

/// A request in flight (see [`Io::call`]).
pub struct Call {
    io: Io,
    state: CallState,
}

enum CallState {
    Unissued(Request),
    Issued(RequestId),
    Answered,
}

impl Future for Call {
    type Output = Response;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let this = &mut *self;
        let mut exchange = this.io.0.borrow_mut();
        match std::mem::replace(&mut this.state, CallState::Answered) {
            CallState::Unissued(request) => {
                let id = exchange.next_id;
                exchange.next_id += 1;
                exchange.issued.push((id, request));
                exchange.outstanding.insert(id);
                exchange.wakers.insert(id, cx.waker().clone());
                this.state = CallState::Issued(id);
                Poll::Pending
            }
            CallState::Issued(id) => match exchange.answered.remove(&id) {
                Some(response) => Poll::Ready(response),
                None => {
                    exchange.wakers.insert(id, cx.waker().clone());
                    this.state = CallState::Issued(id);
                    Poll::Pending
                }
            },
            CallState::Answered => panic!("a request's future polled after it was answered"),
        }
    }
}

/// Runs futures side by side; their outputs in order. Only the futures
/// whose requests were answered are polled again, so a listing of a
/// thousand VMs costs no more per answer than one of one VM.
pub async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    JoinAll::new(futures.into_iter().collect()).await
}

struct JoinAll<F: Future> {
    children: Vec<Option<Pin<Box<F>>>>,
    outputs: Vec<Option<F::Output>>,
    remaining: usize,
    ready: Arc<Ready>,
    wakers: Vec<Waker>,
}

/// Which children were woken since the last poll, and who to tell.
#[derive(Default)]
struct Ready {
    indices: Mutex<Vec<usize>>,
    parent: Mutex<Option<Waker>>,
}

struct ChildWaker {
    index: usize,
    ready: Arc<Ready>,
}

impl Wake for ChildWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready
            .indices
            .lock()
            .expect("unpoisoned")
            .push(self.index);
        if let Some(parent) = self.ready.parent.lock().expect("unpoisoned").as_ref() {
            parent.wake_by_ref();
        }
    }
}

impl<F: Future> JoinAll<F> {
    fn new(futures: Vec<F>) -> Self {
        let ready = Arc::new(Ready::default());
        let count = futures.len();
        *ready.indices.lock().expect("unpoisoned") = (0..count).rev().collect();
        JoinAll {
            wakers: (0..count)
                .map(|index| {
                    Waker::from(Arc::new(ChildWaker {
                        index,
                        ready: ready.clone(),
                    }))
                })
                .collect(),
            children: futures.into_iter().map(|f| Some(Box::pin(f))).collect(),
            outputs: (0..count).map(|_| None).collect(),
            remaining: count,
            ready,
        }
    }
}

impl<F: Future> Future for JoinAll<F> {
    type Output = Vec<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Every field is Unpin (children are boxed).
        let this = self.get_mut();
        *this.ready.parent.lock().expect("unpoisoned") = Some(cx.waker().clone());
        loop {
            let Some(index) = this.ready.indices.lock().expect("unpoisoned").pop() else {
                break;
            };
            let Some(child) = this.children[index].as_mut() else {
                continue;
            };
            let mut child_cx = Context::from_waker(&this.wakers[index]);
            if let Poll::Ready(output) = child.as_mut().poll(&mut child_cx) {
                this.outputs[index] = Some(output);
                this.children[index] = None;
                this.remaining -= 1;
            }
        }
        if this.remaining > 0 {
            return Poll::Pending;
        }
        Poll::Ready(
            this.outputs
                .iter_mut()
                .map(|o| o.take().expect("every child finished"))
                .collect(),
        )
    }
}

impl<F: Future> Unpin for JoinAll<F> {}

/// What an operation wants next.
#[derive(Debug, PartialEq)]
pub enum Status {
    /// New requests to perform (with those still outstanding).
    Requests(Vec<(RequestId, Request)>),
    /// Nothing new: waiting on requests already handed out.
    Waiting,
    /// Finished: [`Operation::take_output`] has the answer.
    Done,
}

/// An operation's code, boxed: operations of every kind are one type.
type Body<T> = Pin<Box<dyn Future<Output = Result<T, Failure>>>>;

/// A repository operation in progress: a value that asks for one I/O at a
/// time (or several independent ones) and is handed each result until it
/// has its answer.
pub struct Operation<T> {
    io: Io,
    future: Option<Body<T>>,
    output: Option<Result<T, Failure>>,
}

impl<T: 'static> Operation<T> {
    /// The operation `body` describes, not started yet.
    pub fn new<F>(body: impl FnOnce(Io) -> F) -> Operation<T>
    where
        F: Future<Output = Result<T, Failure>> + 'static,
    {
        let io = Io::default();
        Operation {
            future: Some(Box::pin(body(io.clone()))),
            io,
            output: None,
        }
    }

    /// Runs the operation as far as it goes without an answer it lacks.
    pub fn poll(&mut self) -> Status {
        let Some(future) = self.future.as_mut() else {
            return Status::Done;
        };
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            self.output = Some(output);
            self.future = None;
            return Status::Done;
        }
        let mut exchange = self.io.0.borrow_mut();
        let issued = std::mem::take(&mut exchange.issued);
        if !issued.is_empty() {
            return Status::Requests(issued);
        }
        if exchange.outstanding.is_empty() && exchange.answered.is_empty() {
            // Only a bug makes a future wait on nothing; fail, never hang.
            drop(exchange);
            self.future = None;
            self.output = Some(Err(Failure::refused(
                "INTERNAL",
                "brcache: an operation waits on no request",
            )));
            return Status::Done;
        }
        Status::Waiting
    }

    /// Hands back the result of request `id`.
    pub fn respond(&mut self, id: RequestId, response: Response) -> Result<(), Failure> {
        let mut exchange = self.io.0.borrow_mut();
        if !exchange.outstanding.remove(&id) {
            return Err(Failure::Io(IoError::new(
                "INVALID_ARGUMENT",
                format!("request {id} is not outstanding"),
            )));
        }
        exchange.answered.insert(id, response);
        let waker = exchange.wakers.remove(&id);
        drop(exchange);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Request ids handed out and not answered yet.
    pub fn outstanding(&self) -> Vec<RequestId> {
        self.io.0.borrow().outstanding.iter().copied().collect()
    }

    /// The answer, once [`Status::Done`].
    pub fn take_output(&mut self) -> Option<Result<T, Failure>> {
        self.output.take()
    }

    /// Whether parts of the answer wait to be taken.
    pub fn has_emitted(&self) -> bool {
        !self.io.0.borrow().emitted.is_empty()
    }

    /// The parts of the answer emitted since the last call, as a JSON
    /// array's text (`[]` when none).
    pub fn take_emitted(&mut self) -> String {
        let mut emitted = std::mem::take(&mut self.io.0.borrow_mut().emitted);
        if emitted.is_empty() {
            emitted.push('[');
        }
        emitted.push(']');
        emitted
    }

    /// The messages left for the logger since the last call.
    pub fn take_logs(&mut self) -> Vec<Log> {
        std::mem::take(&mut self.io.0.borrow_mut().logs)
    }
}

/// Runs two futures side by side.
pub async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    Join2 {
        a: Box::pin(a),
        b: Box::pin(b),
        a_out: None,
        b_out: None,
    }
    .await
}

struct Join2<A: Future, B: Future> {
    a: Pin<Box<A>>,
    b: Pin<Box<B>>,
    a_out: Option<A::Output>,
    b_out: Option<B::Output>,
}

impl<A: Future, B: Future> Unpin for Join2<A, B> {}

impl<A: Future, B: Future> Future for Join2<A, B> {
    type Output = (A::Output, B::Output);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.a_out.is_none() {
            if let Poll::Ready(out) = this.a.as_mut().poll(cx) {
                this.a_out = Some(out);
            }
        }
        if this.b_out.is_none() {
            if let Poll::Ready(out) = this.b.as_mut().poll(cx) {
                this.b_out = Some(out);
            }
        }
        if this.a_out.is_some() && this.b_out.is_some() {
            return Poll::Ready((
                this.a_out.take().expect("set"),
                this.b_out.take().expect("set"),
            ));
        }
        Poll::Pending
    }
}
