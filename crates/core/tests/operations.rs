//! The repository operations driven over a simulated share: every
//! interleaving of writers, deleters, listers and checkers the generator
//! picks, with I/O faults and kills, must keep the campaigns' invariants:
//! no lost update, no phantom or missed restore point, never a torn cache,
//! and the index never behind a cache it saw written.

mod sim;

use brcache_core::ops::{
    self, CheckOptions, IndexMode, Listed, Output, Request, Settings, Status, Want,
};
use brcache_core::{DecodeLimits, Filter};
use proptest::prelude::*;
use serde_json::Value;
use sim::{Faults, Sim};
use std::collections::BTreeSet;

const VMS: [&str; 3] = [
    "0b1c2d3e-0000-4000-8000-000000000001",
    "0b1c2d3e-0000-4000-8000-000000000002",
    "0b1c2d3e-0000-4000-8000-000000000003",
];

fn settings(index: IndexMode, nonce: u64) -> Settings {
    Settings::new(DecodeLimits::default(), false, index, nonce)
}

fn metadata(vm: &str, timestamp: u64) -> Vec<u8> {
    serde_json::json!({
        "mode": "delta", "timestamp": timestamp, "jobId": "job", "scheduleId": "schedule",
        "vm": { "uuid": vm, "name_label": format!("vm {vm}") }, "vhds": {}, "size": timestamp % 1000,
    })
    .to_string()
    .into_bytes()
}

/// The keys a restore view answered.
fn view_keys(output: &Output) -> BTreeSet<String> {
    let Output::Listed(listed) = output else {
        panic!("not a listing: {output:?}")
    };
    let view: Value = serde_json::from_str(&listed.json()).expect("JSON");
    view.as_object()
        .expect("object")
        .values()
        .flat_map(|summaries| summaries.as_array().expect("array").iter())
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect()
}

fn restore_view(sim: &mut Sim, index: IndexMode) -> BTreeSet<String> {
    view_keys(
        &sim.run_one(ops::restore_view(settings(index, 1), Filter::default()))
            .expect("a listing"),
    )
}

/// The timestamps a schedule writes: distinct seconds, so two backups never
/// collide on one name.
fn timestamp(i: u64) -> u64 {
    1_700_000_000_000 + i * 1000
}

/// One random schedule: writers, deleters and listers side by side (and,
/// on a share without locks, compactors too).
fn schedule(seed: u64, index: IndexMode, faults: Faults, lockless: bool) -> Sim {
    let settings = |index, nonce| share_settings(index, nonce, lockless);
    let mut sim = Sim::new(seed);
    sim.share.lockless = lockless;
    if index != IndexMode::Off {
        sim.run_one(ops::build_index(settings(index, 2)))
            .expect("an index");
    }
    let mut written = Vec::new();
    for i in 0..4u64 {
        let vm = VMS[(i as usize) % VMS.len()];
        sim.run_one(
            ops::write_backup(settings(index, 10 + i), vm, metadata(vm, timestamp(i))).unwrap(),
        )
        .expect("seeded");
        written.push(format!("/xo-vm-backups/{vm}/{}", name(timestamp(i))));
    }
    sim.faults = faults;
    if index != IndexMode::Off {
        // Compactions beside the writers: each reads the table and the
        // parts of the VMs the segments touch, and reuses the others.
        for i in 0..2u64 {
            sim.start(
                format!("compact {}", 10 + i),
                ops::compact_index(settings(index, 560 + i), false),
            );
        }
    }
    if lockless {
        // The snapshot built is old enough for compactions to clean what
        // it folded, while writers publish and other compactors fold.
        sim.share.clock += brcache_core::INDEX_GRACE_MS as f64;
        for i in 0..3u64 {
            sim.start(
                format!("compact {i}"),
                ops::compact_index(settings(index, 550 + i), false),
            );
        }
    }
    for i in 4..12u64 {
        let vm = VMS[sim.rng.below(VMS.len())];
        sim.start(
            format!("write {i}"),
            ops::write_backup(settings(index, 100 + i), vm, metadata(vm, timestamp(i))).unwrap(),
        );
    }
    for (i, key) in written.iter().enumerate().take(2) {
        sim.start(
            format!("delete {i}"),
            ops::delete_backups(settings(index, 200 + i as u64), vec![key.clone()]).unwrap(),
        );
    }
    for i in 0..3u64 {
        sim.start(
            format!("view {i}"),
            ops::restore_view(settings(index, 300 + i), Filter::default()),
        );
        sim.start(
            format!("table {i}"),
            ops::vm_table(settings(index, 450 + i)),
        );
        let vm = VMS[sim.rng.below(VMS.len())];
        sim.start(
            format!("records {i}"),
            ops::list_vm(settings(index, 400 + i), vm, Want::Records).unwrap(),
        );
    }
    sim.start(
        "check",
        ops::check_all(
            settings(index, 500),
            CheckOptions {
                repair: true,
                ..Default::default()
            },
        ),
    );
    sim.run();
    sim.faults = Faults::default();
    sim
}

fn name(timestamp_ms: u64) -> String {
    ops::write::metadata_name(timestamp_ms as f64)
        .unwrap()
        .as_str()
        .to_string()
}

/// No listing ever shows a restore point whose file did not exist while it
/// ran, nor misses one that existed all along. Listings through the caches
/// are exact; through the index, exact for brcache's own writers that were
/// not killed.
fn assert_listings_exact(sim: &Sim, faulty: bool) {
    for finished in &sim.finished {
        if !finished.label.starts_with("view") {
            continue;
        }
        let Ok(output) = &finished.output else {
            continue;
        };
        let listed = view_keys(output);
        let (some, all) = sim.share.lives_between(finished.started, finished.ended);
        let phantom: Vec<_> = listed.difference(&some).collect();
        assert!(
            phantom.is_empty(),
            "{}: phantom restore points {phantom:?}",
            finished.label
        );
        // Through the caches, a listing misses nothing even then; through
        // the index, a failed publish lags until the next check.
        let from_index = matches!(output, Output::Listed(l) if l.from_index);
        if !faulty || !from_index {
            let missed: Vec<_> = all.difference(&listed).collect();
            assert!(
                missed.is_empty(),
                "{}: missed restore points {missed:?}",
                finished.label
            );
        }
    }
}

/// Every cache ever written decodes: none is torn or half made.
fn assert_never_torn(sim: &Sim) {
    for bytes in &sim.share.cache_writes {
        brcache_core::decode(bytes, &DecodeLimits::default()).expect("a cache written decodes");
    }
}

/// After the dust settles, every cache is true to its folder (no lost
/// update): a check finds nothing to repair, and the index (when kept)
/// agrees with every cache.
fn assert_settled(sim: &mut Sim, index: IndexMode, faulty: bool) {
    if faulty {
        // A killed writer, or one whose cache update failed, leaves its
        // cache behind its folder (logged): a repair, what a check or the
        // next write does, catches up.
        sim.run_one(ops::check_all(
            settings(index, 600),
            CheckOptions {
                repair: true,
                ..Default::default()
            },
        ))
        .unwrap();
        if index != IndexMode::Off {
            sim.run_one(ops::check_index(settings(index, 601), true))
                .unwrap();
        }
    }
    let Output::Reports(reports) = sim
        .run_one(ops::check_all(
            settings(index, 700),
            CheckOptions::default(),
        ))
        .unwrap()
    else {
        panic!("reports")
    };
    for (vm, report) in &reports {
        assert!(report.coherent, "{vm}: {report:?}");
        assert!(
            report.fast_path || report.entries == 0,
            "{vm} not on the fast path: {report:?}"
        );
    }
    let folder = sim.share.metadata_keys();
    assert_eq!(
        restore_view(sim, IndexMode::Off),
        folder,
        "the caches list the folder"
    );
    if index != IndexMode::Off {
        let Output::Index(report) = sim
            .run_one(ops::check_index(settings(index, 701), false))
            .unwrap()
        else {
            panic!("index report")
        };
        assert!(report.drift.is_empty(), "the index drifted: {report:?}");
        assert_eq!(
            restore_view(sim, index),
            folder,
            "the index lists the folder"
        );
    }
    assert_eq!(
        vm_table(sim, index),
        vm_table(sim, IndexMode::Off),
        "the VM table is the caches' full fold"
    );
}

/// The VM table's rows (JSON).
fn vm_table(sim: &mut Sim, index: IndexMode) -> Value {
    let Output::Listed(listed) = sim.run_one(ops::vm_table(settings(index, 702))).unwrap() else {
        panic!("a listing")
    };
    serde_json::from_str(&listed.json()).unwrap()
}

/// Settings for a schedule's operations, on a share with locks or not.
fn share_settings(index: IndexMode, nonce: u64, lockless: bool) -> Settings {
    let settings = settings(index, nonce);
    if lockless {
        settings.without_locks()
    } else {
        settings
    }
}

fn campaign(seed: u64, index: IndexMode, faults: Faults) {
    let mut sim = schedule(seed, index, faults, false);
    let faulty = faults.io_errors > 0 || faults.kills > 0;
    assert_listings_exact(&sim, faulty);
    assert_never_torn(&sim);
    if !faulty {
        for finished in &sim.finished {
            if let Err(failure) = &finished.output {
                panic!("{} failed without a fault: {failure}", finished.label);
            }
        }
    }
    assert_settled(&mut sim, index, faulty);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn interleavings_keep_every_invariant(seed in any::<u64>()) {
        campaign(seed, IndexMode::Off, Faults::default());
    }

    #[test]
    fn interleavings_keep_the_index_exact(seed in any::<u64>()) {
        campaign(seed, IndexMode::Auto, Faults::default());
    }

    #[test]
    fn faults_lose_nothing(seed in any::<u64>()) {
        campaign(seed, IndexMode::Auto, Faults { io_errors: 30, kills: 0 });
    }

    #[test]
    fn kills_lose_nothing_a_repair_cannot_find(seed in any::<u64>()) {
        campaign(seed, IndexMode::Auto, Faults { io_errors: 0, kills: 15 });
    }

    #[test]
    fn without_locks_the_index_loses_nothing(seed in any::<u64>()) {
        lockless_campaign(seed);
    }
}

/// On a share like Garage (locks granted to all and shown nowhere,
/// create-only writes that overwrite), writers of the same VMs, deleters
/// and compactors run side by side. Listings made meanwhile may lag by the
/// round trip of a write in flight (no lock shows it); once the writers are
/// done, the index, with the VMs it doubts read from their caches, lists
/// exactly the folder, before any repair and after compactions that clean
/// up. Caches may have lost updates (no lock orders their writes): a
/// repair makes them true.
fn lockless_campaign(seed: u64) {
    let mut sim = schedule(seed, IndexMode::Auto, Faults::default(), true);
    assert_never_torn(&sim);
    for finished in &sim.finished {
        if let Err(failure) = &finished.output {
            panic!("{} failed without a fault: {failure}", finished.label);
        }
    }
    let folder = sim.share.metadata_keys();
    let settings = |nonce| share_settings(IndexMode::Auto, nonce, true);
    let listed = |sim: &mut Sim, nonce| {
        view_keys(
            &sim.run_one(ops::restore_view(settings(nonce), Filter::default()))
                .unwrap(),
        )
    };
    assert_eq!(listed(&mut sim, 800), folder, "the index after the run");
    for (round, nonce) in [(0, 810), (1, 820)] {
        sim.share.clock += brcache_core::INDEX_GRACE_MS as f64;
        sim.run_one(ops::compact_index(settings(nonce), false))
            .unwrap();
        assert_eq!(
            listed(&mut sim, nonce + 1),
            folder,
            "the index after cleanup {round}"
        );
    }
    assert_settled(&mut sim, IndexMode::Auto, true);
}

/// The calls of one add to a VM whose cache is true, round by round. `now`
/// is the caller's clock, answered at once: asked beside the cache's
/// replace, it lets the segment be computed while the cache is on its way,
/// and the segment's replace goes out in the same round; the unlock comes
/// only once both are done, so that no reader sees the lock gone before
/// the index holds the write: four round trips on the share.
#[test]
fn an_add_costs_four_round_trips() {
    let mut sim = Sim::new(1);
    let vm = VMS[0];
    sim.run_one(ops::build_index(settings(IndexMode::Auto, 1)))
        .unwrap();
    sim.run_one(
        ops::write_backup(settings(IndexMode::Auto, 2), vm, metadata(vm, timestamp(0))).unwrap(),
    )
    .unwrap();
    let mut op =
        ops::write_backup(settings(IndexMode::Auto, 3), vm, metadata(vm, timestamp(1))).unwrap();
    let rounds = sim.rounds(&mut op);
    assert!(matches!(op.take_output(), Some(Ok(Output::Written(_)))));
    assert_eq!(
        rounds,
        vec![
            vec!["lock"],
            vec!["create", "read", "list", "cleanTemps", "list"],
            vec!["replace", "now", "replace"],
            vec!["unlock"],
        ]
    );
}

/// A cache Xen Orchestra wrote (no header) is read, and the listing asks
/// for it to be rewritten with brcache's header; XO's entries stay.
#[test]
fn an_xo_cache_is_read_then_repaired() {
    let mut sim = Sim::new(2);
    let vm = VMS[1];
    let names: Vec<String> = (0..3).map(|i| name(timestamp(i))).collect();
    let mut body = serde_json::Map::new();
    for (i, n) in names.iter().enumerate() {
        let bytes = metadata(vm, timestamp(i as u64));
        sim.share
            .put(&format!("xo-vm-backups/{vm}/{n}"), bytes.clone());
        body.insert(
            format!("/xo-vm-backups/{vm}/{n}"),
            serde_json::from_slice(&bytes).unwrap(),
        );
    }
    let gz = brcache_core::write_gzip_member(Value::Object(body).to_string().as_bytes(), None, 6);
    sim.share
        .put(&format!("xo-vm-backups/{vm}/cache.json.gz"), gz);
    let reads_before = sim.share.calls.get("read").copied().unwrap_or(0);
    let Output::Listed(mut listed) = sim
        .run_one(ops::list_vm(settings(IndexMode::Off, 1), vm, Want::Records).unwrap())
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        sim.share.calls["read"] - reads_before,
        1,
        "XO's cache is read, no metadata file"
    );
    assert_eq!(listed.repairs.len(), 1);
    let repairs = std::mem::take(&mut listed.repairs);
    let Output::Repaired(written) = sim
        .run_one(ops::repair(settings(IndexMode::Off, 2), repairs))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(written, 1);
    let Output::Report(report) = sim
        .run_one(ops::check_vm(settings(IndexMode::Off, 3), vm, CheckOptions::default()).unwrap())
        .unwrap()
    else {
        panic!()
    };
    assert!(
        report.fast_path && report.coherent && report.entries == 3,
        "{report:?}"
    );
}

/// A failed folder listing is an error, never "no backups".
#[test]
fn an_unreadable_folder_is_an_error() {
    let mut sim = Sim::new(3);
    let vm = VMS[0];
    sim.share.put(
        &format!("xo-vm-backups/{vm}/{}", name(timestamp(0))),
        metadata(vm, timestamp(0)),
    );
    let mut op = ops::list_vm(settings(IndexMode::Off, 1), vm, Want::Records).unwrap();
    let ops::Status::Requests(requests) = op.poll() else {
        panic!()
    };
    for (id, request) in requests {
        let response = match request {
            Request::List { .. } => {
                ops::Response::Failed(ops::IoError::new("EACCES", "permission denied"))
            }
            other => sim.share.perform(0, &other),
        };
        op.respond(id, response).unwrap();
    }
    assert_eq!(op.poll(), ops::Status::Done);
    let failure = op.take_output().unwrap().unwrap_err();
    assert_eq!(failure.code(), "EACCES");
    assert!(
        failure
            .to_string()
            .contains(&format!("cannot list xo-vm-backups/{vm}")),
        "{failure}"
    );
}

/// Through a share that serves checked caches (`brcache serve` to its
/// page), a listing reads each cache as it is and lists no VM folder.
#[test]
fn a_trusted_share_is_read_without_listing_folders() {
    let mut sim = Sim::new(4);
    let vm = VMS[2];
    sim.run_one(
        ops::write_backup(settings(IndexMode::Off, 1), vm, metadata(vm, timestamp(0))).unwrap(),
    )
    .unwrap();
    // A restore point the cache does not know: a checking listing finds it,
    // a trusting one does not look.
    sim.share.put(
        &format!("xo-vm-backups/{vm}/{}", name(timestamp(1))),
        metadata(vm, timestamp(1)),
    );
    let lists = |sim: &Sim| sim.share.calls.get("list").copied().unwrap_or(0);
    let before = lists(&sim);
    let trusting = settings(IndexMode::Off, 2).trusting();
    let view = view_keys(
        &sim.run_one(ops::list_vm(trusting, vm, Want::Summaries(Filter::default())).unwrap())
            .unwrap(),
    );
    assert_eq!(lists(&sim), before, "no folder listed");
    assert_eq!(view.len(), 1);
    let checked = view_keys(
        &sim.run_one(
            ops::list_vm(
                settings(IndexMode::Off, 3),
                vm,
                Want::Summaries(Filter::default()),
            )
            .unwrap(),
        )
        .unwrap(),
    );
    assert_eq!(checked.len(), 2);
}

/// The rounds of a delete of one restore point (a full backup with its
/// `.xva`) from a VM whose cache is true: four round trips on the share,
/// as for an add. The metadata is read beside the cache and the listings,
/// deleted beside the cache's replace (the cache of the folder without
/// it) and the segment's, and its data files go beside the unlock.
#[test]
fn a_delete_costs_four_round_trips() {
    let mut sim = Sim::new(5);
    let vm = VMS[0];
    sim.run_one(ops::build_index(settings(IndexMode::Auto, 1)))
        .unwrap();
    let mut full: Value = serde_json::from_slice(&metadata(vm, timestamp(0))).unwrap();
    full["mode"] = "full".into();
    full["xva"] = "./20231114T221320Z.xva".into();
    sim.share.put(
        &format!("xo-vm-backups/{vm}/20231114T221320Z.xva"),
        vec![0; 16],
    );
    let Output::Written(key) = sim
        .run_one(
            ops::write_backup(
                settings(IndexMode::Auto, 2),
                vm,
                full.to_string().into_bytes(),
            )
            .unwrap(),
        )
        .unwrap()
    else {
        panic!()
    };
    let mut op = ops::delete_backups(settings(IndexMode::Auto, 3), vec![key]).unwrap();
    let rounds = sim.rounds(&mut op);
    assert!(matches!(op.take_output(), Some(Ok(Output::Deleted))));
    assert_eq!(
        rounds,
        vec![
            vec!["lock"],
            vec!["read", "read", "list", "cleanTemps", "list"],
            vec!["replace", "delete", "now", "replace"],
            vec!["unlock", "delete", "delete"],
        ]
    );
    assert!(
        !sim.share.files.keys().any(|p| p.ends_with(".xva")),
        "the data file went too"
    );
}

/// A delete cut between the two halves of its third round (the metadata
/// deleted and the cache not replaced, or the cache replaced and the
/// metadata still there): the cache's fingerprint disagrees with the
/// folder, so a check sees it and listings through the caches go by the
/// folder (nothing deleted listed, nothing there missed); a repair makes
/// the cache true again.
#[test]
fn a_delete_cut_between_its_halves_is_seen_not_believed() {
    for performed in ["delete", "replace"] {
        let mut sim = Sim::new(6);
        let vm = VMS[0];
        sim.run_one(ops::build_index(settings(IndexMode::Auto, 1)))
            .unwrap();
        for i in 0..3 {
            sim.run_one(
                ops::write_backup(
                    settings(IndexMode::Auto, 2 + i),
                    vm,
                    metadata(vm, timestamp(i)),
                )
                .unwrap(),
            )
            .unwrap();
        }
        let doomed = format!("/xo-vm-backups/{vm}/{}", name(timestamp(0)));
        let mut op =
            ops::delete_backups(settings(IndexMode::Auto, 9), vec![doomed.clone()]).unwrap();
        loop {
            let ops::Status::Requests(requests) = op.poll() else {
                panic!("the delete ended before its third round")
            };
            let kinds: Vec<&str> = requests.iter().map(|(_, r)| r.kind()).collect();
            if kinds.contains(&"replace") && kinds.contains(&"delete") {
                // The operation dies here, one half done: its lock goes stale.
                for (_, request) in &requests {
                    if request.kind() == performed {
                        sim.share.perform(0, request);
                    }
                }
                sim.share.release_locks_of(0);
                break;
            }
            for (id, request) in requests {
                let response = sim.share.perform(0, &request);
                op.respond(id, response).unwrap();
            }
        }
        let folder = sim.share.metadata_keys();
        assert_eq!(folder.contains(&doomed), performed == "replace");
        let Output::Report(report) = sim
            .run_one(
                ops::check_vm(settings(IndexMode::Off, 10), vm, CheckOptions::default()).unwrap(),
            )
            .unwrap()
        else {
            panic!("a report")
        };
        assert!(
            !report.fast_path && !report.coherent,
            "{performed}: the cut is seen: {report:?}"
        );
        assert_eq!(
            restore_view(&mut sim, IndexMode::Off),
            folder,
            "{performed}: the caches list the folder"
        );
        sim.run_one(
            ops::check_vm(
                settings(IndexMode::Auto, 11),
                vm,
                CheckOptions {
                    repair: true,
                    ..Default::default()
                },
            )
            .unwrap(),
        )
        .unwrap();
        let Output::Report(report) = sim
            .run_one(
                ops::check_vm(settings(IndexMode::Off, 12), vm, CheckOptions::default()).unwrap(),
            )
            .unwrap()
        else {
            panic!("a report")
        };
        assert!(report.fast_path && report.coherent, "{report:?}");
        assert_eq!(restore_view(&mut sim, IndexMode::Auto), folder);
    }
}

/// Writers that publish side by side past the compaction point elect one
/// compactor (a try-lock in the index folder): whatever the interleaving,
/// one snapshot is attempted, not one per writer, no segment is lost, and
/// the index lists every restore point.
#[test]
fn writers_at_once_past_the_compaction_point_compact_once() {
    for seed in 0..12 {
        let mut sim = Sim::new(100 + seed);
        sim.run_one(ops::build_index(settings(IndexMode::Auto, 1)))
            .unwrap();
        // COMPACT_AFTER segments waiting: the next writers are all past it.
        for i in 0..brcache_core::COMPACT_AFTER as u64 {
            let vm = VMS[i as usize % VMS.len()];
            sim.run_one(
                ops::write_backup(
                    settings(IndexMode::Auto, 10 + i),
                    vm,
                    metadata(vm, timestamp(i)),
                )
                .unwrap(),
            )
            .unwrap();
        }
        let tables = |sim: &Sim| {
            sim.share
                .creates
                .iter()
                .filter(|p| p.contains("/.brcache-index/snapshot-"))
                .count()
        };
        let before = tables(&sim);
        const WRITERS: u64 = 6;
        for i in 0..WRITERS {
            let vm = VMS[i as usize % VMS.len()];
            sim.start(
                format!("write {i}"),
                ops::write_backup(
                    settings(IndexMode::Auto, 1000 + i),
                    vm,
                    metadata(vm, timestamp(1000 + i)),
                )
                .unwrap(),
            );
        }
        sim.run();
        for finished in &sim.finished {
            assert!(
                finished.output.is_ok(),
                "{}: {:?}",
                finished.label,
                finished.output
            );
        }
        assert_eq!(tables(&sim) - before, 1, "seed {seed}: one compaction");
        // The table, its part (three small VMs) and the writers' segments.
        let index_files: Vec<&String> = sim
            .share
            .files
            .keys()
            .filter(|p| p.starts_with("xo-vm-backups/.brcache-index/"))
            .collect();
        assert!(
            index_files.len() <= 2 + WRITERS as usize,
            "seed {seed}: folded: {index_files:?}"
        );
        let Output::Listed(listed) = sim
            .run_one(ops::restore_view(
                settings(IndexMode::Auto, 2000),
                Filter::default(),
            ))
            .unwrap()
        else {
            panic!("a listing")
        };
        assert!(listed.from_index);
        assert_eq!(
            view_keys(&Output::Listed(listed)),
            sim.share.metadata_keys(),
            "seed {seed}: the index lists every restore point"
        );
    }
}

/// A cache whose header vouches for the folder (its fingerprint matches)
/// but whose body holds a record that is not an object: the fast path must
/// not hand it on; the cache is rebuilt from the metadata files.
#[test]
fn a_header_that_vouches_for_a_bad_body_is_not_trusted() {
    let mut sim = Sim::new(11);
    let vm = VMS[0];
    for i in 0..2 {
        sim.run_one(
            ops::write_backup(
                settings(IndexMode::Off, 1 + i),
                vm,
                metadata(vm, timestamp(i)),
            )
            .unwrap(),
        )
        .unwrap();
    }
    let path = format!("xo-vm-backups/{vm}/cache.json.gz");
    let bytes = sim.share.files[&path].bytes.clone();
    let member = brcache_core::read_gzip_member(&bytes, 1 << 20).unwrap();
    let mut body: serde_json::Map<String, Value> = serde_json::from_slice(&member.data).unwrap();
    let first = body.keys().next().unwrap().clone();
    body.insert(first.clone(), Value::from(5));
    let forged = brcache_core::write_gzip_member(
        Value::Object(body).to_string().as_bytes(),
        member.header.extra,
        6,
    );
    sim.share.put(&path, forged);
    let Output::Listed(listed) = sim
        .run_one(ops::list_vm(settings(IndexMode::Off, 9), vm, Want::Records).unwrap())
        .unwrap()
    else {
        panic!("not a listing")
    };
    let answer: Value = serde_json::from_str(&listed.json()).unwrap();
    let pairs = answer[vm]["pairs"]
        .as_array()
        .expect("rebuilt: pairs, not the body");
    assert_eq!(pairs.len(), 2);
    for pair in pairs {
        assert_eq!(pair[1]["jobId"], "job", "{pair}");
    }
    assert_eq!(listed.repairs.len(), 1, "the cache is to be rewritten");
}

fn index_files(sim: &Sim) -> Vec<String> {
    sim.share
        .files
        .keys()
        .filter(|p| p.starts_with("xo-vm-backups/.brcache-index/"))
        .cloned()
        .collect()
}

/// No command to run: the first restore view of a writable repository
/// without an index leaves the entries of the caches it found true, its
/// follow-up makes the index from them, and the next restore view answers
/// from it, the same view in four requests. A filtered view or an index
/// turned off makes none (an immutable repository makes its own, of
/// create-only files: tests/immutable.rs).
#[test]
fn the_first_restore_view_makes_the_index() {
    let mut sim = Sim::new(12);
    let mut written = BTreeSet::new();
    for (i, vm) in VMS.iter().enumerate() {
        let Output::Written(key) = sim
            .run_one(
                ops::write_backup(
                    settings(IndexMode::Off, 1 + i as u64),
                    vm,
                    metadata(vm, timestamp(i as u64)),
                )
                .unwrap(),
            )
            .unwrap()
        else {
            panic!()
        };
        written.insert(key);
    }
    assert!(index_files(&sim).is_empty());
    for (label, settings, filter) in [
        ("index off", settings(IndexMode::Off, 5), Filter::default()),
        (
            "immutable, index off",
            Settings::new(DecodeLimits::default(), true, IndexMode::Off, 5),
            Filter::default(),
        ),
        (
            "filtered",
            settings(IndexMode::Auto, 5),
            Filter::from_json(Some(r#"{"mode":"full"}"#)).unwrap(),
        ),
    ] {
        let Output::Listed(listed) = sim.run_one(ops::restore_view(settings, filter)).unwrap()
        else {
            panic!()
        };
        assert!(listed.index_seed.is_empty(), "{label}: no index seeded");
    }
    let Output::Listed(first) = sim
        .run_one(ops::restore_view(
            settings(IndexMode::Auto, 6),
            Filter::default(),
        ))
        .unwrap()
    else {
        panic!()
    };
    assert!(!first.from_index);
    assert_eq!(first.index_seed.len(), VMS.len());
    let view = view_keys(&Output::Listed(Listed {
        parts: first.parts.clone(),
        ..Listed::default()
    }));
    assert_eq!(view, written);
    sim.run_one(ops::follow_up(
        settings(IndexMode::Auto, 7),
        first.index_seed,
        first.repairs,
        first.compact_index,
    ))
    .unwrap();
    assert!(
        index_files(&sim).iter().any(|p| p.contains("snapshot-")),
        "{:?}",
        index_files(&sim)
    );
    let calls = |sim: &Sim| sim.share.calls.values().sum::<usize>();
    let before = calls(&sim);
    let Output::Listed(second) = sim
        .run_one(ops::restore_view(
            settings(IndexMode::Auto, 8),
            Filter::default(),
        ))
        .unwrap()
    else {
        panic!()
    };
    assert!(second.from_index);
    assert!(second.index_seed.is_empty());
    assert_eq!(
        calls(&sim) - before,
        5,
        "list VMs, list index, read the table and its part beside the index listed again"
    );
    assert_eq!(view_keys(&Output::Listed(second)), written);
}

/// Two listings read the caches, then a backup is deleted (its writer
/// publishes its segment), then both follow-ups run: the first makes the
/// index, folding the delete in by generation and deleting the segment;
/// the second, whose entries are as old, finds a snapshot and makes
/// nothing. The deleted backup is never listed again.
#[test]
fn seeds_read_before_a_delete_never_bring_it_back() {
    let mut sim = Sim::new(13);
    let vm = VMS[0];
    let mut keys = Vec::new();
    for i in 0..3u64 {
        let Output::Written(key) = sim
            .run_one(
                ops::write_backup(
                    settings(IndexMode::Off, 1 + i),
                    vm,
                    metadata(vm, timestamp(i)),
                )
                .unwrap(),
            )
            .unwrap()
        else {
            panic!()
        };
        keys.push(key);
    }
    let listing = |sim: &mut Sim, nonce| {
        let Output::Listed(listed) = sim
            .run_one(ops::restore_view(
                settings(IndexMode::Auto, nonce),
                Filter::default(),
            ))
            .unwrap()
        else {
            panic!()
        };
        listed
    };
    let first = listing(&mut sim, 10);
    let second = listing(&mut sim, 11);
    assert!(!first.index_seed.is_empty() && !second.index_seed.is_empty());
    sim.run_one(ops::delete_backups(settings(IndexMode::Auto, 12), vec![keys[0].clone()]).unwrap())
        .unwrap();
    for listed in [first, second] {
        sim.run_one(ops::follow_up(
            settings(IndexMode::Auto, 13),
            listed.index_seed,
            listed.repairs,
            listed.compact_index,
        ))
        .unwrap();
    }
    let after = listing(&mut sim, 14);
    assert!(after.from_index);
    let view = view_keys(&Output::Listed(after));
    assert!(
        !view.contains(&keys[0]),
        "the deleted backup is back: {view:?}"
    );
    assert_eq!(view, keys[1..].iter().cloned().collect());
}

/// The index segments' bodies, gunzipped, in name order.
fn segment_bodies(sim: &Sim) -> Vec<Value> {
    index_files(sim)
        .iter()
        .filter(|p| !p.contains("snapshot-"))
        .map(|p| {
            let text =
                brcache_core::decode_text(&sim.share.files[p].bytes, &DecodeLimits::default())
                    .unwrap()
                    .text;
            serde_json::from_str(&text).unwrap()
        })
        .collect()
}

/// A backup written or deleted on a cache known true publishes only what
/// it changed (a delta), which folds over the VM's view: the listing after
/// it answers from the index alone. (A VM's first backup makes its cache
/// from the folder: it publishes the whole view.)
#[test]
fn writers_publish_deltas_and_listings_fold_them() {
    let mut sim = Sim::new(3);
    let vm = VMS[0];
    sim.run_one(ops::build_index(settings(IndexMode::Auto, 1)))
        .unwrap();
    let first = written(&mut sim, 2, vm, 0);
    assert!(segment_bodies(&sim)[0]["kind"].is_null(), "a view");
    let second = written(&mut sim, 5, vm, 1);
    let bodies = segment_bodies(&sim);
    assert_eq!(bodies.last().unwrap()["kind"], "delta");
    assert_eq!(bodies.last().unwrap()["put"][0]["id"], second.as_str());
    let before = calls(&sim);
    let listed = listing(&mut sim, 6);
    assert!(listed.from_index && listed.repairs.is_empty());
    assert_eq!(
        view_keys(&Output::Listed(listed)),
        [first.clone(), second.clone()].into()
    );
    assert_eq!(
        calls(&sim) - before,
        3 + index_files(&sim).len(),
        "the folders, the index folder, and its files beside the index folder again: no cache read"
    );
    sim.run_one(ops::delete_backups(settings(IndexMode::Auto, 7), vec![first.clone()]).unwrap())
        .unwrap();
    let bodies = segment_bodies(&sim);
    assert_eq!(bodies.last().unwrap()["remove"][0], first.as_str());
    let before = calls(&sim);
    let listed = listing(&mut sim, 8);
    assert!(listed.repairs.is_empty());
    assert_eq!(view_keys(&Output::Listed(listed)), [second].into());
    assert_eq!(calls(&sim) - before, 3 + index_files(&sim).len());
}

/// A delta that does not add up to the cache it names (here one made up on
/// the share: a phantom restore point, as from a writer whose view of the
/// index lagged) leaves its VM in doubt: the listing
/// reads that VM from its cache, never shows the phantom, and its repair
/// publishes the VM's view, after which the index alone answers.
/// Two VMs with true caches and index entries, the first (`VMS[0]`) in
/// doubt: a delta made up on the share puts a phantom restore point, as
/// from a writer whose view of the index lagged. Answers the folder's
/// truth, the first VM's real backup and the phantom.
fn doubted_repository(seed: u64) -> (Sim, BTreeSet<String>, String, String) {
    let mut sim = Sim::new(seed);
    let vm = VMS[0];
    sim.run_one(ops::build_index(settings(IndexMode::Auto, 1)))
        .unwrap();
    let first = written(&mut sim, 2, vm, 0);
    written(&mut sim, 3, VMS[1], 1);
    let truth = sim.share.metadata_keys();
    let phantom = format!("/xo-vm-backups/{vm}/{}", name(timestamp(9)));
    let mut delta = segment_bodies(&sim)[0].clone();
    delta["version"] = 2.into();
    delta["kind"] = "delta".into();
    delta["put"] = delta["summaries"].clone();
    delta["put"][0]["id"] = phantom.clone().into();
    delta["remove"] = serde_json::json!([]);
    delta["locked"] = true.into();
    delta.as_object_mut().unwrap().remove("summaries");
    let path = format!(
        "xo-vm-backups/.brcache-index/{}",
        brcache_core::segment_name(sim.share.clock as u64 - 1, 7)
    );
    sim.share.files.insert(
        path,
        sim::File {
            bytes: delta.to_string().into_bytes(),
            mtime: sim.share.clock,
        },
    );
    (sim, truth, first, phantom)
}

/// A delta that does not add up to the cache it names leaves its VM in
/// doubt: the listing reads that VM from its cache, says so, never shows
/// the phantom, and its repair publishes the VM's view, after which the
/// index alone answers.
#[test]
fn a_vm_in_doubt_is_read_from_its_cache_until_its_view_is_published() {
    let (mut sim, truth, first, phantom) = doubted_repository(4);
    let mut listed = listing(&mut sim, 4);
    let repairs = std::mem::take(&mut listed.repairs);
    assert_eq!(listed.not_from_index.in_doubt, vec![VMS[0].to_string()]);
    assert!(listed.not_from_index.locked.is_empty() && listed.not_from_index.unknown.is_empty());
    assert_eq!(view_keys(&Output::Listed(listed)), truth);
    assert_eq!(repairs.len(), 1, "the VM in doubt gets its view");
    sim.run_one(ops::repair(settings(IndexMode::Auto, 5), repairs))
        .unwrap();
    let before = calls(&sim);
    let listed = listing(&mut sim, 6);
    assert!(listed.repairs.is_empty());
    assert_eq!(listed.not_from_index, ops::NotFromIndex::default());
    assert_eq!(view_keys(&Output::Listed(listed)), truth);
    assert_eq!(calls(&sim) - before, 3 + index_files(&sim).len());
    assert!(truth.contains(&first) && !truth.contains(&phantom));
}

/// The index check names the VMs in doubt (their entry agrees with the
/// cache header, so they are no drift), and its repair publishes their
/// views: the listing after it trusts the index for every VM.
#[test]
fn the_index_check_lists_the_vms_in_doubt_and_repairs_them() {
    let (mut sim, truth, _, _) = doubted_repository(8);
    for (repair, nonce) in [(false, 10), (true, 11)] {
        let Output::Index(report) = sim
            .run_one(ops::check_index(settings(IndexMode::Auto, nonce), repair))
            .unwrap()
        else {
            panic!("index report")
        };
        assert!(report.drift.is_empty(), "{report:?}");
        assert_eq!(report.in_doubt, vec![VMS[0].to_string()], "{report:?}");
        assert_eq!(report.repaired, repair);
        assert_eq!(report.to_json()["inDoubt"][0], VMS[0]);
    }
    let Output::Index(report) = sim
        .run_one(ops::check_index(settings(IndexMode::Auto, 12), false))
        .unwrap()
    else {
        panic!("index report")
    };
    assert!(report.in_doubt.is_empty(), "{report:?}");
    assert!(report.to_json().get("inDoubt").is_none());
    let listed = listing(&mut sim, 13);
    assert!(listed.from_index && listed.repairs.is_empty());
    assert_eq!(listed.not_from_index, ops::NotFromIndex::default());
    assert_eq!(view_keys(&Output::Listed(listed)), truth);
}

fn written(sim: &mut Sim, nonce: u64, vm: &str, i: u64) -> String {
    let op = ops::write_backup(
        settings(IndexMode::Auto, nonce),
        vm,
        metadata(vm, timestamp(i)),
    );
    let Output::Written(key) = sim.run_one(op.unwrap()).unwrap() else {
        panic!()
    };
    key
}

fn calls(sim: &Sim) -> usize {
    sim.share.calls.values().sum()
}

fn listing(sim: &mut Sim, nonce: u64) -> Listed {
    let op = ops::restore_view(settings(IndexMode::Auto, nonce), Filter::default());
    let Output::Listed(listed) = sim.run_one(op).unwrap() else {
        panic!()
    };
    listed
}

/// Two compactions without a lock, the first one slow: it has read the
/// index when a backup publishes its delta, the second reads that delta
/// and creates its snapshot, then the first creates one with a greater
/// name, the one readers take, which lacks the delta. Nothing it lacks may
/// be deleted: the second compaction deletes nothing while the snapshot it
/// started from is young, and the delta stays a segment every listing
/// reads. Once the snapshots are older than the grace period, a third
/// compaction cleans up and the listing is still whole.
#[test]
fn a_slow_compaction_without_a_lock_loses_nothing() {
    let settings = |nonce| share_settings(IndexMode::Auto, nonce, true);
    let mut sim = Sim::new(5);
    sim.share.lockless = true;
    sim.run_one(ops::build_index(settings(1))).unwrap();
    for (i, vm) in VMS.iter().enumerate() {
        let op = ops::write_backup(
            settings(2 + i as u64),
            vm,
            metadata(vm, timestamp(i as u64)),
        );
        sim.run_one(op.unwrap()).unwrap();
    }
    // Without locks every backup publishes a delta: the VMs are in doubt
    // until a listing's repair publishes their views.
    let repairs = listing_without_locks(&mut sim, 8).repairs;
    assert_eq!(repairs.len(), VMS.len());
    sim.run_one(ops::repair(settings(9), repairs)).unwrap();
    sim.run_one(ops::compact_index(settings(10), false))
        .unwrap();
    assert!(listing_without_locks(&mut sim, 10).repairs.is_empty());
    let mut slow = ops::compact_index(settings(11), false);
    let mut nows = 0;
    let held = 'reading: loop {
        let Status::Requests(requests) = slow.poll() else {
            panic!("the compaction ended early")
        };
        for (id, request) in requests {
            if matches!(request, Request::Now) {
                nows += 1;
                if nows == 2 {
                    break 'reading id;
                }
            }
            let response = sim.share.perform(0, &request);
            slow.respond(id, response).unwrap();
        }
    };
    let late = written(&mut sim, 12, VMS[0], 9);
    sim.run_one(ops::compact_index(settings(13), false))
        .unwrap();
    let response = sim.share.perform(0, &Request::Now);
    slow.respond(held, response).unwrap();
    while let Status::Requests(requests) = slow.poll() {
        for (id, request) in requests {
            let response = sim.share.perform(0, &request);
            slow.respond(id, response).unwrap();
        }
    }
    assert!(matches!(slow.take_output(), Some(Ok(_))));
    let truth = sim.share.metadata_keys();
    assert!(truth.contains(&late));
    let listed = listing_without_locks(&mut sim, 14);
    assert!(listed.repairs.is_empty(), "the index alone answers");
    assert_eq!(view_keys(&Output::Listed(listed)), truth);
    let files = index_files(&sim).len();
    sim.share.clock += brcache_core::INDEX_GRACE_MS as f64;
    sim.run_one(ops::compact_index(settings(15), false))
        .unwrap();
    assert!(
        index_files(&sim).len() < files,
        "the cleanup deleted what was folded"
    );
    assert_eq!(
        view_keys(&Output::Listed(listing_without_locks(&mut sim, 16))),
        truth
    );
}

fn listing_without_locks(sim: &mut Sim, nonce: u64) -> Listed {
    let op = ops::restore_view(
        share_settings(IndexMode::Auto, nonce, true),
        Filter::default(),
    );
    let Output::Listed(listed) = sim.run_one(op).unwrap() else {
        panic!()
    };
    listed
}

/// On a share without locks, folded segments linger until a cleanup: a
/// listing reads with the snapshot only the segments named after it (less
/// a margin), and in a second round an older one the snapshot did not fold
/// (a writer whose clock was behind). It lists no VM folders there.
#[test]
fn listings_without_locks_skip_the_segments_the_snapshot_folded() {
    let settings = |nonce| share_settings(IndexMode::Auto, nonce, true);
    let mut sim = Sim::new(6);
    sim.share.lockless = true;
    sim.run_one(ops::build_index(settings(1))).unwrap();
    for (i, vm) in VMS.iter().enumerate() {
        let op = ops::write_backup(
            settings(2 + i as u64),
            vm,
            metadata(vm, timestamp(i as u64)),
        );
        sim.run_one(op.unwrap()).unwrap();
    }
    let repairs = listing_without_locks(&mut sim, 8).repairs;
    sim.run_one(ops::repair(settings(9), repairs)).unwrap();
    sim.share.clock += 60_000.0;
    sim.run_one(ops::compact_index(settings(10), false))
        .unwrap();
    let truth = sim.share.metadata_keys();
    let segments = index_files(&sim)
        .iter()
        .filter(|p| !p.contains("snapshot-") && !p.contains("part-"))
        .count();
    assert!(segments >= 6, "the folded segments linger: {segments}");
    let before = calls(&sim);
    let listed = listing_without_locks(&mut sim, 11);
    assert!(listed.repairs.is_empty());
    assert_eq!(view_keys(&Output::Listed(listed)), truth);
    assert_eq!(
        calls(&sim) - before,
        3,
        "the index folder, the table, its part (no VM folders' listing without locks)"
    );
    // A backup whose writer's clock is behind the compaction's.
    sim.share.clock -= 30_000.0;
    let late = written(&mut sim, 12, VMS[0], 9);
    sim.share.clock += 30_000.0;
    let before = calls(&sim);
    let listed = listing_without_locks(&mut sim, 13);
    assert!(listed.repairs.is_empty());
    assert!(view_keys(&Output::Listed(listed)).contains(&late));
    assert_eq!(
        calls(&sim) - before,
        4,
        "and the late segment, in the second round"
    );
}

/// What a listing costs on a share without locks once the index holds
/// `vms` VMs, each written once (the first listing making the index): the
/// calls of the listing after that one, then of one after `backups` more
/// backups, then of one after the follow-up of that listing.
fn lockless_listing_costs(vms: usize, backups: usize) -> [usize; 3] {
    let settings = |nonce| share_settings(IndexMode::Auto, nonce, true);
    let vm = |i: usize| format!("0b1c2d3e-0000-4000-8000-{i:012}");
    let mut sim = Sim::new(17);
    sim.share.lockless = true;
    for i in 0..vms {
        let op = ops::write_backup(
            settings(100 + i as u64),
            &vm(i),
            metadata(&vm(i), timestamp(i as u64)),
        );
        sim.run_one(op.unwrap()).unwrap();
    }
    let first = listing_without_locks(&mut sim, 2);
    assert!(!first.from_index);
    sim.run_one(ops::follow_up(
        settings(3),
        first.index_seed,
        first.repairs,
        first.compact_index,
    ))
    .unwrap();
    let mut truth = sim.share.metadata_keys();
    let mut costs = [0; 3];
    let mut follow = None;
    for (round, cost) in costs.iter_mut().enumerate() {
        if round == 1 {
            for i in 0..backups {
                truth.insert(written(
                    &mut sim,
                    1000 + i as u64,
                    &vm(i % vms),
                    (vms + i) as u64,
                ));
            }
        }
        if let Some(listed) = follow.take() {
            let listed: Listed = listed;
            sim.run_one(ops::follow_up(
                settings(4),
                listed.index_seed,
                listed.repairs,
                listed.compact_index,
            ))
            .unwrap();
        }
        let before = calls(&sim);
        let listed = listing_without_locks(&mut sim, 5 + round as u64);
        *cost = calls(&sim) - before;
        assert!(listed.from_index);
        assert_eq!(
            view_keys(&Output::Listed(Listed {
                parts: listed.parts.clone(),
                ..Listed::default()
            })),
            truth
        );
        follow = Some(listed);
    }
    costs
}

/// A listing through the index costs the same few calls whatever the VM
/// count, on a share without locks too: the index folder, its snapshot
/// (no VM folders' listing there: no lock shows in it), and the segments no snapshot folded (never those a
/// compaction folded that wait for their cleanup); a listing that reads
/// many of those compacts once it has answered, so the next one reads the
/// snapshot alone again.
#[test]
fn a_listing_without_locks_costs_a_handful_of_calls_whatever_the_vms() {
    let backups = brcache_core::LISTING_COMPACTS_AFTER + 4;
    let small = lockless_listing_costs(10, backups);
    let large = lockless_listing_costs(60, backups);
    assert_eq!(small, large, "10 VMs then 60: {small:?} {large:?}");
    assert_eq!(small[0], 3, "the index folder, the table, its part");
    assert!(small[1] > small[0], "the backups' segments are read");
    // Compacted by the listing's follow-up: the segments are folded; the
    // part that compaction replaced lingers until its cleanup a grace
    // period later, read beside the table meanwhile (parts go out with the
    // table unread, so that the restore view keeps two round trips).
    assert!(small[2] < small[1], "compacted by the listing's follow-up");
    assert_eq!(
        small[2],
        small[0] + 1,
        "and the replaced part, until its cleanup"
    );
}

/// A schedule proptest found on the table format (a delete whose segment
/// a compaction folded while a listing read the index): it missed a
/// restore point whose file was still there until a listing that had to
/// list the index folder again listed the VM folders again too.
#[test]
fn a_compaction_inside_a_listings_window_misses_nothing() {
    campaign(6378618225502702830, IndexMode::Auto, Faults::default());
}
