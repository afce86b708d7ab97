//! Mutation fuzzing of the decoder and of reconcile/merge, seeded with the
//! shared vectors (tests/vectors/*.gz).
//!
//! Every case is a vector mutated at the byte level (flips, overwrites,
//! insertions, deletions, truncations, splices of two vectors) or at the
//! JSON level (the inflated body mutated, then gzipped again, so that the
//! parsers, not just the gzip framing, see hostile text). For each case the
//! decoders must not panic, must agree with one another, and whatever
//! decodes must survive encode/decode, reconcile/apply and merge.
//!
//! `cargo test -p brcache-core --test fuzz` runs a short campaign (it is
//! part of `npm test`); `BRCACHE_FUZZ_CASES=2000000 cargo test --release
//! -p brcache-core --test fuzz` a long one (scripts/campaigns/fuzz.sh).

use brcache_core::{
    DecodeLimits, Filter, MetadataName, VmCache, VmId, summaries, summaries_of_bytes,
};
use brcache_core::{Files, Listing};
use std::path::PathBuf;

/// A small deterministic generator (xorshift64*): the campaign is
/// repeatable from its seed, with no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gz"))
        .collect();
    files.sort();
    let corpus: Vec<_> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(corpus.len() >= 40, "the corpus lost vectors");
    corpus
}

/// The JSON-level tokens worth splicing into a body.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\"",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"null",
    b"1e400",
    b"-0",
    b"\"__proto__\"",
    b"\"/xo-vm-backups/vm/../x.json\"",
    b"\"/xo-vm-backups/vm/a.json\"",
    b"\xff",
    b"\x00",
    b" ",
    // JSON's grammar where a hand-written scanner could stray (the
    // listing's check of full records is one, see src/json/check.rs).
    b"0",
    b"01",
    b".",
    b"e",
    b"+",
    b"-",
    b"tru",
    b"\\x",
    b"\\udc00",
    b"\\ud83d\\ude00",
    b"\x1f",
    b"\t",
    b"\x0c",
    b"\xef\xbb\xbf",
];

fn mutate_bytes(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                out.insert(i, rng.next() as u8);
            }
            3 if len > 0 => {
                out.remove(rng.below(len));
            }
            4 => out.truncate(rng.below(len + 1)),
            _ => {
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
        }
    }
    out
}

fn mutate_json(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    for _ in 0..1 + rng.below(3) {
        let i = rng.below(out.len() + 1);
        match rng.below(3) {
            0 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                out.splice(i..i, token.iter().copied());
            }
            1 if i < out.len() => {
                let end = (i + 1 + rng.below(16)).min(out.len());
                out.drain(i..end);
            }
            _ => out.truncate(i),
        }
    }
    out
}

fn check(rng: &mut Rng, vm: &VmId, bytes: &[u8], limits: &DecodeLimits) {
    let plain = brcache_core::decode(bytes, limits);
    let text = brcache_core::decode_text(bytes, limits);
    // The fast path a binding takes and the complete decode agree on
    // everything the fast path checks.
    if let Err(error) = &text {
        assert_eq!(plain.as_ref().unwrap_err().kind(), error.kind());
    }
    // The listing's one-pass check of a body it hands on accepts exactly
    // what the complete decode accepts, and finds the same keys.
    if let Ok(decoded) = brcache_core::decode_records_text(bytes, limits) {
        let fast = brcache_core::check_records(&decoded.text, limits.max_depth);
        // A number beyond f64 (which JSON.parse makes Infinity) is the one
        // body it refuses that a full decode, which keeps numbers as text,
        // accepts: such a cache takes the full path, no other harm.
        let beyond_f64 = matches!(&fast, Err(e) if e.detail().contains("number out of range"));
        assert!(
            fast.is_ok() == plain.is_ok() || (beyond_f64 && plain.is_ok()),
            "check_records {fast:?}, decode {:?}",
            plain.as_ref().err()
        );
        if let (Ok(keys), Ok(document)) = (&fast, &plain) {
            let mut keys: Vec<&str> = keys.iter().map(|k| &**k).collect();
            keys.dedup();
            let mut decoded: Vec<&str> = document.entries().keys().map(String::as_str).collect();
            keys.sort_unstable();
            keys.dedup();
            decoded.sort_unstable();
            assert_eq!(keys, decoded);
        }
    }
    if let Ok(document) = &plain {
        let again = brcache_core::decode(&brcache_core::encode(document), limits)
            .expect("what decodes re-encodes");
        // A later version's header is read by the prefix this version
        // knows, and written back as this version.
        let mut expected = document.clone();
        expected.set_header(document.header().map(|h| brcache_core::CacheHeader {
            version: brcache_core::CACHE_FORMAT_VERSION,
            ..*h
        }));
        assert_eq!(again, expected);
    }
    let cache = VmCache::decode(vm.clone(), bytes, limits);
    let quick = summaries_of_bytes(vm, bytes, limits, &Filter::default());
    match (&cache, &quick) {
        (Ok(cache), Ok(quick)) => assert_eq!(quick, &summaries(cache, &Filter::default()).unwrap()),
        (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind()),
        (a, b) => panic!(
            "VmCache::decode {:?} but summaries_of_bytes {:?}",
            a.is_ok(),
            b.is_ok()
        ),
    }
    let Ok(mut cache) = cache else { return };
    // Reconcile against a listing that keeps some names and adds others.
    let mut names: Vec<String> = cache.names().map(|n| n.as_str().to_string()).collect();
    names.retain(|_| rng.below(3) > 0);
    names.push(format!("2031010{}T000000Z.json", rng.below(10)));
    let listing = Listing::from_entries(names.iter().map(String::as_str));
    let plan = brcache_core::reconcile(&cache, &listing);
    let files: Files = plan
        .missing
        .iter()
        .map(|n: &MetadataName| (n.clone(), br#"{"mode":"full","timestamp":1}"#.to_vec()))
        .collect();
    let repaired = brcache_core::apply(&cache, &plan, &files).cache;
    assert!(brcache_core::reconcile(&repaired, &listing).is_coherent());
    let merged = cache.merge(&repaired);
    assert_eq!(merged, repaired.merge(&cache));
    let bytes = cache.commit();
    assert_eq!(VmCache::decode(vm.clone(), &bytes, limits).unwrap(), cache);
    check_splice(rng, vm, &bytes, &cache, limits);
}

/// A write spliced into a cache that decodes (here, one just written) reads
/// as the same write done whole; on the mutated inputs themselves, the
/// splice must never panic, and whatever it writes from a cache that
/// decodes must decode.
fn check_splice(rng: &mut Rng, vm: &VmId, bytes: &[u8], cache: &VmCache, limits: &DecodeLimits) {
    let names: Vec<MetadataName> = cache.names().cloned().collect();
    let removed: Vec<MetadataName> = names
        .iter()
        .filter(|_| rng.below(4) == 0)
        .cloned()
        .collect();
    let added = MetadataName::new(&format!("2099010{}T000000Z.json", rng.below(10))).unwrap();
    let metadata = br#"{"mode":"delta","timestamp":2}"#;
    let after: Vec<String> = names
        .iter()
        .filter(|n| !removed.contains(n))
        .map(|n| n.as_str().to_string())
        .chain([added.as_str().to_string()])
        .collect();
    let listing = Listing::from_entries(after.iter().map(String::as_str));
    let spliced = brcache_core::splice_cache(
        vm,
        bytes,
        &listing,
        &[(added.clone(), &metadata[..])],
        &removed,
    )
    .expect("metadata that caches");
    let Some(spliced) = spliced else { return };
    let mut whole = cache.clone();
    whole.add_name(added, metadata).unwrap();
    for name in removed {
        whole.remove_name(name);
    }
    let whole = whole.commit();
    assert_eq!(
        brcache_core::decode(&spliced, limits).expect("a splice of a cache that decodes decodes"),
        brcache_core::decode(&whole, limits).unwrap()
    );
}

/// What the splice makes of mutated bytes: never a panic, and never a
/// cache that does not decode from one that did.
fn check_splice_mutated(vm: &VmId, bytes: &[u8], limits: &DecodeLimits) {
    let decodes = VmCache::decode(vm.clone(), bytes, limits).is_ok();
    let listing = Listing::from_entries(["20990101T000000Z.json"]);
    let added = MetadataName::new("20990101T000000Z.json").unwrap();
    if let Ok(Some(out)) = brcache_core::splice_cache(vm, bytes, &listing, &[(added, b"{}")], &[]) {
        if decodes {
            brcache_core::decode(&out, limits).expect("a splice of a cache that decodes decodes");
        }
    }
}

/// How many cases each target runs: `BRCACHE_FUZZ_CASES`, else a short run.
fn cases() -> usize {
    std::env::var("BRCACHE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600)
}

/// A target's seed: `BRCACHE_FUZZ_SEED`, else its own fixed one.
fn seed(fixed: u64) -> u64 {
    std::env::var("BRCACHE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(fixed)
}

#[test]
fn mutated_vectors_never_break_the_decoders_or_reconcile() {
    let cases = cases();
    let seed = seed(0x0062_7263_6163_6865);
    let mut corpus = corpus();
    let vm = VmId::new("vm").unwrap();
    // A small inflate cap keeps every case cheap; the vectors are small.
    let limits = DecodeLimits {
        max_inflated_size: 4 << 20,
        ..DecodeLimits::default()
    };
    // The vectors as brcache writes them too (chunked, with a header), so
    // that mutations reach the splice's table and chunk checks.
    let written: Vec<Vec<u8>> = corpus
        .iter()
        .filter_map(|bytes| VmCache::decode(vm.clone(), bytes, &limits).ok())
        .map(|mut cache| cache.commit())
        .collect();
    corpus.extend(written);
    let mut rng = Rng(seed | 1);
    for _ in 0..cases {
        let input = &corpus[rng.below(corpus.len())];
        let other = &corpus[rng.below(corpus.len())];
        let bytes = if rng.below(2) == 0 {
            mutate_bytes(&mut rng, input, other)
        } else {
            let body = brcache_core::read_gzip_member(input, 8 << 20)
                .map(|m| m.data)
                .unwrap_or_default();
            let body = mutate_json(&mut rng, &body);
            brcache_core::write_gzip_member(&body, None, 1)
        };
        check_splice_mutated(&vm, &bytes, &limits);
        check(&mut rng, &vm, &bytes, &limits);
    }
}

/// The index files of tests/vectors/index.json, as the JSON texts writers
/// publish: every snapshot and every segment of its scenarios.
fn index_corpus() -> Vec<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/index.json");
    let all: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut corpus = Vec::new();
    for scenario in all["scenarios"].as_array().unwrap() {
        let load = &scenario["load"];
        if load["snapshot"].is_object() {
            corpus.push(serde_json::to_vec(&load["snapshot"]).unwrap());
        }
        for pair in load["segments"].as_array().into_iter().flatten() {
            if pair[1].is_object() {
                corpus.push(serde_json::to_vec(&pair[1]).unwrap());
            }
        }
    }
    assert!(corpus.len() >= 20, "the index corpus lost files");
    // Deltas, locked and not, and views beside them: what writers publish.
    let kind = |file: &Vec<u8>| {
        let value: serde_json::Value = serde_json::from_slice(file).unwrap();
        (value["kind"] == "delta", value["locked"] == true)
    };
    let deltas = corpus.iter().filter(|f| kind(f).0).count();
    let locked = corpus.iter().filter(|f| kind(f) == (true, true)).count();
    assert!(
        deltas >= 10 && locked >= 4 && deltas - locked >= 4,
        "the index corpus lost deltas"
    );
    corpus
}

/// Whatever index file decodes holds only summaries whose ids name
/// metadata files of their own VM folder, and survives a compaction.
fn check_index_file(bytes: &[u8], limits: &DecodeLimits) -> bool {
    use brcache_core::{Loaded, Segment, SegmentBody, Snapshot, segment_name};
    let inside = |vm: &str, summaries: &[brcache_core::RawSummary]| {
        let vm = VmId::new(vm).expect("a decoded entry's VM is a folder name");
        #[derive(serde::Deserialize)]
        struct Id {
            id: String,
        }
        for summary in summaries {
            let Id { id } = serde_json::from_str(summary.get()).expect("a summary has an id");
            vm.parse_key(&id)
                .expect("a decoded summary's id is in its VM folder");
        }
    };
    let mut decoded = false;
    if let Ok(snapshot) = Snapshot::decode(bytes, limits) {
        for (vm, entry) in &snapshot.vms {
            inside(vm, &entry.summaries);
        }
        assert_eq!(
            Snapshot::decode(&snapshot.encode(), limits).unwrap(),
            snapshot
        );
        decoded = true;
    }
    if let Ok(segment) = Segment::decode(bytes, limits) {
        decoded = true;
        match &segment.body {
            SegmentBody::View(entry) => inside(&segment.vm, &entry.summaries),
            SegmentBody::Delta(delta) => inside(&segment.vm, &delta.put),
        }
        assert_eq!(Segment::decode(&segment.encode(), limits).unwrap(), segment);
        // Alone, and (a delta) folded over a view of its VM published
        // before it, so that it is applied rather than left partial.
        let alone = vec![(segment_name(1, 1), segment.encode())];
        let mut cases = vec![alone.clone()];
        if matches!(segment.body, SegmentBody::Delta(_)) {
            let base = Segment::new(&segment.vm, brcache_core::VmEntry::default());
            cases.push([alone, vec![(segment_name(0, 2), base.encode())]].concat());
        }
        for segments in cases {
            let loaded = Loaded::decode(None, segments, limits).unwrap();
            let compacted = loaded.compact(0).snapshot;
            let again = Snapshot::decode(&compacted.encode(), limits).unwrap();
            // A compaction keeps what the index cannot trust as segments.
            let mut sure = loaded.current().view();
            sure.retain(|vm, _| !loaded.current().is_unsure(vm));
            assert_eq!(again.view(), sure);
        }
    }
    decoded
}

/// Hostile values for an index file's strings and numbers: what a writer
/// of the share could put there while keeping the JSON valid.
const INDEX_VALUES: &[&str] = &[
    r#""/etc/passwd""#,
    r#""/xo-vm-backups/3e1b9a52-0000-4000-8000-00000000000a/../x.json""#,
    r#""/xo-vm-backups/3e1b9a52-0000-4000-8000-00000000000a/20240101T000000Z.json""#,
    r#""/xo-vm-backups/3e1b9a52-0000-4000-8000-00000000000b/20240101T000000Z.json""#,
    r#""xo-vm-backups/3e1b9a52-0000-4000-8000-00000000000b/20240102T000000Z.json""#,
    r#""3e1b9a52-0000-4000-8000-00000000000b""#,
    r#""..""#,
    r#""__proto__""#,
    r#""""#,
    "null",
    "[]",
    "{}",
    "-1",
    "18446744073709551616",
    "1e400",
    "2",
    "true",
];

/// Replaces a few of a JSON text's values (found by walking its parse)
/// with hostile ones, keeping it valid JSON most of the time.
fn mutate_values(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    fn walk(rng: &mut Rng, value: &mut serde_json::Value, depth: usize) {
        use serde_json::Value;
        let replace = rng.below(6 + depth) == 0;
        if replace {
            let text = INDEX_VALUES[rng.below(INDEX_VALUES.len())];
            if let Ok(new) = serde_json::from_str(text) {
                *value = new;
                return;
            }
        }
        match value {
            Value::Array(items) => items.iter_mut().for_each(|v| walk(rng, v, depth + 1)),
            Value::Object(map) => map.values_mut().for_each(|v| walk(rng, v, depth + 1)),
            _ => {}
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(input).unwrap();
    walk(rng, &mut value, 0);
    let mut text = serde_json::to_vec(&value).unwrap();
    // Numbers serde_json cannot hold as values go in as text.
    if rng.below(4) == 0 {
        let text_str = String::from_utf8(text).unwrap();
        text = text_str
            .replacen(":2,", ":1e400,", 1)
            .replacen(":false", ":18446744073709551616", 1)
            .into_bytes();
    }
    text
}

#[test]
fn mutated_index_files_never_break_the_index_decoders() {
    let cases = cases();
    let corpus = index_corpus();
    let limits = DecodeLimits {
        max_inflated_size: 4 << 20,
        ..DecodeLimits::default()
    };
    let mut rng = Rng(seed(0x0069_6e64_6578) | 1);
    let mut decoded = 0;
    for _ in 0..cases {
        let input = &corpus[rng.below(corpus.len())];
        let other = &corpus[rng.below(corpus.len())];
        let text = match rng.below(4) {
            0 => mutate_json(&mut rng, input),
            1 => mutate_bytes(&mut rng, input, other),
            _ => mutate_values(&mut rng, input),
        };
        // As a plain segment, and gzipped as a snapshot or a segment is.
        decoded += usize::from(check_index_file(&text, &limits));
        decoded += usize::from(check_index_file(
            &brcache_core::write_gzip_member(&text, None, 1),
            &limits,
        ));
    }
    // Mutations that still decode are the ones that test the checks.
    assert!(
        decoded * 20 >= cases,
        "only {decoded} of {cases} mutated files decoded"
    );
}
