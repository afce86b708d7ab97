use super::*;
use crate::codec::DecodeLimits;
use crate::summary::Summary;
use std::collections::BTreeMap;

fn summary(vm: &str, name: &str, timestamp: u64) -> RawSummary {
    let summary: Summary = serde_json::from_value(serde_json::json!({
        "id": format!("/xo-vm-backups/{vm}/{name}.json"), "timestamp": timestamp,
        "mode": "full", "size": 1, "jobId": "j", "scheduleId": "s", "tags": [], "vm": {},
        "disks": [], "withMemory": false, "differencingVhds": 0, "dynamicVhds": 0,
        "isImmutable": false
    }))
    .unwrap();
    RawSummary::of(&summary)
}

fn entry(vm: &str, generation: u64, names: &[&str]) -> VmEntry {
    VmEntry {
        generation,
        fingerprint: Some(format!("{generation:064x}")),
        summaries: names
            .iter()
            .enumerate()
            .map(|(i, name)| summary(vm, name, i as u64))
            .collect(),
    }
}

#[test]
fn folding_is_order_independent_and_idempotent() {
    let segments = [
        (
            "000000000000001-0000000000000001.json",
            Segment::new("a", entry("a", 1, &["x"])),
        ),
        (
            "000000000000002-0000000000000002.json",
            Segment::new("a", entry("a", 3, &["x", "y"])),
        ),
        (
            "000000000000003-0000000000000003.json",
            Segment::new("b", entry("b", 2, &["z"])),
        ),
        (
            "000000000000004-0000000000000004.json",
            Segment::new("a", entry("a", 2, &["y"])),
        ),
    ];
    let mut forward = Snapshot::empty();
    for (name, s) in segments.iter().cloned() {
        forward.fold(name, s);
    }
    let mut backward = Snapshot::empty();
    for (name, s) in segments.iter().rev().cloned() {
        backward.fold(name, s.clone());
        backward.fold(name, s);
    }
    assert_eq!(forward, backward);
    assert_eq!(forward.vms["a"].generation, 3);
    assert_eq!(forward.view().len(), 2);
}

#[test]
fn an_emptied_vm_stays_empty_against_older_segments() {
    let mut snapshot = Snapshot::empty();
    snapshot.put("a", entry("a", 5, &[]));
    snapshot.fold(
        "000000000000001-0000000000000001.json",
        Segment::new("a", entry("a", 4, &["x"])),
    );
    assert!(snapshot.view().is_empty());
}

#[test]
fn listing_finds_the_newest_snapshot_and_the_segments() {
    let plan = ReadPlan::from_listing([
        snapshot_name(2).as_str(),
        snapshot_name(10).as_str(),
        "000000000000005-00000000000000ff.json",
        ".snapshot-x.tmp-1",
        "garbage.json",
        "000000000000004-00000000000000aa.json",
    ]);
    assert_eq!(plan.snapshot, Some(snapshot_name(10)));
    assert_eq!(plan.old_snapshots, [snapshot_name(2)]);
    assert_eq!(
        plan.segments,
        [
            "000000000000004-00000000000000aa.json",
            "000000000000005-00000000000000ff.json"
        ]
    );
}

#[test]
fn snapshots_and_segments_round_trip() {
    let mut snapshot = Snapshot::empty();
    snapshot.put("a", entry("a", 1, &["x", "y"]));
    let compaction = compact(
        snapshot,
        vec![(segment_name(7, 9), Segment::new("b", entry("b", 1, &["z"])))],
    );
    assert_eq!(compaction.name, snapshot_name(1));
    assert_eq!(compaction.segments_to_delete, [segment_name(7, 9)]);
    let bytes = compaction.snapshot.encode();
    assert_eq!(
        Snapshot::decode(&bytes, &DecodeLimits::default()).unwrap(),
        compaction.snapshot
    );
    let segment = Segment::new("a", entry("a", 2, &["x"]));
    let limits = DecodeLimits::default();
    assert_eq!(
        Segment::decode(&segment.encode(), &limits).unwrap(),
        segment
    );
    let plain = serde_json::to_vec(&segment).unwrap();
    assert_eq!(Segment::decode(&plain, &limits).unwrap(), segment);
    assert!(Segment::decode(b"{}", &limits).is_err());
}

#[test]
fn a_rebuild_outranks_every_listed_snapshot_and_later_segments_win() {
    let later = segment_name(9, 1);
    let plan = ReadPlan::from_listing([
        snapshot_name(3).as_str(),
        snapshot_name(7).as_str(),
        later.as_str(),
        "000000000000001-0000000000000002.json.gz",
    ]);
    assert_eq!(plan.generation, 7);
    let compaction = rebuild_from_bytes(
        &plan,
        vec![
            Segment::new("a", entry("a", 4, &["x"])).encode(),
            Segment::new("b", entry("b", 1, &["y"])).encode(),
        ],
        vec![
            (
                later.clone(),
                Segment::new("a", entry("a", 5, &["x", "z"])).encode(),
            ),
            (
                "000000000000001-0000000000000002.json.gz".into(),
                b"cut".to_vec(),
            ),
        ],
        &DecodeLimits::default(),
    )
    .unwrap();
    assert_eq!(compaction.name, snapshot_name(8));
    assert_eq!(compaction.snapshot.vms["a"].generation, 5);
    assert_eq!(compaction.snapshot.vms["b"].generation, 1);
    assert_eq!(compaction.segments_to_delete.len(), 2);
    // A cache segment that does not decode is the caller's bug: an error.
    assert!(
        rebuild_from_bytes(&plan, vec![b"x".to_vec()], vec![], &DecodeLimits::default()).is_err()
    );
}

#[test]
fn drift_names_the_vms_the_index_got_wrong() {
    let mut snapshot = Snapshot::empty();
    snapshot.put("same", entry("same", 2, &["x"]));
    snapshot.put("behind", entry("behind", 2, &["x"]));
    snapshot.put("gone", entry("gone", 1, &["x"]));
    let caches = BTreeMap::from([
        ("same".to_string(), Some((2, Some(format!("{:064x}", 2))))),
        ("behind".to_string(), Some((0, None))),
        ("new".to_string(), Some((1, None))),
    ]);
    let found = drift(&snapshot, &caches);
    assert_eq!(
        found,
        BTreeMap::from([
            ("behind".to_string(), Drift::Behind),
            ("gone".to_string(), Drift::Gone),
            ("new".to_string(), Drift::Unknown),
        ])
    );
}
