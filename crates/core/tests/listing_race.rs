//! A listing from the index beside a brcache writer: the listing of the
//! index folder and the listing of `xo-vm-backups/` go out together and
//! may land either way round, so a writer's last two round trips (its
//! segment, then its unlock) can both land between them. The listing then
//! saw neither the segment nor the lock; it lists the index folder again
//! beside the snapshot's read, after the VM folders' listing, and reads
//! what that adds. These schedules hold it to every order of those calls,
//! with a compaction folding the segment away in between too.

mod sim;

use brcache_core::ops::{self, IndexMode, Output, Request, Settings};
use brcache_core::{DecodeLimits, Filter};
use sim::{Driven, Sim, listed_keys as keys};

const VM: &str = "0b1c2d3e-0000-4000-8000-00000000000c";
const OTHER: &str = "0b1c2d3e-0000-4000-8000-00000000000d";
const WRITER: usize = 10_000;
const LISTER: usize = 20_000;

fn settings(nonce: u64) -> Settings {
    Settings::new(DecodeLimits::default(), false, IndexMode::Auto, nonce)
}

fn metadata(vm: &str, i: u64) -> Vec<u8> {
    serde_json::json!({
        "mode": "delta", "timestamp": 1_700_000_000_000 + i * 1000, "jobId": "job",
        "scheduleId": "schedule", "vm": { "uuid": vm }, "vhds": {}, "size": i,
    })
    .to_string()
    .into_bytes()
}

/// An index, and true caches: two backups of `VM`, one of `OTHER`.
fn repository() -> (Sim, Vec<String>) {
    let mut sim = Sim::new(7);
    sim.run_one(ops::build_index(settings(1))).unwrap();
    let mut keys = Vec::new();
    for (i, vm) in [VM, VM, OTHER].into_iter().enumerate() {
        let op = ops::write_backup(settings(2 + i as u64), vm, metadata(vm, i as u64));
        let Output::Written(key) = sim.run_one(op.unwrap()).unwrap() else {
            panic!("a write")
        };
        keys.push(key);
    }
    (sim, keys)
}

fn is_segment(request: &Request) -> bool {
    matches!(request, Request::Replace { path, .. } if path.starts_with(brcache_core::INDEX_DIR))
}

fn is_index_listing(request: &Request) -> bool {
    matches!(request, Request::List { path } if path == brcache_core::INDEX_DIR)
}

fn is_folders_listing(request: &Request) -> bool {
    matches!(request, Request::ListFolders { .. })
}

#[derive(Debug, Clone, Copy)]
enum Change {
    Write,
    Delete,
}

/// Where the writer's segment and unlock land among the listing's first
/// two calls.
#[derive(Debug, Clone, Copy)]
enum Landing {
    /// After both: the listing sees the lock.
    AfterBoth,
    /// Between them, the index folder listed first: it sees neither.
    Between,
    /// Between them, and a compaction folds the segment and deletes it
    /// before the VM folders are listed.
    BetweenThenCompacted,
    /// Between them, the VM folders listed first: it sees the lock.
    BetweenFoldersFirst,
}

/// A writer changes `VM` up to its segment (metadata and cache done, lock
/// held), the listing starts, and the writer's segment and unlock land
/// where `landing` says. The listing must answer the folder as it was all
/// along, and from the index.
fn race(change: Change, landing: Landing) {
    let (mut sim, written) = repository();
    let op = match change {
        Change::Write => ops::write_backup(settings(20), VM, metadata(VM, 9)),
        Change::Delete => ops::delete_backups(settings(20), vec![written[0].clone()]),
    };
    let mut writer = Driven::new(WRITER, op.unwrap());
    while writer.perform(&mut sim.share, |r| !is_segment(r)) {}
    assert!(
        writer.waits_on(is_segment),
        "{change:?}: the writer publishes"
    );
    let truth = sim.share.metadata_keys();
    let mut lister = Driven::new(LISTER, ops::restore_view(settings(30), Filter::default()));
    let first = match landing {
        Landing::BetweenFoldersFirst => is_folders_listing,
        _ => is_index_listing,
    };
    if matches!(landing, Landing::AfterBoth) {
        assert!(lister.perform(&mut sim.share, is_index_listing));
        assert!(lister.perform(&mut sim.share, is_folders_listing));
    } else {
        assert!(lister.perform(&mut sim.share, first));
    }
    writer.finish(&mut sim.share).expect("the change");
    if matches!(landing, Landing::BetweenThenCompacted) {
        sim.run_one(ops::compact_index(settings(40), false))
            .unwrap();
    }
    let Output::Listed(listed) = lister.finish(&mut sim.share).expect("a listing") else {
        panic!("not a listing")
    };
    assert!(listed.from_index, "{change:?}, {landing:?}: from the index");
    // Its lock seen, or (between the listings) its entry moved from the
    // first listing of the index folder to the second: either way it is
    // read from its cache and folder, as its writer may still be at work.
    // When a compaction deleted what the first listing showed, the read
    // listed the folder again itself, then the VM folders (the writer is
    // done: no lock) and the index folder once more: nothing moved.
    let read_again = matches!(landing, Landing::BetweenThenCompacted);
    let locked = if read_again {
        vec![]
    } else {
        vec![VM.to_string()]
    };
    assert_eq!(listed.not_from_index.locked, locked, "{landing:?}");
    assert_eq!(
        keys(&listed),
        truth,
        "{change:?}, {landing:?}: the folder all along"
    );
    // The catch-up reads what the second listing added, and the snapshot
    // again only when a compaction made a new one.
    let snapshot_reads = lister
        .performed
        .iter()
        .filter(|r| matches!(r, Request::Read { path } if path.contains("/snapshot-")))
        .count();
    let compacted = matches!(landing, Landing::BetweenThenCompacted);
    assert_eq!(snapshot_reads, 1 + usize::from(compacted), "{landing:?}");
    // (The compaction deleted segments the first listing showed: their
    // reads fail, the read lists the folder once more, then the VM folders
    // and the index folder are listed again after it.)
    let index_listings = lister.performed.iter().filter(|r| is_index_listing(r));
    assert_eq!(
        index_listings.count(),
        2 + 2 * usize::from(compacted),
        "{landing:?}"
    );
    let folders_listings = lister.performed.iter().filter(|r| is_folders_listing(r));
    assert_eq!(
        folders_listings.count(),
        1 + usize::from(compacted),
        "{landing:?}"
    );
}

fn is_metadata_delete(request: &Request) -> bool {
    matches!(request, Request::Delete { path } if path.starts_with("xo-vm-backups/")
        && path.ends_with(".json") && !path.starts_with(brcache_core::INDEX_DIR))
}

/// The listing lists both folders, then a delete takes its lock (after the
/// VM folders' listing: no lock shows) and its segment lands before its
/// metadata is gone; a compaction folds it in and deletes the snapshot the
/// listing's first listing showed. The read finds that snapshot gone and
/// lists the index folder again itself: that listing holds the delete, the
/// metadata file is still there, and no listing of the index folder the
/// listing made moved the VM's entry from another. The file was there all
/// along: the listing must list it. `fold`: the compaction folds the
/// segment (else the segment lands after it, unfolded).
fn delete_before_the_read_lists_again(fold: bool) {
    let (mut sim, written) = repository();
    let truth = sim.share.metadata_keys();
    let mut lister = Driven::new(LISTER, ops::restore_view(settings(30), Filter::default()));
    assert!(lister.perform(&mut sim.share, is_index_listing));
    assert!(lister.perform(&mut sim.share, is_folders_listing));
    let op = ops::delete_backups(settings(20), vec![written[0].clone()]);
    let mut writer = Driven::new(WRITER, op.unwrap());
    while writer.perform(&mut sim.share, |r| !is_segment(r) && !is_metadata_delete(r)) {}
    assert!(writer.waits_on(is_segment), "the delete publishes");
    assert!(writer.waits_on(is_metadata_delete), "its metadata waits");
    if fold {
        assert!(writer.perform(&mut sim.share, is_segment));
    }
    sim.run_one(ops::compact_index(settings(40), false))
        .unwrap();
    if !fold {
        assert!(writer.perform(&mut sim.share, is_segment));
    }
    let Output::Listed(listed) = lister.finish(&mut sim.share).expect("a listing") else {
        panic!("not a listing")
    };
    assert_eq!(
        sim.share.metadata_keys(),
        truth,
        "the metadata is still there"
    );
    writer.finish(&mut sim.share).expect("the delete");
    assert!(listed.from_index, "fold {fold}: from the index");
    assert_eq!(keys(&listed), truth, "fold {fold}: the folder all along");
    assert_eq!(
        listed.not_from_index.locked,
        [VM],
        "fold {fold}: read like a locked VM"
    );
}

#[test]
fn a_delete_compacted_in_before_the_read_lists_again_is_not_listed_early() {
    delete_before_the_read_lists_again(true);
    delete_before_the_read_lists_again(false);
}

/// A listing with no writer beside it costs two round trips: the VM
/// folders and the index folder, then the index's files and the index
/// folder again.
#[test]
fn a_quiet_listing_costs_two_round_trips() {
    let (mut sim, _) = repository();
    let mut op = ops::restore_view(settings(30), Filter::default());
    let rounds = sim.rounds(&mut op);
    let segments = sim
        .share
        .files
        .keys()
        .filter(|p| p.starts_with(brcache_core::INDEX_DIR) && !p.contains("/snapshot-"))
        .count();
    let mut second = vec!["list"];
    second.extend(std::iter::repeat_n("read", 1 + segments));
    let mut rounds = rounds;
    rounds.iter_mut().for_each(|kinds| kinds.sort());
    second.sort();
    assert_eq!(rounds, vec![vec!["list", "listFolders"], second]);
}

#[test]
fn a_write_landing_between_the_listings_first_calls_is_listed() {
    race(Change::Write, Landing::Between);
}

#[test]
fn a_delete_landing_between_the_listings_first_calls_is_not_listed() {
    race(Change::Delete, Landing::Between);
}

#[test]
fn a_segment_compacted_away_between_the_listings_first_calls_is_read() {
    race(Change::Write, Landing::BetweenThenCompacted);
    race(Change::Delete, Landing::BetweenThenCompacted);
}

#[test]
fn a_lock_the_listing_sees_is_read_from_the_folder() {
    for change in [Change::Write, Change::Delete] {
        race(change, Landing::AfterBoth);
        race(change, Landing::BetweenFoldersFirst);
    }
}

/// The same start (a write or delete up to its segment, lock held), then
/// the writer's, the listing's and a compaction's remaining requests
/// interleaved at random, 300 schedules: every listing is the folder as it
/// was all along, and the exact interleaving above (the index folder
/// listed before the segment, the VM folders after the unlock) is among
/// the schedules.
#[test]
fn random_interleavings_of_a_change_a_compaction_and_a_listing_are_exact() {
    let mut raced = 0;
    for seed in 0..300u64 {
        let (mut sim, written) = repository();
        let mut rng = sim::Rng::new(seed);
        let delete = seed % 2 == 1;
        let op = if delete {
            ops::delete_backups(settings(20), vec![written[0].clone()])
        } else {
            ops::write_backup(settings(20), VM, metadata(VM, 9))
        };
        let mut writer = Driven::new(WRITER, op.unwrap());
        while writer.perform(&mut sim.share, |r| !is_segment(r)) {}
        let truth = sim.share.metadata_keys();
        let lister = Driven::new(LISTER, ops::restore_view(settings(30), Filter::default()));
        let mut running = vec![writer, lister];
        if seed % 3 == 0 {
            running.push(Driven::new(30_000, ops::compact_index(settings(40), false)));
        }
        loop {
            let waiting: Vec<(usize, usize)> = running
                .iter()
                .enumerate()
                .flat_map(|(o, d)| (0..d.pending.len()).map(move |r| (o, r)))
                .collect();
            if waiting.is_empty() {
                break;
            }
            let (o, r) = waiting[rng.below(waiting.len())];
            running[o].perform_at(&mut sim.share, r);
        }
        let lister = running.swap_remove(1);
        let writer = &running[0];
        let Some(Ok(Output::Listed(listed))) = &lister.output else {
            panic!("{seed}: not a listing")
        };
        assert!(writer.output.as_ref().is_some_and(Result::is_ok), "{seed}");
        assert!(listed.from_index, "{seed}: from the index");
        assert_eq!(keys(listed), truth, "{seed}: the folder all along");
        // The race: the listing's first index folder listing before the
        // segment landed, its VM folders' listing after the unlock.
        let is_unlock = |r: &Request| matches!(r, Request::Unlock { .. });
        let listed_index = lister.step_of(is_index_listing).unwrap();
        let listed_folders = lister.step_of(is_folders_listing).unwrap();
        let segment = writer.step_of(is_segment).unwrap();
        let unlocked = writer.step_of(is_unlock).unwrap();
        raced += usize::from(listed_index < segment && unlocked < listed_folders);
    }
    assert!(raced > 0, "no schedule was the race");
}
