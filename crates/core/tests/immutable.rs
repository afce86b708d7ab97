//! The index of an immutable repository (create-only files in epoch
//! folders, `index::epochs`), on a simulated share that refuses, and
//! records, every replace, lock, and delete of an index or cache file:
//! listings make it, use it, stay exact under random schedules of writers,
//! deleters, listings and compactions with kills, and cost the same
//! however much history the repository has.

mod sim;

use brcache_core::DecodeLimits;
use brcache_core::Filter;
use brcache_core::INDEX_EPOCH_MS as EPOCH_MS;
use brcache_core::ops::{self, Failure, IndexMode, Listed, Output, Request, Response, Settings};
use brcache_core::ops::{Status, journal_follow_up};
use sim::{Share, Sim, listed_keys};
use std::collections::{BTreeMap, BTreeSet};

fn settings(nonce: u64, locks: bool) -> Settings {
    let settings = Settings::new(DecodeLimits::default(), true, IndexMode::Auto, nonce);
    if locks {
        settings
    } else {
        settings.without_locks()
    }
}

fn vm(i: usize) -> String {
    format!("0b1c2d3e-0000-4000-8000-{i:012x}")
}

fn timestamp(i: u64) -> u64 {
    1_600_000_000_000 + i * 1000
}

fn metadata(vm: &str, i: u64) -> Vec<u8> {
    serde_json::json!({
        "mode": "delta", "timestamp": timestamp(i), "jobId": "job", "scheduleId": "schedule",
        "vm": { "uuid": vm, "name_label": format!("vm {vm}") }, "vhds": {}, "size": i,
    })
    .to_string()
    .into_bytes()
}

fn key(vm: &str, i: u64) -> String {
    let name = ops::write::metadata_name(timestamp(i) as f64).unwrap();
    format!("/xo-vm-backups/{vm}/{}", name.as_str())
}

fn path(key: &str) -> String {
    key.trim_start_matches('/').to_string()
}

fn immutable_share(lockless: bool) -> Sim {
    let mut sim = Sim::new(7);
    sim.share.immutable = true;
    sim.share.lockless = lockless;
    sim
}

/// What one operation cost: calls (the clock not counted) by kind, and
/// bytes answered (files read, names listed).
#[derive(Debug, Default, Clone, PartialEq)]
struct Cost {
    calls: BTreeMap<&'static str, usize>,
    bytes: usize,
}

impl Cost {
    fn total(&self) -> usize {
        self.calls.values().sum()
    }
}

/// Runs `op` alone, one request at a time, and what it cost.
fn drive(share: &mut Share, mut op: ops::Op) -> (Result<Output, Failure>, Cost) {
    let mut cost = Cost::default();
    loop {
        match op.poll() {
            Status::Requests(requests) => {
                for (id, request) in requests {
                    let response = share.perform(0, &request);
                    if !matches!(request, Request::Now) {
                        *cost.calls.entry(request.kind()).or_default() += 1;
                    }
                    cost.bytes += match &response {
                        Response::Bytes(bytes) => bytes.len(),
                        Response::Names(names) => names.iter().map(|n| n.len() + 1).sum(),
                        _ => 0,
                    };
                    op.respond(id, response).unwrap();
                }
            }
            Status::Waiting => panic!("waits with nothing out"),
            Status::Done => return (op.take_output().unwrap(), cost),
        }
    }
}

fn listed(output: Result<Output, Failure>) -> Listed {
    match output.expect("a listing") {
        Output::Listed(listed) => listed,
        _ => panic!("not a listing"),
    }
}

fn follow_up(settings: &Settings, listed: &Listed) -> Option<ops::Op> {
    (!listed.index_seed.is_empty() || listed.compact_index).then(|| {
        journal_follow_up(
            settings.clone(),
            listed.index_seed.clone(),
            listed.seed_time,
            listed.compact_index,
        )
    })
}

/// A listing and its follow-up, run alone: the listing's answer and cost.
fn list(share: &mut Share, settings: &Settings) -> (Listed, Cost) {
    let (output, cost) = drive(
        share,
        ops::restore_view(settings.clone(), Filter::default()),
    );
    let listed = listed(output);
    if let Some(op) = follow_up(settings, &listed) {
        drive(share, op).0.expect("the follow-up");
    }
    (listed, cost)
}

fn assert_untouched(share: &Share) {
    assert_eq!(
        share.violations,
        Vec::<String>::new(),
        "asked of an immutable share"
    );
    assert!(
        !share.files.keys().any(|p| p.ends_with("cache.json.gz")),
        "a cache written"
    );
}

fn index_files(share: &Share) -> Vec<&String> {
    share
        .files
        .keys()
        .filter(|p| p.starts_with("xo-vm-backups/.brcache-index/"))
        .collect()
}

#[test]
fn the_first_listing_makes_the_index_and_the_next_read_only_it() {
    for lockless in [false, true] {
        let mut sim = immutable_share(lockless);
        let settings = settings(1, !lockless);
        for v in 0..5 {
            for i in 0..3 {
                let vm = vm(v);
                sim.share
                    .put(&path(&key(&vm, v as u64 * 10 + i)), metadata(&vm, i));
            }
        }
        let truth = sim.share.metadata_keys();
        let (first, full_scan) = list(&mut sim.share, &settings);
        assert!(!first.from_index);
        assert_eq!(listed_keys(&first), truth);
        assert_eq!(
            full_scan.calls.get("read"),
            Some(&(15 + 5)),
            "every metadata file and cache"
        );
        assert!(
            index_files(&sim.share)
                .iter()
                .any(|p| p.contains("/epoch-") && p.contains("snapshot-"))
        );
        let (second, cost) = list(&mut sim.share, &settings);
        assert!(second.from_index, "lockless {lockless}");
        assert_eq!(listed_keys(&second), truth);
        assert_eq!(second.not_from_index.in_doubt, Vec::<String>::new());
        // The index folder, its epoch, the snapshot (and the VM folders
        // where locks show).
        let expected = if lockless { 3 } else { 4 };
        assert_eq!(cost.total(), expected, "{cost:?}");
        assert_eq!(cost.calls.get("read"), Some(&1));
        assert_untouched(&sim.share);
    }
}

#[test]
fn writes_and_deletes_are_listed_through_the_index_without_doubt() {
    for lockless in [false, true] {
        let mut sim = immutable_share(lockless);
        let settings = settings(2, !lockless);
        let a = vm(1);
        sim.share.put(&path(&key(&a, 0)), metadata(&a, 0));
        list(&mut sim.share, &settings);
        // A write, a first backup of a VM the index never saw, a delete.
        let b = vm(2);
        drive(
            &mut sim.share,
            ops::write_backup(settings.clone(), &a, metadata(&a, 1)).unwrap(),
        )
        .0
        .unwrap();
        drive(
            &mut sim.share,
            ops::write_backup(settings.clone(), &b, metadata(&b, 2)).unwrap(),
        )
        .0
        .unwrap();
        drive(
            &mut sim.share,
            ops::delete_backups(settings.clone(), vec![key(&a, 0)]).unwrap(),
        )
        .0
        .unwrap();
        let (listed, cost) = list(&mut sim.share, &settings);
        assert!(listed.from_index);
        assert_eq!(listed_keys(&listed), sim.share.metadata_keys());
        assert_eq!(
            (
                listed.not_from_index.in_doubt.clone(),
                listed.not_from_index.unknown.clone()
            ),
            (vec![], vec![]),
            "lockless {lockless}: deltas with the folder's fingerprint are whole"
        );
        // No VM folder listed or read: the index's files only.
        assert_eq!(cost.calls.get("read"), Some(&4), "{cost:?}");
        assert_untouched(&sim.share);
    }
}

/// A listing's cost after `rounds` more rounds of history: each round one
/// VM gets a backup and loses its oldest (the restore points stay as
/// many), a listing and its follow-up run, and every fourth round the
/// clock moves past an epoch.
fn history(sim: &mut Sim, settings: &Settings, from: u64, rounds: u64) {
    let vms = 4;
    for round in from..from + rounds {
        let v = vm((round % vms) as usize);
        let i = 100 + round;
        drive(
            &mut sim.share,
            ops::write_backup(settings.clone(), &v, metadata(&v, i)).unwrap(),
        )
        .0
        .unwrap();
        if round >= vms {
            drive(
                &mut sim.share,
                ops::delete_backups(settings.clone(), vec![key(&v, i - vms)]).unwrap(),
            )
            .0
            .unwrap();
        }
        list(&mut sim.share, settings);
        if round % 4 == 3 {
            sim.share.clock += (EPOCH_MS + 1) as f64;
        }
    }
}

#[test]
fn a_listing_costs_the_same_however_long_the_history() {
    for lockless in [false, true] {
        let mut sim = immutable_share(lockless);
        let settings = settings(3, !lockless);
        for v in 0..4 {
            let v = vm(v);
            for i in 0..5 {
                sim.share.put(&path(&key(&v, 10_000 + i)), metadata(&v, i));
            }
        }
        list(&mut sim.share, &settings);
        history(&mut sim, &settings, 0, 40);
        // Each measured listing right after a compaction: none waits.
        let compact = || journal_follow_up(settings.clone(), Vec::new(), 0, true);
        drive(&mut sim.share, compact()).0.unwrap();
        let truth = sim.share.metadata_keys();
        let (early, early_cost) = list(&mut sim.share, &settings);
        assert_eq!(listed_keys(&early), truth);
        let files_early = index_files(&sim.share).len();
        history(&mut sim, &settings, 40, 400);
        drive(&mut sim.share, compact()).0.unwrap();
        let truth = sim.share.metadata_keys();
        let (late, late_cost) = list(&mut sim.share, &settings);
        assert_eq!(listed_keys(&late), truth);
        let files_late = index_files(&sim.share).len();
        assert!(
            files_late > 5 * files_early,
            "{files_early} -> {files_late} index files"
        );
        assert_eq!(late_cost.calls, early_cost.calls, "lockless {lockless}");
        // Bytes: a snapshot of the same restore points and two epochs of
        // segments (as many as a few rounds make); the index folder's
        // listing grows by one name per epoch (27 bytes).
        let epochs = (400 / 4) * 27;
        assert!(
            late_cost.bytes <= early_cost.bytes * 5 / 4 + epochs,
            "{early_cost:?} -> {late_cost:?}"
        );
        // Against the full scan of every folder (the index off).
        let off = Settings::new(DecodeLimits::default(), true, IndexMode::Off, 9);
        let off = if lockless { off.without_locks() } else { off };
        let (scan, scan_cost) = drive(&mut sim.share, ops::restore_view(off, Filter::default()));
        assert_eq!(listed_keys(&listed(scan)), truth);
        eprintln!(
            "immutable listing, lockless {lockless}: index {} calls {} bytes; full scan {} calls {} bytes",
            late_cost.total(),
            late_cost.bytes,
            scan_cost.total(),
            scan_cost.bytes
        );
        assert!(scan_cost.total() > 3 * late_cost.total());
        assert_untouched(&sim.share);
    }
}

/// What a random schedule ran, by label.
#[derive(Debug, Clone)]
enum Act {
    Write(String),
    Delete(String),
    List,
    Compact,
    FollowUp,
}

fn schedule(seed: u64, lockless: bool) {
    let mut sim = Sim::new(seed);
    sim.share.immutable = true;
    sim.share.lockless = lockless;
    let settings_of = |nonce: u64| settings(seed * 1000 + nonce, !lockless);
    let mut next = 0u64;
    let mut existing: Vec<String> = Vec::new();
    for v in 0..3 {
        for _ in 0..2 {
            let vm = vm(v);
            next += 1;
            let k = key(&vm, next);
            sim.share.put(&path(&k), metadata(&vm, next));
            existing.push(k);
        }
    }
    // An index to start from, or none (the first listing makes it).
    if seed % 3 != 0 {
        list(&mut sim.share, &settings_of(0));
    }
    sim.faults.kills = 4;
    let mut acts: BTreeMap<String, Act> = BTreeMap::new();
    let mut nonce = 1;
    let mut seen_finished = 0;
    for _ in 0..60 {
        nonce += 1;
        let label = format!("op-{nonce}");
        let pick = sim.rng.below(10);
        match pick {
            0..=2 => {
                next += 1;
                let vm = vm(sim.rng.below(4));
                let k = key(&vm, next);
                let op = ops::write_backup(settings_of(nonce), &vm, metadata(&vm, next)).unwrap();
                sim.start(label.clone(), op);
                acts.insert(label, Act::Write(k));
            }
            3 | 4 if !existing.is_empty() => {
                let k = existing.remove(sim.rng.below(existing.len()));
                let op = ops::delete_backups(settings_of(nonce), vec![k.clone()]).unwrap();
                sim.start(label.clone(), op);
                acts.insert(label, Act::Delete(k));
            }
            5..=7 => {
                sim.start(
                    label.clone(),
                    ops::restore_view(settings_of(nonce), Filter::default()),
                );
                acts.insert(label, Act::List);
            }
            8 => {
                sim.start(
                    label.clone(),
                    journal_follow_up(settings_of(nonce), Vec::new(), 0, true),
                );
                acts.insert(label, Act::Compact);
            }
            _ => {
                // Time passes, past an epoch, while no writer is at work:
                // writers publish within SKEW_MS of listing the index
                // folder, which a jump would break.
                if sim.running.is_empty() {
                    sim.share.clock += (EPOCH_MS + 1) as f64;
                }
            }
        }
        for _ in 0..sim.rng.below(40) {
            if !sim.step() {
                break;
            }
        }
        // Finished listings start their follow-up; written restore points
        // may be deleted (never one whose write is still at work: its
        // segment could come after the removal's).
        while seen_finished < sim.finished.len() {
            let finished = &sim.finished[seen_finished];
            seen_finished += 1;
            if let (Some(Act::Write(k)), Ok(_)) = (acts.get(&finished.label), &finished.output) {
                existing.push(k.clone());
            }
            if let (Some(Act::List), Ok(Output::Listed(listed))) =
                (acts.get(&finished.label), &finished.output)
                && let Some(op) = follow_up(&settings_of(nonce + 500), listed)
            {
                nonce += 1;
                let label = format!("op-{nonce}");
                acts.insert(label.clone(), Act::FollowUp);
                sim.start(label, op);
            }
        }
    }
    sim.faults.kills = 0;
    sim.run();
    let killed: BTreeSet<String> = sim
        .killed
        .iter()
        .filter_map(|label| match acts.get(label) {
            Some(Act::Write(k) | Act::Delete(k)) => Some(k.clone()),
            _ => None,
        })
        .collect();
    let ended_ok: Vec<(&Act, u64, u64)> = sim
        .finished
        .iter()
        .filter(|f| f.output.is_ok())
        .filter_map(|f| acts.get(&f.label).map(|act| (act, f.started, f.ended)))
        .collect();
    for finished in &sim.finished {
        let Some(Act::List) = acts.get(&finished.label) else {
            continue;
        };
        let Ok(Output::Listed(listed)) = &finished.output else {
            continue;
        };
        let keys = listed_keys(listed);
        let (some, _) = sim.share.lives_between(finished.started, finished.ended);
        let phantom: Vec<&String> = keys.difference(&some).collect();
        assert!(
            phantom.is_empty(),
            "seed {seed} lockless {lockless}: phantom {phantom:?}"
        );
        // Every write done before the listing began, not deleted (nor
        // being deleted) before it ended, nor touched by a killed op.
        let deleting: BTreeSet<&String> = acts
            .iter()
            .filter_map(|(label, act)| match act {
                Act::Delete(k) => {
                    let started = sim
                        .finished
                        .iter()
                        .find(|f| &f.label == label)
                        .map_or(0, |f| f.started);
                    (started <= finished.ended).then_some(k)
                }
                _ => None,
            })
            .collect();
        for (act, _, ended) in &ended_ok {
            if let Act::Write(k) = act
                && *ended < finished.started
                && !deleting.contains(k)
                && !killed.contains(k)
            {
                assert!(
                    keys.contains(k),
                    "seed {seed} lockless {lockless}: lost {k} (listing {}..{})",
                    finished.started,
                    finished.ended
                );
            }
        }
    }
    // At rest, two listings later: the folders exactly, but for what a
    // killed writer or deleter left (a folder that adds up to no delta
    // until the VM's next change).
    let settings = settings_of(999_999);
    list(&mut sim.share, &settings);
    let (last, _) = list(&mut sim.share, &settings);
    let keys: BTreeSet<String> = listed_keys(&last).difference(&killed).cloned().collect();
    let truth: BTreeSet<String> = sim
        .share
        .metadata_keys()
        .difference(&killed)
        .cloned()
        .collect();
    assert_eq!(keys, truth, "seed {seed} lockless {lockless}");
    assert_untouched(&sim.share);
}

#[test]
fn random_schedules_with_kills_lose_nothing_and_write_nothing_twice() {
    for seed in 0..60 {
        schedule(seed, seed % 2 == 1);
    }
}

#[test]
fn the_check_catches_up_what_xen_orchestra_wrote_behind_the_index() {
    for lockless in [false, true] {
        let mut sim = immutable_share(lockless);
        let settings = settings(4, !lockless);
        let (a, b) = (vm(1), vm(2));
        sim.share.put(&path(&key(&a, 0)), metadata(&a, 0));
        sim.share.put(&path(&key(&b, 1)), metadata(&b, 1));
        list(&mut sim.share, &settings);
        // Behind the index: a restore point in a folder it knows, and one
        // folder's last restore point gone.
        sim.share.put(&path(&key(&a, 2)), metadata(&a, 2));
        sim.share.remove(&path(&key(&b, 1)));
        let (stale, _) = list(&mut sim.share, &settings);
        assert_ne!(
            listed_keys(&stale),
            sim.share.metadata_keys(),
            "trusted until checked"
        );
        let (report, _) = drive(&mut sim.share, ops::check_index(settings.clone(), false));
        let Output::Index(report) = report.unwrap() else {
            panic!("not a report")
        };
        assert!(report.exists && !report.repaired);
        assert_eq!(
            report.drift.keys().cloned().collect::<Vec<_>>(),
            vec![a.clone(), b.clone()]
        );
        let (repaired, _) = drive(&mut sim.share, ops::check_index(settings.clone(), true));
        let Output::Index(repaired) = repaired.unwrap() else {
            panic!("not a report")
        };
        assert!(repaired.repaired);
        let (listed, cost) = list(&mut sim.share, &settings);
        assert!(listed.from_index);
        assert_eq!(
            listed_keys(&listed),
            sim.share.metadata_keys(),
            "lockless {lockless}"
        );
        assert_eq!(listed.not_from_index.in_doubt, Vec::<String>::new());
        assert_eq!(
            cost.calls.get("read"),
            Some(&3),
            "the snapshot and the two views"
        );
        assert_untouched(&sim.share);
    }
}

fn is_segment_create(request: &Request) -> bool {
    matches!(request, Request::Create { path, .. } if path.contains("/epoch-") && !path.contains("/snapshot-"))
}

/// A writer lists the index folder while epoch `n` is the newest, then a
/// compaction opens `n + 1` (the epoch is old enough), then the writer's
/// segment lands in `n`, after the compaction listed it: the readers of
/// `n + 1` list `n` too, and the next opener folds it.
#[test]
fn a_segment_published_into_the_previous_epoch_after_a_compaction_stays_listed() {
    for lockless in [false, true] {
        let mut sim = immutable_share(lockless);
        let settings = settings(5, !lockless);
        let a = vm(1);
        sim.share.put(&path(&key(&a, 0)), metadata(&a, 0));
        list(&mut sim.share, &settings);
        sim.share.clock += (EPOCH_MS + 1) as f64;
        let op = ops::write_backup(settings.clone(), &a, metadata(&a, 1)).unwrap();
        let mut writer = sim::Driven::new(1, op);
        while writer.perform(&mut sim.share, |r| !is_segment_create(r)) {}
        assert!(writer.waits_on(is_segment_create));
        let compaction = journal_follow_up(settings.clone(), Vec::new(), 0, true);
        drive(&mut sim.share, compaction).0.unwrap();
        writer.finish(&mut sim.share).unwrap();
        let segment = sim.share.creates.last().unwrap().clone();
        assert!(
            segment.contains("/epoch-00000000000000000001/"),
            "{segment}"
        );
        assert!(
            index_files(&sim.share)
                .iter()
                .any(|p| p.contains("/epoch-00000000000000000002/snapshot-"))
        );
        let (listed, _) = list(&mut sim.share, &settings);
        assert_eq!(
            listed_keys(&listed),
            sim.share.metadata_keys(),
            "lockless {lockless}"
        );
        // Two epochs on, the opener of the third folded it.
        for _ in 0..2 {
            sim.share.clock += (EPOCH_MS + 1) as f64;
            drive(
                &mut sim.share,
                journal_follow_up(settings.clone(), Vec::new(), 0, true),
            )
            .0
            .unwrap();
        }
        let (listed, _) = list(&mut sim.share, &settings);
        assert_eq!(
            listed_keys(&listed),
            sim.share.metadata_keys(),
            "lockless {lockless}"
        );
        assert_untouched(&sim.share);
    }
}

/// `--immutable` on a repository that brcache also writes as a writable
/// one (its writers keep the writable index, not this one): listings read
/// the folders, as with the index off, and make nothing.
#[test]
fn beside_a_writable_index_nothing_is_made_and_the_folders_are_read() {
    let mut sim = Sim::new(8);
    let writable = Settings::new(DecodeLimits::default(), false, IndexMode::Auto, 1);
    let a = vm(1);
    sim.run_one(ops::build_index(writable.clone())).unwrap();
    sim.run_one(ops::write_backup(writable.clone(), &a, metadata(&a, 0)).unwrap())
        .unwrap();
    let before = index_files(&sim.share).len();
    let settings = settings(6, true);
    drive(
        &mut sim.share,
        ops::write_backup(settings.clone(), &a, metadata(&a, 1)).unwrap(),
    )
    .0
    .unwrap();
    let (listed, _) = list(&mut sim.share, &settings);
    assert!(!listed.from_index);
    assert_eq!(listed_keys(&listed), sim.share.metadata_keys());
    assert_eq!(
        index_files(&sim.share).len(),
        before,
        "nothing published or made"
    );
}
