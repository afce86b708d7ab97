//! A share in memory that performs operations' requests, with the
//! interleaving, the faults and the crashes a test chooses: the network the
//! operations are tested over (quinn-proto tests its connections the same
//! way, over a simulated network).

#![allow(dead_code)]

use brcache_core::ops::io::IoError;
use brcache_core::ops::{Listed, Op, Output, Request, RequestId, Response, Status};
use std::collections::{BTreeMap, BTreeSet};

/// A small deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, per_thousand: u64) -> bool {
        self.next() % 1000 < per_thousand
    }
}

#[derive(Debug, Clone)]
pub struct File {
    pub bytes: Vec<u8>,
    pub mtime: f64,
}

/// When a metadata file existed, in steps of the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Life {
    pub created: u64,
    pub deleted: Option<u64>,
}

/// The share: files and folders, locks, a clock, and a history.
#[derive(Debug, Default)]
pub struct Share {
    pub files: BTreeMap<String, File>,
    pub dirs: BTreeSet<String>,
    /// Lock path -> the operation holding it. A lock shows in its
    /// parent's listings as the folder `<name>.lock`, as proper-lockfile
    /// makes it.
    pub locks: BTreeMap<String, usize>,
    /// Operations killed: their locks stay, stale, until someone takes
    /// them over (any lock request does, as once proper-lockfile finds
    /// them stale).
    pub dead: BTreeSet<usize>,
    pub clock: f64,
    pub step: u64,
    /// Every metadata file's lives (a name can be written again after a delete).
    pub history: BTreeMap<String, Vec<Life>>,
    /// Every cache file written, for the never-torn check.
    pub cache_writes: Vec<Vec<u8>>,
    /// Calls performed, by kind.
    pub calls: BTreeMap<&'static str, usize>,
    /// The path of every create asked for, in order (taken or not).
    pub creates: Vec<String>,
    /// A share like Garage: a lock is granted to everyone and shows
    /// nowhere, and a create-only write overwrites.
    pub lockless: bool,
    /// An immutable share (Object Lock, `chattr +i`): a file once written
    /// is never replaced, and only metadata and data files go (their
    /// retention lifted, as Xen Orchestra deletes them). Whatever else is
    /// asked, a replace, a delete of an index or cache file, a lock, is
    /// refused and recorded in `violations`.
    pub immutable: bool,
    pub violations: Vec<String>,
}

fn failed(code: &str, path: &str) -> Response {
    Response::Failed(IoError::new(code, format!("{code}: {path}")))
}

fn is_metadata(path: &str) -> bool {
    path.starts_with("xo-vm-backups/") && path.ends_with(".json") && path.matches('/').count() == 2
}

impl Share {
    pub fn new() -> Share {
        Share {
            clock: 1_700_000_000_000.0,
            ..Share::default()
        }
    }

    fn parent(path: &str) -> &str {
        path.rsplit_once('/').map_or("", |(dir, _)| dir)
    }

    fn make_dirs(&mut self, dir: &str) {
        let mut at = dir;
        while !at.is_empty() {
            self.dirs.insert(at.to_string());
            at = Share::parent(at);
        }
    }

    pub fn is_dir(&self, path: &str) -> bool {
        path.is_empty() || self.dirs.contains(path)
    }

    fn children(&self, dir: &str) -> (Vec<String>, Vec<String>) {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let direct = |p: &String| {
            p.strip_prefix(&prefix)
                .filter(|rest| !rest.contains('/'))
                .map(str::to_string)
        };
        let files = self.files.keys().filter_map(direct).collect();
        let locks = self.locks.keys().map(|lock| format!("{lock}.lock"));
        let dirs = self
            .dirs
            .iter()
            .cloned()
            .chain(locks)
            .filter_map(|d| direct(&d))
            .collect();
        (files, dirs)
    }

    /// Puts a file as a writer outside brcache would (XO, a test's setup).
    pub fn put(&mut self, path: &str, bytes: Vec<u8>) {
        self.make_dirs(Share::parent(path));
        if is_metadata(path) && !self.files.contains_key(path) {
            self.history
                .entry(path.to_string())
                .or_default()
                .push(Life {
                    created: self.step,
                    deleted: None,
                });
        }
        self.files.insert(
            path.to_string(),
            File {
                bytes,
                mtime: self.clock,
            },
        );
    }

    pub fn remove(&mut self, path: &str) -> bool {
        let removed = self.files.remove(path).is_some();
        if removed && is_metadata(path) {
            if let Some(life) = self.history.get_mut(path).and_then(|l| l.last_mut()) {
                life.deleted = Some(self.step);
            }
        }
        removed
    }

    /// Whether `owner` may perform `request` now (a lock held by another
    /// makes a waiting lock request wait).
    pub fn ready(&self, owner: usize, request: &Request) -> bool {
        match request {
            Request::Lock { path, wait: true } => self
                .locks
                .get(path)
                .is_none_or(|o| *o == owner || self.dead.contains(o)),
            _ => true,
        }
    }

    /// What an immutable share refuses, if `request` is that.
    fn refused(&self, request: &Request) -> Option<String> {
        if !self.immutable {
            return None;
        }
        match request {
            Request::Replace { path, .. } => Some(format!("replace {path}")),
            Request::Create { path, .. } if self.files.contains_key(path) && self.lockless => {
                Some(format!("overwrite {path}"))
            }
            Request::Delete { path }
                if path.contains("/.brcache-index/") || path.ends_with("cache.json.gz") =>
            {
                Some(format!("delete {path}"))
            }
            Request::RemoveFolder { path } => Some(format!("remove folder {path}")),
            Request::Lock { path, .. } => Some(format!("lock {path}")),
            Request::CleanTemps { dir, .. } => Some(format!("clean temps in {dir}")),
            _ => None,
        }
    }

    pub fn perform(&mut self, owner: usize, request: &Request) -> Response {
        self.step += 1;
        self.clock += 7.0;
        *self.calls.entry(request.kind()).or_default() += 1;
        if let Some(violation) = self.refused(request) {
            self.violations.push(violation);
            return failed("EPERM", request.path());
        }
        match request {
            Request::List { path } | Request::ListFolders { path } => {
                if !self.is_dir(path) {
                    return failed(
                        if self.files.contains_key(path) {
                            "ENOTDIR"
                        } else {
                            "ENOENT"
                        },
                        path,
                    );
                }
                let (files, dirs) = self.children(path);
                let mut names: Vec<String> = if matches!(request, Request::List { .. }) {
                    files.into_iter().chain(dirs).collect()
                } else {
                    dirs
                };
                names.sort();
                Response::Names(names)
            }
            Request::Read { path } => match self.files.get(path) {
                Some(file) => Response::Bytes(file.bytes.clone()),
                None if self.is_dir(path) => failed("EISDIR", path),
                None => failed("ENOENT", path),
            },
            Request::Stat { path } => match self.files.get(path) {
                Some(file) => Response::Modified(file.mtime),
                None => failed("ENOENT", path),
            },
            Request::Create { path, bytes } => {
                self.creates.push(path.clone());
                if self.files.contains_key(path) && !self.lockless {
                    return failed("EEXIST", path);
                }
                self.put(path, bytes.clone());
                Response::Done
            }
            Request::Replace { path, bytes } => {
                if path.ends_with("/cache.json.gz") {
                    self.cache_writes.push(bytes.clone());
                }
                self.put(path, bytes.clone());
                Response::Done
            }
            Request::Delete { path } => {
                if self.remove(path) {
                    Response::Done
                } else {
                    failed("ENOENT", path)
                }
            }
            Request::MakeFolder { path } => {
                self.make_dirs(path);
                Response::Done
            }
            Request::RemoveFolder { path } => {
                let (files, dirs) = self.children(path);
                if !files.is_empty() || !dirs.is_empty() {
                    return failed("ENOTEMPTY", path);
                }
                self.dirs.remove(path);
                Response::Done
            }
            Request::Lock { path, .. } => {
                if !self.is_dir(Share::parent(path)) {
                    return failed("ENOENT", path);
                }
                match self.locks.get(path) {
                    // Granted, and nothing shows it (S3's handler).
                    _ if self.lockless => Response::Done,
                    Some(o) if *o != owner && !self.dead.contains(o) => failed("ELOCKED", path),
                    _ => {
                        self.locks.insert(path.clone(), owner);
                        Response::Done
                    }
                }
            }
            Request::Unlock { path } => {
                self.locks.remove(path);
                Response::Done
            }
            Request::CleanTemps { .. } => Response::Done,
            Request::Now => Response::Time(self.clock),
        }
    }

    /// A killed writer's locks go stale: they stay where they are, and the
    /// next lock request takes them over.
    pub fn release_locks_of(&mut self, owner: usize) {
        self.dead.insert(owner);
    }

    /// The locks there now, held or stale.
    pub fn lock_paths(&self) -> BTreeSet<String> {
        self.locks.keys().cloned().collect()
    }

    /// Metadata files there now, by key (`/xo-vm-backups/<vm>/<name>`).
    pub fn metadata_keys(&self) -> BTreeSet<String> {
        self.files
            .keys()
            .filter(|p| is_metadata(p))
            .map(|p| format!("/{p}"))
            .collect()
    }

    /// The keys of metadata files that existed at some step of `[from, to]`,
    /// and those that existed through all of it.
    pub fn lives_between(&self, from: u64, to: u64) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut some = BTreeSet::new();
        let mut all = BTreeSet::new();
        for (path, lives) in &self.history {
            for life in lives {
                let end = life.deleted.unwrap_or(u64::MAX);
                if life.created <= to && end > from {
                    some.insert(format!("/{path}"));
                }
                if life.created < from && end > to {
                    all.insert(format!("/{path}"));
                }
            }
        }
        (some, all)
    }
}

/// An operation running on the share.
pub struct Running {
    pub op: Op,
    pub pending: Vec<(RequestId, Request)>,
    pub started: u64,
    pub label: String,
}

/// What a finished operation answered, and when it ran.
pub struct Finished {
    pub label: String,
    pub output: Result<Output, brcache_core::ops::Failure>,
    pub started: u64,
    pub ended: u64,
}

/// Faults a schedule injects.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Per thousand requests: fails with EIO instead of being performed.
    pub io_errors: u64,
    /// Per thousand steps: the running operation is killed.
    pub kills: u64,
}

/// Runs operations side by side, one request at a time, in the order the
/// generator picks.
pub struct Sim {
    pub share: Share,
    pub rng: Rng,
    pub running: BTreeMap<usize, Running>,
    pub finished: Vec<Finished>,
    pub faults: Faults,
    pub killed: Vec<String>,
    next: usize,
}

impl Sim {
    pub fn new(seed: u64) -> Sim {
        Sim {
            share: Share::new(),
            rng: Rng::new(seed),
            running: BTreeMap::new(),
            finished: Vec::new(),
            faults: Faults::default(),
            killed: Vec::new(),
            next: 0,
        }
    }

    pub fn start(&mut self, label: impl Into<String>, mut op: Op) {
        let id = self.next;
        self.next += 1;
        let started = self.share.step;
        let label = label.into();
        match op.poll() {
            Status::Requests(pending) => {
                self.running.insert(
                    id,
                    Running {
                        op,
                        pending,
                        started,
                        label,
                    },
                );
            }
            Status::Done => {
                let output = op.take_output().expect("output");
                self.finished.push(Finished {
                    label,
                    output,
                    started,
                    ended: started,
                });
            }
            Status::Waiting => panic!("an operation waits before asking"),
        }
    }

    /// Performs one request of one operation; false when nothing can run.
    pub fn step(&mut self) -> bool {
        let ready: Vec<(usize, usize)> = self
            .running
            .iter()
            .flat_map(|(id, r)| {
                r.pending
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, req))| self.share.ready(*id, req))
                    .map(move |(i, _)| (*id, i))
            })
            .collect();
        if ready.is_empty() {
            return false;
        }
        let (id, index) = ready[self.rng.below(ready.len())];
        if self.faults.kills > 0 && self.rng.chance(self.faults.kills) {
            let running = self.running.remove(&id).expect("running");
            self.share.release_locks_of(id);
            self.killed.push(running.label);
            return true;
        }
        let running = self.running.get_mut(&id).expect("running");
        let (request_id, request) = running.pending.swap_remove(index);
        let response = if self.faults.io_errors > 0
            && !matches!(request, Request::Unlock { .. } | Request::Now)
            && self.rng.chance(self.faults.io_errors)
        {
            failed("EIO", request.path())
        } else {
            self.share.perform(id, &request)
        };
        running
            .op
            .respond(request_id, response)
            .expect("outstanding");
        match running.op.poll() {
            Status::Requests(more) => running.pending.extend(more),
            Status::Waiting => {}
            Status::Done => {
                let mut running = self.running.remove(&id).expect("running");
                assert!(
                    !self.share.locks.values().any(|o| *o == id),
                    "{} ended holding a lock",
                    running.label
                );
                let output = running.op.take_output().expect("output");
                self.finished.push(Finished {
                    label: running.label,
                    output,
                    started: running.started,
                    ended: self.share.step,
                });
            }
        }
        true
    }

    /// Runs until every operation finished (or none can go on).
    pub fn run(&mut self) {
        while self.step() {}
        assert!(
            self.running.is_empty(),
            "operations stuck: {:?}",
            self.running
                .values()
                .map(|r| (&r.label, &r.pending))
                .collect::<Vec<_>>()
        );
    }

    /// Runs `op` alone, every round's requests answered together, and
    /// answers the kinds of requests each round asked for. `now` is the
    /// caller's clock, not the share: it is answered at once, and what the
    /// operation asks next, while the round's other calls are still on
    /// their way, goes out in the same round trip.
    pub fn rounds(&mut self, op: &mut Op) -> Vec<Vec<&'static str>> {
        let mut rounds = Vec::new();
        while let Status::Requests(mut requests) = op.poll() {
            let mut kinds = Vec::new();
            let mut on_the_way = Vec::new();
            loop {
                for (id, request) in requests {
                    kinds.push(request.kind());
                    if matches!(request, Request::Now) {
                        let response = self.share.perform(0, &request);
                        op.respond(id, response).expect("outstanding");
                    } else {
                        on_the_way.push((id, request));
                    }
                }
                match op.poll() {
                    Status::Requests(more) => requests = more,
                    _ => break,
                }
            }
            for (id, request) in on_the_way {
                let response = self.share.perform(0, &request);
                op.respond(id, response).expect("outstanding");
            }
            rounds.push(kinds);
        }
        rounds
    }

    /// Runs one operation alone to its end and answers its output.
    pub fn run_one(&mut self, op: Op) -> Result<Output, brcache_core::ops::Failure> {
        let before = self.finished.len();
        let (faults, label) = (self.faults, format!("alone-{}", self.next));
        self.faults = Faults::default();
        self.start(label, op);
        self.run();
        self.faults = faults;
        self.finished.remove(before).output
    }
}

/// One operation driven by hand, request by request, in the order a test
/// picks: the interleavings a random schedule is not sure to find.
pub struct Driven {
    pub op: Op,
    pub pending: Vec<(RequestId, Request)>,
    pub owner: usize,
    pub output: Option<Result<Output, brcache_core::ops::Failure>>,
    /// Every request performed, in order, with the share's step it was
    /// performed at.
    pub performed: Vec<Request>,
    pub steps: Vec<u64>,
}

impl Driven {
    pub fn new(owner: usize, op: Op) -> Driven {
        let mut driven = Driven {
            op,
            pending: Vec::new(),
            owner,
            output: None,
            performed: Vec::new(),
            steps: Vec::new(),
        };
        driven.poll();
        driven
    }

    fn poll(&mut self) {
        match self.op.poll() {
            Status::Requests(more) => self.pending.extend(more),
            Status::Waiting => {}
            Status::Done => self.output = Some(self.op.take_output().expect("output")),
        }
    }

    /// Whether a request `pick` accepts is waiting.
    pub fn waits_on(&self, pick: impl Fn(&Request) -> bool) -> bool {
        self.pending.iter().any(|(_, request)| pick(request))
    }

    /// Performs the first waiting request `pick` accepts; false when none.
    pub fn perform(&mut self, share: &mut Share, pick: impl Fn(&Request) -> bool) -> bool {
        let Some(at) = self.pending.iter().position(|(_, request)| pick(request)) else {
            return false;
        };
        self.perform_at(share, at);
        true
    }

    /// Performs the `at`th waiting request.
    pub fn perform_at(&mut self, share: &mut Share, at: usize) {
        let (id, request) = self.pending.remove(at);
        let response = share.perform(self.owner, &request);
        self.op.respond(id, response).expect("outstanding");
        self.performed.push(request);
        self.steps.push(share.step);
        self.poll();
    }

    /// The share's step of the first request performed that `pick` accepts.
    pub fn step_of(&self, pick: impl Fn(&Request) -> bool) -> Option<u64> {
        let at = self.performed.iter().position(pick)?;
        Some(self.steps[at])
    }

    /// Performs every request in the order asked, to the operation's end.
    pub fn finish(&mut self, share: &mut Share) -> Result<Output, brcache_core::ops::Failure> {
        while self.perform(share, |_| true) {}
        self.output.take().expect("the operation ended")
    }
}

/// The restore points a restore view answered, by key.
pub fn listed_keys(listed: &Listed) -> BTreeSet<String> {
    let view: serde_json::Value = serde_json::from_str(&listed.json()).unwrap();
    view.as_object()
        .unwrap()
        .values()
        .flat_map(|s| s.as_array().unwrap().iter())
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}
