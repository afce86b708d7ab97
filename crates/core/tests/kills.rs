//! Listings from the repository index are exact for brcache's own writers,
//! kills included: a writer killed at any step of a write or a delete
//! leaves either its lock (which tells readers to go by that VM's cache and
//! folder) or an index that already holds what it did; the listing right
//! after the kill is the truth, and its background repair ends the lag, so
//! the listing after that is the truth from the index alone.

mod sim;

use brcache_core::DecodeLimits;
use brcache_core::Filter;
use brcache_core::ops::{self, CheckOptions, IndexMode, Listed, Output, Request, Settings, Status};
use serde_json::Value;
use sim::{Sim, listed_keys as keys};

const VM: &str = "0b1c2d3e-0000-4000-8000-00000000000a";
const OTHER: &str = "0b1c2d3e-0000-4000-8000-00000000000b";
/// The owner id the victim's requests are performed as (the sim's own
/// operations are numbered from 0).
const VICTIM: usize = 10_000;

fn settings(nonce: u64) -> Settings {
    Settings::new(DecodeLimits::default(), false, IndexMode::Auto, nonce)
}

fn timestamp(i: u64) -> u64 {
    1_700_000_000_000 + i * 1000
}

fn metadata(vm: &str, i: u64, full: bool) -> Vec<u8> {
    let mut m = serde_json::json!({
        "mode": "delta", "timestamp": timestamp(i), "jobId": "job", "scheduleId": "schedule",
        "vm": { "uuid": vm, "name_label": format!("vm {vm}") }, "vhds": {}, "size": i,
    });
    if full {
        m["mode"] = "full".into();
        m["xva"] = format!("./{i}.xva").into();
    }
    m.to_string().into_bytes()
}

fn key(vm: &str, i: u64) -> String {
    let name = ops::write::metadata_name(timestamp(i) as f64).unwrap();
    format!("/xo-vm-backups/{vm}/{}", name.as_str())
}

/// A repository with an index, two VMs and three backups each (the first
/// of each a full backup with its `.xva`), every cache and entry true.
fn repository() -> Sim {
    let mut sim = Sim::new(1);
    sim.run_one(ops::build_index(settings(1))).unwrap();
    for vm in [VM, OTHER] {
        for i in 0..3 {
            sim.share
                .put(&format!("xo-vm-backups/{vm}/{i}.xva"), vec![0; 8]);
            sim.run_one(ops::write_backup(settings(2 + i), vm, metadata(vm, i, i == 0)).unwrap())
                .unwrap();
        }
    }
    sim
}

fn listed(output: Output) -> Listed {
    match output {
        Output::Listed(listed) => listed,
        other => panic!("not a listing: {other:?}"),
    }
}

/// Runs `op` as the victim, performing exactly `steps` of its requests (in
/// the order asked, or the reverse within each batch, so that calls sent
/// together land either way round), then kills it. Answers whether it
/// finished first.
fn run_until(sim: &mut Sim, mut op: ops::Op, steps: usize, reverse: bool) -> bool {
    let mut pending: Vec<(ops::RequestId, Request)> = Vec::new();
    let mut performed = 0;
    loop {
        match op.poll() {
            Status::Done => return true,
            Status::Requests(more) => pending.extend(more),
            Status::Waiting => {}
        }
        if performed == steps {
            sim.share.release_locks_of(VICTIM);
            return false;
        }
        let (id, request) = if reverse {
            pending.pop().expect("a request")
        } else {
            pending.remove(0)
        };
        let response = sim.share.perform(VICTIM, &request);
        op.respond(id, response).unwrap();
        performed += 1;
    }
}

/// How many requests `op` makes when nothing kills it.
fn steps_of(make: &dyn Fn() -> ops::Op) -> usize {
    let mut sim = repository();
    let mut op = make();
    let mut count = 0;
    while let Status::Requests(requests) = op.poll() {
        for (id, request) in requests {
            let response = sim.share.perform(VICTIM, &request);
            op.respond(id, response).unwrap();
            count += 1;
        }
    }
    assert!(matches!(op.take_output(), Some(Ok(_))));
    count
}

/// Kills the operation `make` gives at every step, both ways round, and
/// checks the index listings after each kill against the folders.
fn kill_at_every_step(label: &str, make: &dyn Fn() -> ops::Op) {
    kill_at_every_step_lagging(label, make, true)
}

/// The VM table's rows (JSON), through the index or not.
fn vm_table(sim: &mut Sim, index: bool) -> Value {
    let settings = if index {
        settings(60)
    } else {
        settings(61).with_index(brcache_core::ops::IndexMode::Off)
    };
    let listed = listed(sim.run_one(ops::vm_table(settings)).unwrap());
    serde_json::from_str(&listed.json()).unwrap()
}

/// [`kill_at_every_step`]; `lags`: some kill leaves a lag to repair.
fn kill_at_every_step_lagging(label: &str, make: &dyn Fn() -> ops::Op, lags: bool) {
    let steps = steps_of(make);
    assert!(steps >= 8, "{label}: {steps} steps");
    let mut settled_by_repair = 0;
    for reverse in [false, true] {
        for step in 0..=steps {
            let at = format!("{label}, killed after {step} of {steps} steps (reverse: {reverse})");
            let mut sim = repository();
            if run_until(&mut sim, make(), step, reverse) {
                continue;
            }
            let truth = sim.share.metadata_keys();
            // 1. Right after the kill: the index listing is the truth.
            let first = listed(
                sim.run_one(ops::restore_view(settings(50), Filter::default()))
                    .unwrap(),
            );
            assert!(first.from_index, "{at}: from the index");
            assert_eq!(keys(&first), truth, "{at}: the listing right after");
            // The VM table by the same rules, from the table and the parts
            // of the VMs changed since its compaction.
            assert_eq!(
                vm_table(&mut sim, true),
                vm_table(&mut sim, false),
                "{at}: the VM table right after"
            );
            // 2. Its background repair takes the stale lock when the VM's
            //    cache or entry is behind, and levels them.
            let repaired = !first.repairs.is_empty();
            let Output::Repaired(written) = sim
                .run_one(ops::repair(settings(51), first.repairs))
                .unwrap()
            else {
                panic!("{at}: repairs")
            };
            if repaired {
                assert_eq!(written, 1, "{at}: the repair wrote");
                settled_by_repair += 1;
                assert!(
                    sim.share.lock_paths().is_empty(),
                    "{at}: the stale lock is gone"
                );
            }
            let Output::Index(report) = sim.run_one(ops::check_index(settings(52), false)).unwrap()
            else {
                panic!("{at}: index report")
            };
            assert!(
                report.drift.is_empty(),
                "{at}: the index agrees with every cache: {report:?}"
            );
            // 3. The next listing is the truth, and from the index alone
            //    unless a lock is still there (a writer killed after its
            //    segment, before its unlock: nothing to repair).
            // Every index file but the older snapshots (a compaction killed
            // before its cleanup leaves the one it replaced).
            let plan = brcache_core::ReadPlan::from_listing(
                sim.share
                    .files
                    .keys()
                    .filter_map(|p| p.strip_prefix("xo-vm-backups/.brcache-index/")),
            );
            let index_files =
                usize::from(plan.snapshot.is_some()) + plan.segments.len() + plan.parts.len();
            let calls = sim.share.calls.values().sum::<usize>();
            let second = listed(
                sim.run_one(ops::restore_view(settings(53), Filter::default()))
                    .unwrap(),
            );
            assert_eq!(keys(&second), truth, "{at}: the listing after the repair");
            assert!(second.repairs.is_empty(), "{at}: nothing left to repair");
            let locked_folders = sim
                .share
                .lock_paths()
                .iter()
                .filter(|lock| sim.share.is_dir(lock))
                .count();
            let extra = 2 * locked_folders;
            assert_eq!(
                sim.share.calls.values().sum::<usize>() - calls,
                3 + index_files + extra,
                "{at}: two folder listings, the table, its parts and the segments with the index folder again, plus a locked VM's cache and folder"
            );
            // 4. And the caches are true: a check finds nothing.
            let Output::Report(report) = sim
                .run_one(ops::check_vm(settings(54), VM, CheckOptions::default()).unwrap())
                .unwrap()
            else {
                panic!("{at}: report")
            };
            assert!(report.coherent, "{at}: {report:?}");
        }
    }
    assert!(
        !lags || settled_by_repair > 0,
        "{label}: some kill left a lag to repair"
    );
}

#[test]
fn a_compaction_killed_at_any_step_loses_nothing() {
    // Between its parts and its table, or amid its cleanup: the table
    // before it (or after) is whole, and its leftovers are never read.
    kill_at_every_step_lagging(
        "compaction",
        &|| ops::compact_index(settings(9), false),
        false,
    );
}

#[test]
fn a_write_killed_at_any_step_is_listed_exactly() {
    kill_at_every_step("write", &|| {
        ops::write_backup(settings(100), VM, metadata(VM, 7, false)).unwrap()
    });
}

#[test]
fn a_first_write_killed_at_any_step_is_listed_exactly() {
    // A VM's first backup: the lock is taken before its folder exists.
    const NEW: &str = "0b1c2d3e-0000-4000-8000-00000000000c";
    kill_at_every_step("first write", &|| {
        ops::write_backup(settings(100), NEW, metadata(NEW, 7, false)).unwrap()
    });
}

#[test]
fn a_delete_killed_at_any_step_is_listed_exactly() {
    // The full backup, with its data files, and a delta one: two metadata
    // deletes beside the cache and the segment.
    kill_at_every_step("delete", &|| {
        ops::delete_backups(settings(100), vec![key(VM, 0), key(VM, 1)]).unwrap()
    });
}

#[test]
fn a_delete_of_every_backup_killed_at_any_step_is_listed_exactly() {
    kill_at_every_step("delete all", &|| {
        ops::delete_backups(settings(100), (0..3).map(|i| key(VM, i)).collect()).unwrap()
    });
}

/// The reader's side on its own: with changes the index does not hold in
/// two VM folders (made behind brcache's back, as Xen Orchestra does), a
/// listing from the index goes by the folder for exactly the VM whose lock
/// shows, in the same two round trips, streamed or not; the repair waits
/// for the lock, and once it is stale takes it over and ends the lag.
#[test]
fn a_listing_goes_by_the_folder_for_exactly_the_locked_vms() {
    for stream in [false, true] {
        let mut sim = repository();
        for vm in [VM, OTHER] {
            let name = ops::write::metadata_name(timestamp(9) as f64).unwrap();
            sim.share.put(
                &format!("xo-vm-backups/{vm}/{}", name.as_str()),
                metadata(vm, 9, false),
            );
        }
        let holder = 20_000;
        sim.share
            .locks
            .insert(format!("xo-vm-backups/{VM}"), holder);
        let view = |nonce| {
            let s = settings(nonce);
            ops::restore_view(if stream { s.streaming() } else { s }, Filter::default())
        };
        let index_files = sim
            .share
            .files
            .keys()
            .filter(|p| p.starts_with("xo-vm-backups/.brcache-index/"))
            .count();
        let mut op = view(60);
        let rounds = sim.rounds(&mut op);
        let mut second: Vec<&str> = rounds[1].clone();
        second.sort();
        let mut expected = vec!["read"; index_files + 1];
        expected.extend(["list", "list"]);
        expected.sort();
        assert_eq!(
            second, expected,
            "the locked VM's cache and folder beside the snapshot, the segments and the index folder again"
        );
        // Its cache lacks a file of its folder: that file is read, as a
        // listing without the index reads it.
        assert_eq!(rounds.len(), 3, "{rounds:?}");
        assert_eq!(rounds[2], vec!["read"]);
        let emitted = op.take_emitted();
        let Some(Ok(output)) = op.take_output() else {
            panic!("a listing")
        };
        let first = listed(output);
        assert!(first.from_index);
        let mut answer: serde_json::Map<String, Value> =
            serde_json::from_str(&first.json()).unwrap();
        if stream {
            let parts: Vec<(String, Value)> = serde_json::from_str(&emitted).unwrap();
            assert_eq!(parts.len(), 2, "each VM once: {emitted}");
            answer.extend(parts);
        }
        let count = |vm: &str| answer[vm].as_array().unwrap().len();
        assert_eq!(count(VM), 4, "the locked VM, from its folder");
        assert_eq!(count(OTHER), 3, "the other, from the index as it stands");
        assert_eq!(first.repairs.len(), 1);
        let Output::Repaired(written) = sim
            .run_one(ops::repair(settings(61), first.repairs))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(written, 0, "the lock is held: the repair is left");
        sim.share.release_locks_of(holder);
        let again = listed(sim.run_one(view(62)).unwrap());
        assert_eq!(
            again.repairs.len(),
            1,
            "still read from its folder, still behind"
        );
        let Output::Repaired(written) = sim
            .run_one(ops::repair(settings(63), again.repairs))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(written, 1, "the stale lock is taken over");
        assert!(sim.share.lock_paths().is_empty());
        let mut op = view(64);
        let rounds = sim.rounds(&mut op);
        assert_eq!(rounds.len(), 2, "{rounds:?}");
        assert_eq!(
            rounds[1].iter().filter(|kind| **kind == "list").count(),
            1,
            "the index folder again, no VM folder listed: {rounds:?}"
        );
        let emitted = op.take_emitted();
        let Some(Ok(output)) = op.take_output() else {
            panic!()
        };
        let last = listed(output);
        let mut answer: serde_json::Map<String, Value> =
            serde_json::from_str(&last.json()).unwrap();
        if stream {
            let parts: Vec<(String, Value)> = serde_json::from_str(&emitted).unwrap();
            answer.extend(parts);
        }
        assert_eq!(
            answer[VM].as_array().unwrap().len(),
            4,
            "from the index now"
        );
    }
}

/// A metadata delete that fails after the segment saying it is gone went
/// out beside it: the deleter puts the index (and the cache written without
/// the file) right under its lock before releasing it, so the index listing
/// after it, from the index alone, still lists the file that is there.
#[test]
fn a_failed_metadata_delete_is_put_right_before_the_unlock() {
    let mut sim = repository();
    let doomed = key(VM, 1);
    let mut op = ops::delete_backups(settings(100), vec![doomed.clone()]).unwrap();
    let mut failed = 0;
    while let Status::Requests(requests) = op.poll() {
        for (id, request) in requests {
            let response = match &request {
                Request::Delete { path } if format!("/{path}") == doomed => {
                    failed += 1;
                    ops::Response::Failed(ops::IoError::new("EIO", "injected"))
                }
                _ => sim.share.perform(VICTIM, &request),
            };
            op.respond(id, response).unwrap();
        }
    }
    assert_eq!(failed, 1);
    let failure = op.take_output().unwrap().unwrap_err();
    assert_eq!(failure.code(), "EIO");
    assert!(sim.share.lock_paths().is_empty(), "released");
    let truth = sim.share.metadata_keys();
    assert!(truth.contains(&doomed));
    let Output::Index(report) = sim.run_one(ops::check_index(settings(101), false)).unwrap() else {
        panic!("index report")
    };
    assert!(report.drift.is_empty(), "{report:?}");
    let listed = listed(
        sim.run_one(ops::restore_view(settings(102), Filter::default()))
            .unwrap(),
    );
    assert!(listed.from_index && listed.repairs.is_empty());
    assert_eq!(keys(&listed), truth);
}
