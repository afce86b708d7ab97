//! The shared repository-index scenarios (tests/vectors/index.json), run
//! against the core; tests/repo-index-vectors.test.mjs runs them through napi
//! and wasm. Each scenario's segments are fed twice: as plain JSON (the
//! first release's segments) and gzip-compressed.

use brcache_core::{DecodeLimits, Filter};
use brcache_core::{Loaded, ReadPlan, Snapshot, StoredSnapshot};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn scenarios() -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/index.json");
    let all: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    all["scenarios"].as_array().unwrap().clone()
}

/// A vector's file: a JSON value as its text, a string as its bytes.
fn text(value: &Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.as_bytes().to_vec(),
        other => serde_json::to_vec(other).unwrap(),
    }
}

fn gzipped(bytes: &[u8]) -> Vec<u8> {
    brcache_core::write_gzip_member(bytes, None, brcache_core::DEFAULT_LEVEL)
}

fn segments(value: &Value, compress: bool) -> Vec<(String, Vec<u8>)> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            let bytes = text(&pair[1]);
            let bytes = if compress { gzipped(&bytes) } else { bytes };
            (pair[0].as_str().unwrap().to_string(), bytes)
        })
        .collect()
}

/// `{ vm: [ids] }` of a view, each summary checked against the scenario's
/// inputs: the index hands back exactly what was published.
fn ids_of(view: &Value, scenario: &Value) -> Value {
    let inputs = scenario.to_string();
    let mut out = serde_json::Map::new();
    for (vm, summaries) in view.as_object().unwrap() {
        let ids = summaries
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                assert!(
                    inputs.contains(&s.to_string()),
                    "{}: summary not as published: {s}",
                    scenario["name"]
                );
                s["id"].clone()
            })
            .collect();
        out.insert(vm.clone(), Value::Array(ids));
    }
    Value::Object(out)
}

fn compaction_json(compaction: &brcache_core::Compaction) -> Value {
    json!({
        "name": compaction.name,
        "generation": compaction.snapshot.generation,
        "segmentsToDelete": compaction.segments_to_delete,
    })
}

fn view_of(snapshot: &Snapshot, filter: &Filter) -> Value {
    serde_json::to_value(snapshot.filtered_view(filter)).unwrap()
}

fn check_load(scenario: &Value, compress: bool) {
    let name = &scenario["name"];
    let load = &scenario["load"];
    let expect = &scenario["expect"];
    let snapshot = match (&load["snapshot"], &load["snapshotBytes"]) {
        (Value::Null, Value::Null) => None,
        (Value::Null, raw) => Some(text(raw)),
        (object, _) => Some(gzipped(&text(object))),
    };
    let loaded = Loaded::decode(
        snapshot.as_deref(),
        segments(&load["segments"], compress),
        &DecodeLimits::default(),
    );
    if let Some(code) = expect["loadError"].as_str() {
        assert_eq!(loaded.unwrap_err().code(), code, "{name}");
        return;
    }
    let loaded = loaded.unwrap();
    let filter =
        Filter::from_json(scenario.get("filter").map(|f| f.to_string()).as_deref()).unwrap();
    if let Some(view) = expect.get("view") {
        let got = ids_of(&view_of(loaded.current(), &filter), scenario);
        assert_eq!(&got, view, "{name}: view");
    }
    if let Some(generations) = expect["generations"].as_object() {
        for (vm, generation) in generations {
            assert_eq!(
                loaded
                    .current()
                    .generation_of(vm)
                    .map(Value::from)
                    .unwrap_or(Value::Null),
                *generation,
                "{name}: generation of {vm}"
            );
        }
    }
    if let Some(generation) = expect["generation"].as_u64() {
        assert_eq!(loaded.snapshot.generation, generation, "{name}");
    }
    if let Some(unfolded) = expect["unfolded"].as_u64() {
        assert_eq!(loaded.unfolded() as u64, unfolded, "{name}: unfolded");
    }
    if let Some(unreadable) = expect.get("unreadable") {
        let names: Vec<&str> = loaded.unreadable.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(json!(names), *unreadable, "{name}: unreadable");
        assert!(
            loaded
                .unreadable
                .iter()
                .all(|(_, reason)| !reason.is_empty())
        );
    }
    if let Some(compaction) = expect.get("compaction") {
        let listed = load["listedGeneration"]
            .as_u64()
            .unwrap_or(loaded.snapshot.generation);
        let got = loaded.compact(listed);
        assert_eq!(compaction_json(&got), *compaction, "{name}: compaction");
        // What it writes, with the segments it keeps (a VM in doubt's
        // deltas), reads back as the index it was made from.
        let kept: Vec<(String, Vec<u8>)> = segments(&load["segments"], compress)
            .into_iter()
            .filter(|(name, _)| !got.segments_to_delete.contains(name))
            .collect();
        let written =
            Loaded::decode(Some(&got.snapshot.encode()), kept, &DecodeLimits::default()).unwrap();
        assert_eq!(
            view_of(written.current(), &Filter::default()),
            view_of(loaded.current(), &Filter::default()),
            "{name}: compacted view"
        );
        assert_eq!(
            written.current().unsure,
            loaded.current().unsure,
            "{name}: compacted doubt"
        );
    }
    if let Some(in_doubt) = expect.get("inDoubt") {
        assert_eq!(
            json!(loaded.current().unsure),
            *in_doubt,
            "{name}: in doubt"
        );
    }
    if let Some(drift) = expect.get("drift") {
        let caches = brcache_core::parse_caches(&scenario["caches"].to_string()).unwrap();
        let got = serde_json::to_value(brcache_core::drift(loaded.current(), &caches)).unwrap();
        assert_eq!(got, *drift, "{name}: drift");
    }
}

/// A table scenario: the table and its parts as written (gzip), the
/// segments beside.
fn check_table(scenario: &Value, compress: bool) {
    let name = &scenario["name"];
    let table = &scenario["table"];
    let expect = &scenario["expect"];
    let limits = DecodeLimits::default();
    let loaded =
        StoredSnapshot::decode(&gzipped(&text(&table["table"])), &limits).and_then(|stored| {
            let StoredSnapshot::Table(table_read) = stored else {
                panic!("{name}: not a table")
            };
            let parts = table["parts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|pair| {
                    (
                        pair[0].as_str().unwrap().to_string(),
                        gzipped(&text(&pair[1])),
                    )
                })
                .collect();
            let (segments, _) =
                brcache_core::decode_segments(segments(&table["segments"], compress), &limits);
            Loaded::decode_table(table_read, parts, segments, Vec::new(), &limits)
        });
    if let Some(code) = expect["loadError"].as_str() {
        assert_eq!(loaded.unwrap_err().code(), code, "{name}");
        return;
    }
    let loaded = loaded.unwrap();
    assert_eq!(
        serde_json::to_value(loaded.rows()).unwrap(),
        expect["rows"],
        "{name}: rows"
    );
    let view = ids_of(&view_of(loaded.current(), &Filter::default()), scenario);
    assert_eq!(view, expect["view"], "{name}: view");
}

fn check_listing(scenario: &Value) {
    let names: Vec<&str> = scenario["listing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    let plan = serde_json::to_value(ReadPlan::from_listing(names)).unwrap();
    assert_eq!(plan, scenario["expect"]["plan"], "{}", scenario["name"]);
}

fn check_rebuild(scenario: &Value, compress: bool) {
    let name = &scenario["name"];
    let rebuild = &scenario["rebuild"];
    let expect = &scenario["expect"];
    let plan = ReadPlan::from_listing(
        rebuild["listing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap()),
    );
    let from_caches = rebuild["fromCaches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let bytes = text(s);
            if compress { gzipped(&bytes) } else { bytes }
        })
        .collect();
    let got = brcache_core::rebuild_from_bytes(
        &plan,
        from_caches,
        segments(&rebuild["segments"], compress),
        &DecodeLimits::default(),
    );
    if let Some(code) = expect["rebuildError"].as_str() {
        assert_eq!(got.unwrap_err().code(), code, "{name}");
        return;
    }
    let got = got.unwrap();
    assert_eq!(
        compaction_json(&got),
        expect["compaction"],
        "{name}: compaction"
    );
    let view = ids_of(&view_of(&got.snapshot, &Filter::default()), scenario);
    assert_eq!(view, expect["view"], "{name}: view");
}

#[test]
fn every_index_scenario_holds_for_plain_and_gzip_segments() {
    let scenarios = scenarios();
    assert!(scenarios.len() >= 10);
    let mut kinds = BTreeMap::new();
    for scenario in &scenarios {
        let kind = if scenario.get("load").is_some() {
            check_load(scenario, false);
            check_load(scenario, true);
            "load"
        } else if scenario.get("listing").is_some() {
            check_listing(scenario);
            "listing"
        } else if scenario.get("rebuild").is_some() {
            check_rebuild(scenario, false);
            check_rebuild(scenario, true);
            "rebuild"
        } else if scenario.get("table").is_some() {
            check_table(scenario, false);
            check_table(scenario, true);
            "table"
        } else {
            panic!("{}: unknown scenario kind", scenario["name"]);
        };
        *kinds.entry(kind).or_insert(0) += 1;
    }
    assert_eq!(
        kinds.len(),
        4,
        "every kind of scenario is exercised: {kinds:?}"
    );
}
