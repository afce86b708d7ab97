//! The shared semantics scenarios (tests/vectors/semantics.json), run
//! against the core; tests/semantics.test.mjs runs them through napi and
//! wasm.

use brcache_core::{CacheDocument, Filter, MetadataName, VmCache, VmId};
use brcache_core::{Files, Listing, Plan};
use serde_json::Value;
use std::path::PathBuf;

fn scenarios() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/semantics.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn files(value: &Value) -> Files {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(name, text)| {
                    (
                        MetadataName::new(name).unwrap(),
                        text.as_str().unwrap().as_bytes().to_vec(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn names(list: &[MetadataName]) -> Vec<String> {
    list.iter().map(|n| n.as_str().to_string()).collect()
}

fn unreadable_names(list: &[brcache_core::Unreadable]) -> Vec<String> {
    list.iter().map(|u| u.name.as_str().to_string()).collect()
}

#[test]
fn every_scenario_behaves_as_specified() {
    let all = scenarios();
    let vm = VmId::new(all["vm"].as_str().unwrap()).unwrap();
    for scenario in all["scenarios"].as_array().unwrap() {
        let name = scenario["name"].as_str().unwrap();
        let loaded = match scenario["cache"].as_str() {
            None => Ok(VmCache::new(vm.clone())),
            Some(text) => CacheDocument::from_json(text)
                .and_then(|doc| VmCache::from_document(vm.clone(), doc)),
        };
        if let Some(code) = scenario["expectLoadError"].as_str() {
            assert_eq!(loaded.unwrap_err().code(), code, "{name}");
            continue;
        }
        let mut cache = loaded.unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut plan = Plan::default();
        for (i, step) in scenario["steps"].as_array().unwrap().iter().enumerate() {
            let at = format!("{name} step {i}");
            let result: brcache_core::Result<()> = if let Some(path) = step["add"].as_str() {
                cache
                    .add(path, step["metadata"].as_str().unwrap().as_bytes())
                    .map(|_| ())
            } else if step["remove"].is_array() {
                let paths = strings(&step["remove"]);
                cache.remove(paths.iter().map(String::as_str)).map(|_| ())
            } else if step["reconcile"].is_array() {
                let entries = strings(&step["reconcile"]);
                plan = brcache_core::reconcile(
                    &cache,
                    &Listing::from_entries(entries.iter().map(String::as_str)),
                );
                assert_eq!(
                    names(&plan.stale),
                    strings(&step["expectPlan"]["stale"]),
                    "{at}"
                );
                assert_eq!(
                    names(&plan.missing),
                    strings(&step["expectPlan"]["missing"]),
                    "{at}"
                );
                Ok(())
            } else if step.get("apply").is_some() {
                let repaired = brcache_core::apply(&cache, &plan, &files(&step["apply"]));
                assert_eq!(
                    unreadable_names(&repaired.unreadable),
                    strings(&step["expectUnreadable"]),
                    "{at}"
                );
                cache = repaired.cache;
                Ok(())
            } else if step["rebuild"].is_array() {
                let entries = strings(&step["rebuild"]);
                let listing = Listing::from_entries(entries.iter().map(String::as_str));
                let repaired = brcache_core::rebuild(vm.clone(), &listing, &files(&step["files"]));
                assert_eq!(
                    unreadable_names(&repaired.unreadable),
                    strings(&step["expectUnreadable"]),
                    "{at}"
                );
                cache = repaired.cache;
                Ok(())
            } else if step.get("summaries").is_some() {
                let filter: Filter = serde_json::from_value(step["summaries"].clone())
                    .ok()
                    .unwrap_or_default();
                let summaries = brcache_core::summaries(&cache, &filter).unwrap();
                let as_json = serde_json::to_value(&summaries).unwrap();
                if step["expectIds"].is_array() {
                    let ids: Vec<_> = summaries.iter().map(|s| s.id.clone()).collect();
                    assert_eq!(ids, strings(&step["expectIds"]), "{at}");
                }
                if step["expectSummaries"].is_array() {
                    assert_eq!(as_json, step["expectSummaries"], "{at}");
                }
                Ok(())
            } else {
                panic!("{at}: unknown step {step}");
            };
            match step["expectError"].as_str() {
                Some(code) => assert_eq!(result.unwrap_err().code(), code, "{at}"),
                None => result.unwrap_or_else(|e| panic!("{at}: {e}")),
            }
        }
        if let Some(body) = scenario["expect"]["body"].as_str() {
            assert_eq!(cache.to_json(), body, "{name}: body");
        }
    }
}
