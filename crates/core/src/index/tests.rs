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
        ..VmEntry::default()
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

/// The fingerprint a cache holding exactly `names` records.
fn fingerprint(names: &[&str]) -> Option<String> {
    let files: Vec<String> = names.iter().map(|n| format!("{n}.json")).collect();
    Some(crate::Fingerprint::of_names(files.iter().map(String::as_str)).to_hex())
}

/// A view of `names` as a cache at `generation` holding them records it.
fn true_view(vm: &str, generation: u64, names: &[&str]) -> Segment {
    let mut view = entry(vm, generation, names);
    view.fingerprint = fingerprint(names);
    Segment::new(vm, view)
}

/// A writer's delta, leaving a cache of `after` at `generation`.
fn delta(vm: &str, generation: u64, put: &[&str], remove: &[&str], after: &[&str]) -> Segment {
    Segment::delta(
        vm,
        Delta {
            generation,
            fingerprint: fingerprint(after),
            put: put.iter().map(|n| summary(vm, n, 0)).collect(),
            remove: remove
                .iter()
                .map(|n| format!("/xo-vm-backups/{vm}/{n}.json"))
                .collect(),
            locked: true,
            ..Delta::default()
        },
    )
}

fn ids(snapshot: &Snapshot, vm: &str) -> Vec<String> {
    snapshot.vms[vm]
        .summaries
        .iter()
        .map(|s| format::summary_order(s).1)
        .collect()
}

fn id(vm: &str, name: &str) -> String {
    format!("/xo-vm-backups/{vm}/{name}.json")
}

fn folded(segments: &[(String, Segment)]) -> Snapshot {
    let mut snapshot = Snapshot::empty();
    snapshot.fold_all(segments.iter().cloned());
    snapshot
}

#[test]
fn a_delta_applies_over_the_view_it_follows() {
    let segments = vec![
        (segment_name(1_000, 1), true_view("a", 1, &["x"])),
        (
            segment_name(2_000, 2),
            delta("a", 2, &["y"], &[], &["x", "y"]),
        ),
    ];
    let snapshot = folded(&segments);
    assert_eq!(ids(&snapshot, "a"), [id("a", "x"), id("a", "y")]);
    assert_eq!(snapshot.vms["a"].generation, 2);
    assert_eq!(snapshot.vms["a"].fingerprint, fingerprint(&["x", "y"]));
    assert!(!snapshot.is_unsure("a"));
}

#[test]
fn a_removal_wins_over_a_put_whatever_their_order() {
    // The put arrives late, named after the removal: it must not bring the
    // restore point back.
    let segments = vec![
        (segment_name(1_000, 1), true_view("a", 1, &["x"])),
        (segment_name(2_000, 2), delta("a", 3, &[], &["y"], &["x"])),
        (
            segment_name(3_000, 3),
            delta("a", 2, &["y"], &[], &["x", "y"]),
        ),
    ];
    let forward = folded(&segments);
    let mut reversed = segments.clone();
    reversed.reverse();
    let backward = folded(&reversed);
    assert_eq!(forward, backward);
    assert_eq!(ids(&forward, "a"), [id("a", "x")]);
    assert_eq!(forward.vms["a"].generation, 3);
    assert!(!forward.is_unsure("a"));
    // Folding again changes nothing.
    let mut again = forward.clone();
    again.fold_all(segments);
    assert_eq!(again, forward);
}

#[test]
fn a_later_put_of_an_id_replaces_its_summary() {
    let mut second = delta("a", 3, &["y"], &[], &["x", "y"]);
    if let Body::Delta(d) = &mut second.body {
        d.put = vec![summary("a", "y", 7)];
    }
    let segments = vec![
        (segment_name(1_000, 1), true_view("a", 1, &["x"])),
        (
            segment_name(2_000, 2),
            delta("a", 2, &["y"], &[], &["x", "y"]),
        ),
        (segment_name(3_000, 3), second),
    ];
    let snapshot = folded(&segments);
    assert_eq!(snapshot.vms["a"].summaries[1], summary("a", "y", 7));
    let mut reversed = segments;
    reversed.reverse();
    assert_eq!(folded(&reversed), snapshot);
}

#[test]
fn deltas_named_before_the_view_less_the_skew_are_in_it() {
    let view = SKEW_MS + 10_000;
    let segments = vec![
        (segment_name(view, 1), true_view("a", 5, &["x"])),
        // Xen Orchestra removed y after this delta: the view is the truth.
        (
            segment_name(view - SKEW_MS, 2),
            delta("a", 2, &["y"], &[], &["x", "y"]),
        ),
    ];
    let snapshot = folded(&segments);
    assert_eq!(ids(&snapshot, "a"), [id("a", "x")]);
    assert_eq!(snapshot.vms["a"].generation, 5);
    // One ms later, the delta may postdate what the view read: applied.
    let segments = vec![
        segments[0].clone(),
        (
            segment_name(view - SKEW_MS + 1, 2),
            delta("a", 6, &["y"], &[], &["x", "y"]),
        ),
    ];
    let snapshot = folded(&segments);
    assert_eq!(ids(&snapshot, "a"), [id("a", "x"), id("a", "y")]);
    assert!(!snapshot.is_unsure("a"));
}

#[test]
fn a_view_later_by_both_clocks_has_the_delta_it_follows() {
    // A delete whose metadata delete failed: its delta went out, then the
    // repair's view of the file still there, past its generation.
    let segments = vec![
        (segment_name(1_000, 1), delta("a", 6, &[], &["x"], &[])),
        (segment_name(1_000, 2), true_view("a", 7, &["x"])),
    ];
    let snapshot = folded(&segments);
    assert_eq!(ids(&snapshot, "a"), [id("a", "x")]);
    assert!(!snapshot.is_unsure("a"));
    // Without a lock that excludes, generations do not order writes: the
    // delete applies over the view, and the entry is in doubt until the
    // view is SKEW_MS newer.
    let mut unlocked = segments.clone();
    if let Body::Delta(d) = &mut unlocked[0].1.body {
        d.locked = false;
    }
    let snapshot = folded(&unlocked);
    assert!(ids(&snapshot, "a").is_empty());
    assert!(snapshot.is_unsure("a"));
    unlocked[1].0 = segment_name(1_000 + SKEW_MS, 2);
    assert_eq!(ids(&folded(&unlocked), "a"), [id("a", "x")]);
    // A delta of the same generation named after the view was not seen by
    // it (a writer without the lock): applied, and the entry is in doubt.
    let segments = vec![
        segments[1].clone(),
        (segment_name(1_001, 3), delta("a", 7, &["y"], &[], &["y"])),
    ];
    let snapshot = folded(&segments);
    assert_eq!(ids(&snapshot, "a"), [id("a", "x"), id("a", "y")]);
    assert!(snapshot.is_unsure("a"));
}

#[test]
fn deltas_without_a_view_are_partial() {
    let segments = vec![(
        segment_name(1_000, 1),
        delta("a", 2, &["y"], &[], &["x", "y"]),
    )];
    let snapshot = folded(&segments);
    assert!(snapshot.vms["a"].partial);
    assert!(snapshot.is_unsure("a"));
    // A view of the VM makes it whole.
    let mut whole = snapshot.clone();
    whole.fold(&segment_name(2_000, 2), true_view("a", 2, &["x", "y"]));
    assert!(!whole.is_unsure("a"));
    assert_eq!(ids(&whole, "a"), [id("a", "x"), id("a", "y")]);
}

#[test]
fn writers_that_did_not_order_their_writes_leave_the_entry_unsure() {
    // Both read generation 1 and wrote generation 2, each cache holding its
    // own restore point only: the points folded are not either cache.
    let segments = vec![
        (segment_name(1_000, 1), true_view("a", 1, &["x"])),
        (
            segment_name(2_000, 2),
            delta("a", 2, &["y"], &[], &["x", "y"]),
        ),
        (
            segment_name(2_000, 3),
            delta("a", 2, &["z"], &[], &["x", "z"]),
        ),
    ];
    let snapshot = folded(&segments);
    assert!(snapshot.is_unsure("a"));
    assert!(!snapshot.vms["a"].partial);
    // The repair's view, of the cache it levelled with the folder.
    let mut repaired = snapshot.clone();
    repaired.fold(&segment_name(3_000, 4), true_view("a", 3, &["x", "y", "z"]));
    assert!(!repaired.is_unsure("a"));
}

#[test]
fn a_compaction_keeps_the_deltas_it_cannot_trust_as_segments() {
    let segments = vec![
        (segment_name(1_000, 1), true_view("a", 1, &["x"])),
        (
            segment_name(2_000, 2),
            delta("a", 2, &["y"], &[], &["x", "y"]),
        ),
        (
            segment_name(3_000, 3),
            delta("b", 4, &["w"], &[], &["v", "w"]),
        ),
    ];
    let compaction = compact(Snapshot::empty(), segments.clone());
    assert_eq!(
        compaction.segments_to_delete,
        [segment_name(1_000, 1), segment_name(2_000, 2)]
    );
    assert!(!compaction.snapshot.vms.contains_key("b"));
    assert_eq!(ids(&compaction.snapshot, "a"), [id("a", "x"), id("a", "y")]);
    // What a reader then folds is what it folded before the compaction.
    let bytes = compaction.snapshot.encode();
    let loaded = Loaded::decode(
        Some(&bytes),
        vec![(segments[2].0.clone(), segments[2].1.encode())],
        &DecodeLimits::default(),
    )
    .unwrap();
    assert_eq!(loaded.current().view(), folded(&segments).view());
    assert!(loaded.current().is_unsure("b"));
}

#[test]
fn deltas_round_trip_and_are_checked() {
    let limits = DecodeLimits::default();
    let segment = delta("a", 2, &["y"], &["x"], &["y"]);
    assert_eq!(
        Segment::decode(&segment.encode(), &limits).unwrap(),
        segment
    );
    let mut json: serde_json::Value = serde_json::to_value(&segment).unwrap();
    assert_eq!(json["kind"], "delta");
    assert_eq!(json["version"], DELTA_VERSION);
    // A delta in the views' format would be read as a view by releases
    // before deltas: refused.
    json["version"] = 1.into();
    assert!(Segment::decode(json.to_string().as_bytes(), &limits).is_err());
    json["version"] = DELTA_VERSION.into();
    json["remove"] = serde_json::json!(["/xo-vm-backups/b/x.json"]);
    assert!(Segment::decode(json.to_string().as_bytes(), &limits).is_err());
    json["remove"] = serde_json::json!([]);
    json["summaries"] = serde_json::json!([]);
    assert!(Segment::decode(json.to_string().as_bytes(), &limits).is_err());
}

#[test]
fn readers_take_the_greatest_snapshot_name_of_the_highest_generation() {
    let older = snapshot_name(3);
    let sibling = unique_snapshot_name(4, 1_000, 0xb);
    let chosen = unique_snapshot_name(4, 1_000, 0xc);
    let names = [
        older.as_str(),
        chosen.as_str(),
        sibling.as_str(),
        "snapshot-00000000000000000009-1-2.json.gz",
        "snapshot-9.json.gz",
    ];
    let plan = ReadPlan::from_listing(names);
    assert_eq!(plan.snapshot.as_deref(), Some(chosen.as_str()));
    assert_eq!(plan.generation, 4);
    assert_eq!(plan.old_snapshots, [sibling.clone(), older.clone()]);
    assert_eq!(snapshot_time(&chosen), 1_000);
    assert_eq!(snapshot_time(&older), 0);
}

/// A delta's summaries come from the new metadata files, not from the
/// cache: they must be the very summaries a view of the cache holds for
/// them, odd field types included (a listing folds one over the other).
#[test]
fn a_deltas_summaries_are_the_caches() {
    use crate::key::{MetadataName, VmId};
    use crate::summary::{Filter, summaries_of_bytes};
    let vm = VmId::new("0b3cc5a8-94f2-4c22-b6a4-5f4c3c3b2a10").unwrap();
    let mut cache = crate::vm_cache::VmCache::new(vm.clone());
    let old = br#"{"timestamp":1,"mode":"full","size":3,"jobId":"j","scheduleId":"s"}"#;
    cache
        .add_name(MetadataName::new("20260101T000000Z.json").unwrap(), old)
        .unwrap();
    let added: [(MetadataName, &[u8]); 2] = [
        (
            MetadataName::new("20260102T000000Z.json").unwrap(),
            br#"{"timestamp":2,"mode":"delta","size":5,"vm":{"name_label":"v","tags":["t"]},
                "vhds":{"r":"vdis/x/y.vhd"},"vdis":{"r":{"name_label":"disk"}},"jobId":"j"}"#,
        ),
        (
            // Fields of unexpected types: the lenient read keeps what fits.
            MetadataName::new("20260103T000000Z.json").unwrap(),
            br#"{"timestamp":"late","mode":7,"vdis":[1],"vhds":3,"isImmutable":true}"#,
        ),
    ];
    for (name, metadata) in &added {
        cache.add_name(name.clone(), metadata).unwrap();
    }
    let bytes = cache.commit();
    let pairs: Vec<(&MetadataName, &[u8])> = added.iter().map(|(n, m)| (n, *m)).collect();
    let removed = [MetadataName::new("20251231T000000Z.json").unwrap()];
    let segment = Segment::decode(
        &delta_of_bytes(&vm, &bytes, &pairs, &removed, &[], None, true).unwrap(),
        &DecodeLimits::default(),
    )
    .unwrap();
    let Body::Delta(delta) = segment.body else {
        panic!("not a delta: {:?}", segment.body)
    };
    let mut from_cache: Vec<String> =
        summaries_of_bytes(&vm, &bytes, &DecodeLimits::default(), &Filter::default())
            .unwrap()
            .iter()
            .filter(|s| !s.id.ends_with("20260101T000000Z.json"))
            .map(|s| RawSummary::of(s).get().to_string())
            .collect();
    let mut put: Vec<String> = delta.put.iter().map(|s| s.get().to_string()).collect();
    from_cache.sort();
    put.sort();
    assert_eq!(put.len(), 2);
    assert_eq!(put, from_cache);
    assert_eq!(delta.generation, cache.generation());
    assert_eq!(delta.remove, vec![vm.key(&removed[0])]);
}

const VM_A: &str = "0b1c2d3e-0000-4000-8000-00000000000a";

#[test]
fn a_segments_name_says_its_vm() {
    let name = vm_segment_name(1_000, 0xab, VM_A);
    assert_eq!(
        name,
        format!("000000000001000-00000000000000ab-{VM_A}.json.gz")
    );
    assert_eq!(segment_vm(&name), Some(VM_A));
    assert_eq!(segment_time(&name), Some(1_000));
    let plain = "000000000001001-00000000000000ac.json";
    let older = segment_name(1_002, 0xad);
    for unnamed in [plain, older.as_str()] {
        assert_eq!(segment_vm(unnamed), None, "{unnamed}");
        assert!(segment_time(unnamed).is_some(), "{unnamed}");
    }
    let plan = ReadPlan::from_listing([name.as_str(), plain, older.as_str()]);
    assert_eq!(plan.segments, [name.as_str(), plain, older.as_str()]);
    assert_eq!(plan.waiting(), 3);
    // Not segments: no VM after the dash, a hidden name, a plain JSON
    // name with a VM (the first release's plain segments said none), the
    // random part one digit long.
    for odd in [
        "000000000001000-00000000000000ab-.json.gz".to_string(),
        "000000000001000-00000000000000ab-.x.json.gz".to_string(),
        format!("000000000001000-00000000000000ab-{VM_A}.json"),
        format!("000000000001000-00000000000000abc-{VM_A}.json.gz"),
        format!("000000000001000-00000000000000ab{VM_A}.json.gz"),
    ] {
        assert_eq!(segment_time(&odd), None, "{odd}");
        assert!(
            ReadPlan::from_listing([odd.as_str()]).segments.is_empty(),
            "{odd}"
        );
    }
    // A VM folder name too long to carry: the name says no VM.
    let long = "v".repeat(200);
    assert_eq!(segment_vm(&vm_segment_name(1_000, 1, &long)), None);
    assert_eq!(vm_segment_name(1_000, 1, &long), segment_name(1_000, 1));
}

/// `is_segment` as the release before segments named by VM has it
/// (crates/core/src/index.rs there): what it does with the new names.
fn previous_release_is_segment(name: &str) -> bool {
    let stem = name
        .strip_suffix(".json.gz")
        .or_else(|| name.strip_suffix(".json"));
    stem.is_some_and(|stem| {
        let mut parts = stem.splitn(2, '-');
        let time = parts.next().unwrap_or_default();
        let random = parts.next().unwrap_or_default();
        time.len() == 15
            && time.bytes().all(|b| b.is_ascii_digit())
            && random.len() == 16
            && random.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

#[test]
fn the_previous_release_takes_a_name_that_says_a_vm_for_no_segment() {
    // Nor for a snapshot or a part: it ignores the file (neither reads,
    // folds nor deletes it), which is why writers name segments by VM only
    // beside a table, which that release does not read at all.
    let name = vm_segment_name(1_000, 0xab, VM_A);
    assert!(!previous_release_is_segment(&name));
    assert!(!name.starts_with("snapshot-") && !name.starts_with("part-"));
    assert!(previous_release_is_segment(&segment_name(1_000, 0xab)));
}

#[test]
fn folding_segments_named_by_vm_or_not_keeps_its_rules() {
    let named = |t, r| vm_segment_name(t, r, "a");
    let segments = vec![
        (segment_name(1_000, 1), true_view("a", 1, &["x"])),
        (named(2_000, 2), delta("a", 3, &[], &["y"], &["x"])),
        (
            segment_name(3_000, 3),
            delta("a", 2, &["y"], &[], &["x", "y"]),
        ),
        (named(4_000, 4), delta("a", 4, &["z"], &[], &["x", "z"])),
    ];
    let forward = folded(&segments);
    for rotation in 1..segments.len() {
        let mut turned = segments.clone();
        turned.rotate_left(rotation);
        assert_eq!(folded(&turned), forward, "rotated by {rotation}");
        turned.reverse();
        assert_eq!(folded(&turned), forward, "reversed, rotated by {rotation}");
    }
    // The removal wins over the put that arrives late.
    assert_eq!(ids(&forward, "a"), [id("a", "x"), id("a", "z")]);
    let mut again = forward.clone();
    again.fold_all(segments);
    assert_eq!(again, forward);
}

#[test]
fn a_segment_named_for_another_vm_does_not_decode() {
    let limits = DecodeLimits::default();
    let bytes = Segment::new("a", entry("a", 1, &["x"])).encode();
    let (ok, unreadable) = decode_segments(
        vec![
            (vm_segment_name(1_000, 1, "a"), bytes.clone()),
            (vm_segment_name(1_000, 2, "b"), bytes.clone()),
            (segment_name(1_000, 3), bytes),
        ],
        &limits,
    );
    assert_eq!(ok.len(), 2);
    assert_eq!(unreadable.len(), 1);
    assert_eq!(unreadable[0].0, vm_segment_name(1_000, 2, "b"));
    assert!(unreadable[0].1.contains("named for VM b"), "{unreadable:?}");
}
