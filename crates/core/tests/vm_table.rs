//! The VM table and one VM's restore points from the index's table and
//! parts, over the simulated share: rows equal what a full fold of the
//! caches computes, a compaction reuses the parts of VMs it did not
//! change, a part that is missing or corrupt sends the listing to the
//! caches (never "no backups"), and the round trips do not grow with the
//! VM count.

mod sim;

use brcache_core::ops::{self, IndexMode, Output, Settings};
use brcache_core::{DecodeLimits, Filter, RawSummary, TableSummary};
use serde_json::Value;
use sim::Sim;
use std::collections::BTreeMap;

const INDEX: &str = "xo-vm-backups/.brcache-index/";

fn settings(nonce: u64) -> Settings {
    Settings::new(DecodeLimits::default(), false, IndexMode::Auto, nonce)
}

fn vm(i: usize) -> String {
    format!("0b1c2d3e-0000-4000-8000-{i:012}")
}

fn metadata(vm: &str, timestamp: u64, mode: &str) -> Vec<u8> {
    serde_json::json!({
        "mode": mode, "timestamp": timestamp, "jobId": "job", "scheduleId": "schedule",
        "vm": { "uuid": vm, "name_label": format!("vm {vm} at {timestamp}") }, "vhds": {},
        "size": timestamp % 1000,
    })
    .to_string()
    .into_bytes()
}

fn write(sim: &mut Sim, nonce: u64, vm: &str, i: u64) {
    let mode = if i % 3 == 0 { "full" } else { "delta" };
    let op = ops::write_backup(
        settings(nonce),
        vm,
        metadata(vm, 1_700_000_000_000 + i * 1000, mode),
    );
    sim.run_one(op.unwrap()).expect("written");
}

fn listed(output: Output) -> (Value, bool) {
    let Output::Listed(listed) = output else {
        panic!("not a listing: {output:?}")
    };
    (
        serde_json::from_str(&listed.json()).unwrap(),
        listed.from_index,
    )
}

/// The table's rows (JSON) and whether they came from the index.
fn table(sim: &mut Sim, nonce: u64) -> (Value, bool) {
    listed(sim.run_one(ops::vm_table(settings(nonce))).unwrap())
}

/// The rows a full fold gives: every VM's checked cache, summed up.
fn rows_from_caches(sim: &mut Sim) -> Value {
    let op = ops::restore_view(settings(1).with_index(IndexMode::Off), Filter::default());
    let (view, _) = listed(sim.run_one(op).unwrap());
    let rows: BTreeMap<String, TableSummary> = view
        .as_object()
        .unwrap()
        .iter()
        .map(|(vm, summaries)| {
            let raw: Vec<RawSummary> = serde_json::from_value(summaries.clone()).unwrap();
            (vm.clone(), TableSummary::of(&raw))
        })
        .collect();
    serde_json::to_value(rows).unwrap()
}

fn vm_view(sim: &mut Sim, nonce: u64, vm: &str) -> (Value, bool) {
    let op = ops::vm_restore_view(settings(nonce), vm, Filter::default()).unwrap();
    listed(sim.run_one(op).unwrap())
}

fn cache_view(sim: &mut Sim, vm: &str) -> Value {
    let op = ops::vm_restore_view(
        settings(1).with_index(IndexMode::Off),
        vm,
        Filter::default(),
    )
    .unwrap();
    listed(sim.run_one(op).unwrap()).0
}

fn index_files(sim: &Sim, kind: &str) -> Vec<String> {
    sim.share
        .files
        .keys()
        .filter_map(|p| p.strip_prefix(INDEX))
        .filter(|name| name.starts_with(kind))
        .map(str::to_string)
        .collect()
}

/// `vms` VMs with `points` restore points each, the index built and
/// compacted over them.
fn repository(vms: usize, points: u64) -> Sim {
    let mut sim = Sim::new(7);
    sim.run_one(ops::build_index(settings(1))).unwrap();
    for v in 0..vms {
        for i in 0..points {
            write(&mut sim, 100 + (v as u64) * 100 + i, &vm(v), i);
        }
    }
    sim.run_one(ops::compact_index(settings(2), false)).unwrap();
    sim
}

#[test]
fn the_vm_table_is_the_full_fold_of_the_caches() {
    let mut sim = repository(5, 4);
    let (rows, from_index) = table(&mut sim, 10);
    assert!(from_index);
    assert_eq!(rows, rows_from_caches(&mut sim));
    let row = &rows[vm(0)];
    assert_eq!(row["count"], 4);
    assert_eq!(row["modes"], serde_json::json!({ "delta": 2, "full": 2 }));
    assert_eq!(row["lastBackup"], 1_700_000_003_000u64);
    assert_eq!(row["name"], format!("vm {} at 1700000003000", vm(0)));
    // Segments after the compaction: the VMs they touch are folded anew.
    write(&mut sim, 20, &vm(1), 9);
    let delete = ops::delete_backups(
        settings(21),
        vec![format!("/xo-vm-backups/{}/20231114T221320Z.json", vm(2))],
    );
    sim.run_one(delete.unwrap()).unwrap();
    let (rows, from_index) = table(&mut sim, 22);
    assert!(from_index);
    assert_eq!(rows, rows_from_caches(&mut sim));
    assert_eq!(rows[vm(1)]["count"], 5);
    for v in 0..5 {
        let (view, from_index) = vm_view(&mut sim, 30 + v as u64, &vm(v));
        assert!(from_index);
        assert_eq!(view, cache_view(&mut sim, &vm(v)), "VM {v}");
    }
}

#[test]
fn a_compaction_reuses_the_parts_of_the_vms_it_did_not_change() {
    let mut sim = repository(6, 2);
    let parts = index_files(&sim, "part-");
    assert_eq!(parts.len(), 1, "six small VMs in one part: {parts:?}");
    write(&mut sim, 20, &vm(3), 7);
    sim.run_one(ops::compact_index(settings(21), false))
        .unwrap();
    let now = index_files(&sim, "part-");
    assert_eq!(now.len(), 2, "the old part and the changed VM's: {now:?}");
    assert!(now.contains(&parts[0]), "reused by reference: {now:?}");
    let (rows, _) = table(&mut sim, 22);
    assert_eq!(rows, rows_from_caches(&mut sim));
    // Most of the old part's VMs move out: it is repacked, then deleted.
    for v in [0, 1, 2] {
        write(&mut sim, 30 + v, &vm(v as usize), 8);
    }
    sim.run_one(ops::compact_index(settings(40), false))
        .unwrap();
    let last = index_files(&sim, "part-");
    assert!(!last.contains(&parts[0]), "repacked: {last:?}");
    let (rows, _) = table(&mut sim, 41);
    assert_eq!(rows, rows_from_caches(&mut sim));
    let (view, from_index) = listed(
        sim.run_one(ops::restore_view(settings(42), Filter::default()))
            .unwrap(),
    );
    assert!(from_index);
    let (truth, _) = listed(
        sim.run_one(ops::restore_view(
            settings(43).with_index(IndexMode::Off),
            Filter::default(),
        ))
        .unwrap(),
    );
    assert_eq!(view, truth);
}

#[test]
fn a_missing_or_corrupt_part_sends_listings_to_the_caches() {
    for damage in ["missing", "corrupt"] {
        let mut sim = repository(3, 2);
        let truth = rows_from_caches(&mut sim);
        let part = format!("{INDEX}{}", index_files(&sim, "part-")[0]);
        match damage {
            "missing" => {
                sim.share.remove(&part);
            }
            _ => sim.share.put(&part, b"\x1f\x8b not a part".to_vec()),
        }
        let (view, from_index) = listed(
            sim.run_one(ops::restore_view(settings(10), Filter::default()))
                .unwrap(),
        );
        assert!(!from_index, "{damage}");
        assert_eq!(view.as_object().unwrap().len(), 3, "{damage}: {view}");
        // The table alone needs no part: nothing waits for these VMs.
        let (rows, _) = table(&mut sim, 11);
        assert_eq!(rows, truth, "{damage}");
        let (one, from_index) = vm_view(&mut sim, 12, &vm(1));
        assert!(!from_index, "{damage}");
        assert_eq!(one, cache_view(&mut sim, &vm(1)), "{damage}");
        // A segment for a VM of that part: the table cannot be used either.
        write(&mut sim, 13, &vm(2), 5);
        let (rows, from_index) = table(&mut sim, 14);
        assert!(!from_index, "{damage}");
        assert_eq!(rows, rows_from_caches(&mut sim), "{damage}");
    }
}

/// The round trips of an operation run alone.
fn rounds(sim: &mut Sim, mut op: ops::Op) -> usize {
    sim.rounds(&mut op).len()
}

#[test]
fn the_table_and_one_vm_cost_the_same_round_trips_at_any_vm_count() {
    let mut counts = Vec::new();
    for vms in [5, 60] {
        let mut sim = repository(vms, 1);
        // One segment waiting, as between two compactions.
        write(&mut sim, 10, &vm(0), 3);
        let table = rounds(&mut sim, ops::vm_table(settings(11)));
        let one = rounds(
            &mut sim,
            ops::vm_restore_view(settings(12), &vm(1), Filter::default()).unwrap(),
        );
        let view = rounds(&mut sim, ops::restore_view(settings(13), Filter::default()));
        counts.push((table, one, view));
    }
    assert_eq!(counts[0], counts[1], "5 VMs, then 60");
    // The restore view reads the parts listed beside the table.
    assert_eq!(counts[0], (3, 3, 2), "table, one VM, restore view");
}
