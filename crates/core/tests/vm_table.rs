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
        // A backup of a VM of that part: its row folds the delta alone.
        write(&mut sim, 13, &vm(2), 5);
        let (rows, from_index) = table(&mut sim, 14);
        assert!(from_index, "{damage}");
        assert_eq!(rows, rows_from_caches(&mut sim), "{damage}");
        // Its newest deleted: what is newest then is in the part, so the
        // table cannot be used either.
        let newest = format!("/xo-vm-backups/{}/20231114T221325Z.json", vm(2));
        let delete = ops::delete_backups(settings(15), vec![newest]).unwrap();
        sim.run_one(delete).expect("deleted");
        let (rows, from_index) = table(&mut sim, 16);
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
    // The restore view reads the parts listed beside the table; the table
    // folds the segment into its VM's row, and reads no part.
    assert_eq!(counts[0], (2, 3, 2), "table, one VM, restore view");
}

/// The index files `op` read, run alone.
fn index_reads(sim: &mut Sim, op: ops::Op) -> (Output, Vec<String>) {
    let mut driven = sim::Driven::new(1_000, op);
    let output = driven.finish(&mut sim.share).expect("answered");
    let reads = driven
        .performed
        .iter()
        .filter_map(|r| match r {
            ops::Request::Read { path } => path.strip_prefix(INDEX).map(str::to_string),
            _ => None,
        })
        .collect();
    (output, reads)
}

fn is_segment_name(name: &str) -> bool {
    !name.starts_with("snapshot-") && !name.starts_with("part-")
}

#[test]
fn one_vms_points_read_its_own_segments_and_those_that_say_no_vm() {
    let mut sim = repository(8, 1);
    for v in 0..8 {
        write(&mut sim, 20 + v as u64, &vm(v), 5);
    }
    let segments: Vec<String> = index_files(&sim, "")
        .into_iter()
        .filter(|n| is_segment_name(n))
        .collect();
    assert_eq!(segments.len(), 8, "{segments:?}");
    for (v, name) in segments.iter().enumerate() {
        assert_eq!(
            brcache_core::segment_vm(name),
            Some(vm(v).as_str()),
            "{name}"
        );
        assert!(name.ends_with(&format!("-{}.json.gz", vm(v))), "{name}");
    }
    // A segment of an older release (its name says no VM): VM 6's
    // published again, a fold of it twice changing nothing.
    let unnamed = brcache_core::segment_name(1_700_000_000_001, 0xab);
    let bytes = sim.share.files[&format!("{INDEX}{}", segments[6])]
        .bytes
        .clone();
    sim.share.put(&format!("{INDEX}{unnamed}"), bytes);
    let op = ops::vm_restore_view(settings(40), &vm(3), Filter::default()).unwrap();
    let (output, reads) = index_reads(&mut sim, op);
    let mut read: Vec<&String> = reads.iter().filter(|n| is_segment_name(n)).collect();
    read.sort();
    assert_eq!(read, [&unnamed, &segments[3]], "VM 3's and the unnamed");
    let (view, from_index) = listed(output);
    assert!(from_index);
    assert_eq!(view, cache_view(&mut sim, &vm(3)));
    let (view, _) = vm_view(&mut sim, 41, &vm(6));
    assert_eq!(view, cache_view(&mut sim, &vm(6)));
    // The VM table and the restore view read every segment.
    let (output, reads) = index_reads(&mut sim, ops::vm_table(settings(42)));
    assert_eq!(reads.iter().filter(|n| is_segment_name(n)).count(), 9);
    assert_eq!(listed(output).0, rows_from_caches(&mut sim));
}

#[test]
fn a_segment_named_for_another_vm_is_read_by_no_one() {
    let mut sim = repository(3, 1);
    write(&mut sim, 20, &vm(1), 5);
    let segments: Vec<String> = index_files(&sim, "")
        .into_iter()
        .filter(|n| is_segment_name(n))
        .collect();
    let [segment] = &segments[..] else {
        panic!("one segment: {segments:?}")
    };
    // VM 1's new restore point under a name that says VM 2: a one-VM
    // read of VM 1 skips it by name, so no read may fold it.
    let bytes = sim.share.files[&format!("{INDEX}{segment}")].bytes.clone();
    sim.share.remove(&format!("{INDEX}{segment}"));
    let lying = brcache_core::vm_segment_name(1_700_000_000_002, 7, &vm(2));
    sim.share.put(&format!("{INDEX}{lying}"), bytes);
    let (one, _) = vm_view(&mut sim, 30, &vm(1));
    let (view, _) = listed(
        sim.run_one(ops::restore_view(settings(31), Filter::default()))
            .unwrap(),
    );
    assert_eq!(view[vm(1)], one[vm(1)], "both reads agree");
    assert_eq!(
        one[vm(1)].as_array().unwrap().len(),
        1,
        "the lie is skipped"
    );
    assert_eq!(view[vm(2)], cache_view(&mut sim, &vm(2))[vm(2)]);
}

#[test]
fn beside_a_whole_snapshot_segments_say_no_vm() {
    // An index an older release made: a whole snapshot, no parts. Its
    // readers take a name that says a VM for no segment.
    let mut sim = Sim::new(7);
    let snapshot = brcache_core::Snapshot::empty().encode();
    sim.share.put(
        &format!("{INDEX}{}", brcache_core::snapshot_name(1)),
        snapshot,
    );
    write(&mut sim, 10, &vm(0), 1);
    let segments: Vec<String> = index_files(&sim, "")
        .into_iter()
        .filter(|n| is_segment_name(n))
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    assert_eq!(brcache_core::segment_vm(&segments[0]), None, "{segments:?}");
    // Once a compaction made it a table, they say their VM.
    sim.run_one(ops::compact_index(settings(11), false))
        .unwrap();
    write(&mut sim, 12, &vm(0), 2);
    let segments: Vec<String> = index_files(&sim, "")
        .into_iter()
        .filter(|n| is_segment_name(n))
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    assert_eq!(brcache_core::segment_vm(&segments[0]), Some(vm(0).as_str()));
}
