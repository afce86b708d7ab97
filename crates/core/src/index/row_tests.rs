//! A VM table row folds the deltas that chain from it exactly as a full
//! fold of its entry would, or declines (`Row::after`).

use super::table::Row;
use super::*;
use crate::summary::Summary as CoreSummary;
use proptest::prelude::*;

const VM: &str = "0b1c2d3e-0000-4000-8000-000000000001";
const PART: &str = "part-00000000000000000001-000000000001000-00000000000000b1.json.gz";

/// A restore point: its name's number, timestamp, mode and size.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    n: u32,
    time: u64,
    full: bool,
    size: f64,
}

fn name(n: u32) -> String {
    format!("2024{n:04}T000000Z.json")
}

fn summary(p: &Point) -> RawSummary {
    let summary: CoreSummary = serde_json::from_value(serde_json::json!({
        "id": format!("/xo-vm-backups/{VM}/{}", name(p.n)), "timestamp": p.time,
        "mode": if p.full { "full" } else { "delta" }, "size": p.size, "jobId": "j",
        "scheduleId": "s", "tags": [], "vm": { "name_label": format!("vm at {}", p.time) },
        "disks": [], "withMemory": false, "differencingVhds": 0, "dynamicVhds": 0,
        "isImmutable": false
    }))
    .unwrap();
    RawSummary::of(&summary)
}

fn fingerprint(points: &[Point]) -> Option<String> {
    let names: Vec<String> = points.iter().map(|p| name(p.n)).collect();
    Some(crate::Fingerprint::of_names(names.iter().map(String::as_str)).to_hex())
}

fn entry(generation: u64, points: &[Point]) -> VmEntry {
    let mut summaries: Vec<RawSummary> = points.iter().map(summary).collect();
    summaries.sort_by(|a, b| {
        let (a, b) = (format::summary_order(a), format::summary_order(b));
        a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1))
    });
    VmEntry {
        generation,
        fingerprint: fingerprint(points),
        summaries,
        time: Some(1_000_000),
        ..VmEntry::default()
    }
}

/// One writer's change under the lock: the points it adds and removes,
/// made to `before` (what its cache held).
struct Change {
    put: Vec<Point>,
    remove: Vec<Point>,
    gone: bool,
    spliced: bool,
}

/// The deltas of `changes` made in turn from `start` at `generation`,
/// each named a second after the last, after the entry's time.
fn deltas(generation: u64, start: &[Point], changes: &[Change]) -> Vec<(String, Segment)> {
    let mut points = start.to_vec();
    let mut out = Vec::new();
    for (i, change) in changes.iter().enumerate() {
        let before = fingerprint(&points);
        points.retain(|p| !change.remove.iter().any(|r| r.n == p.n));
        points.extend(change.put.iter().copied());
        let delta = Delta {
            generation: generation + 1 + i as u64,
            fingerprint: fingerprint(&points),
            put: change.put.iter().map(summary).collect(),
            remove: change
                .remove
                .iter()
                .map(|p| format!("/xo-vm-backups/{VM}/{}", name(p.n)))
                .collect(),
            locked: true,
            before: before.filter(|_| change.spliced),
            gone: match change.gone {
                true => change.remove.iter().map(summary).collect(),
                false => Vec::new(),
            },
        };
        let time = 2_000_000 + i as u64 * 1000;
        out.push((
            read_plan::vm_segment_name(time, i as u64, VM),
            Segment::delta(VM, delta),
        ));
    }
    out
}

/// The row `Row::after` gives, and the row of the entry a full fold gives
/// (with whether that fold is sure).
fn both(start: &[Point], changes: &[Change]) -> (Option<Row>, Row, bool) {
    let base = entry(7, start);
    let row = Row::of(&base, PART);
    let segments = deltas(7, start, changes);
    let mut snapshot = Snapshot::empty();
    snapshot.vms.insert(VM.to_string(), base);
    snapshot.fold_all(segments.iter().cloned());
    let folded = Row::of(&snapshot.vms[VM], PART);
    let deltas: Vec<(u64, &str, &Delta)> = segments
        .iter()
        .map(|(name, s)| match &s.body {
            Body::Delta(d) => (read_plan::segment_time(name).unwrap(), name.as_str(), d),
            Body::View(_) => unreachable!(),
        })
        .collect();
    (row.after(&deltas), folded, !snapshot.is_unsure(VM))
}

fn point(n: u32, time: u64) -> Point {
    Point {
        n,
        time,
        full: n % 3 == 0,
        size: f64::from(n * 100),
    }
}

#[test]
fn a_backup_job_folds_into_the_row_alone() {
    // A job adds the newest restore point, then retention deletes the
    // oldest: the row follows both without the entry.
    let start: Vec<Point> = (0..5).map(|n| point(n, 100 + u64::from(n))).collect();
    let changes = [
        Change {
            put: vec![point(5, 200)],
            remove: vec![],
            gone: true,
            spliced: true,
        },
        Change {
            put: vec![],
            remove: vec![start[0]],
            gone: true,
            spliced: true,
        },
    ];
    let (after, folded, sure) = both(&start, &changes);
    assert!(sure);
    assert_eq!(after, Some(folded.clone()));
    assert_eq!(folded.summary.count, 5);
    assert_eq!(folded.summary.last_backup, serde_json::json!(200));
    assert_eq!(folded.summary.name, serde_json::json!("vm at 200"));
}

#[test]
fn a_row_declines_what_its_deltas_do_not_say() {
    let start: Vec<Point> = (0..3).map(|n| point(n, 100 + u64::from(n))).collect();
    let decline = |changes: &[Change]| {
        let (after, _, _) = both(&start, changes);
        assert_eq!(after, None);
    };
    let change = |put: Vec<Point>, remove: Vec<Point>, gone, spliced| Change {
        put,
        remove,
        gone,
        spliced,
    };
    // Not made to the set the row names (the cache was rebuilt).
    decline(&[change(vec![point(5, 200)], vec![], true, false)]);
    // A removal that does not say what it removed.
    decline(&[change(vec![], vec![start[0]], false, true)]);
    // The newest removed: what is newest after it is not known.
    decline(&[change(vec![], vec![start[2]], true, true)]);
    // A put at the newest's time: which one is newest is not known.
    decline(&[change(vec![point(5, 102)], vec![], true, true)]);
    // A size that is not whole: its sum depends on the order.
    let mut half = point(5, 200);
    half.size = 0.5;
    decline(&[change(vec![half], vec![], true, true)]);
}

fn arb_point(n: u32) -> impl Strategy<Value = Point> {
    (
        0u64..40,
        any::<bool>(),
        prop_oneof![9 => (0u32..5000).prop_map(f64::from), 1 => Just(0.25)],
    )
        .prop_map(move |(time, full, size)| Point {
            n,
            time,
            full,
            size,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the deltas, `Row::after` is the full fold's row or
    /// nothing, and the fold it stands for is sure.
    #[test]
    fn a_row_after_its_deltas_is_the_folds_row_or_none(
        start in (0usize..6).prop_flat_map(|k| (0..k as u32).map(arb_point).collect::<Vec<_>>()),
        steps in proptest::collection::vec(
            (proptest::collection::vec(0u32..4, 0..3), 0usize..3, any::<bool>(), 0u8..10),
            1..5,
        ),
    ) {
        let mut points = start.clone();
        let mut next = 100;
        let mut changes = Vec::new();
        for (puts, removes, gone, spliced) in steps {
            let put: Vec<Point> = puts
                .iter()
                .map(|offset| {
                    next += 1;
                    Point { time: u64::from(*offset) * 15, ..point(next, 0) }
                })
                .collect();
            let remove: Vec<Point> = points.iter().take(removes).copied().collect();
            points.retain(|p| !remove.contains(p));
            points.extend(put.iter().copied());
            changes.push(Change { put, remove, gone, spliced: spliced > 0 });
        }
        let (after, folded, sure) = both(&start, &changes);
        if let Some(after) = after {
            prop_assert!(sure);
            prop_assert_eq!(after, folded);
        }
    }
}
