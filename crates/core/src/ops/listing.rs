//! Listing restore points: one VM's, every VM's, and the restore view
//! (from the repository-wide index when there is one).

use super::exec::{Io, join, join_all};
use super::index_ops;
use super::io::{Failure, Level};
use super::load::{self, Answer, Loaded, Want};
use super::settings::{IndexMode, Settings};
use super::share;
use crate::coherency::Unreadable;
use crate::json::push_string;
use crate::key::VmId;
use crate::summary::Filter;
use serde_json::json;

/// A listing's answer: JSON text of `{ "<vm>": <answer> }`, VMs without
/// restore points omitted, plus what could not be read and the caches a
/// background repair should rewrite.
#[derive(Debug, Default)]
pub struct Listed {
    /// `{ vm: summaries }` for a restore view; for records,
    /// `{ vm: { "object": {key: record} } | { "pairs": [[key, record]] } }`.
    pub json: String,
    /// Metadata files of the VM folders read that are not in the answer:
    /// (file, reason), sorted.
    pub unreadable: Vec<(String, String)>,
    /// Caches found to need rewriting ([`super::check::repair_in_background`]).
    pub repairs: Vec<Loaded>,
    /// Whether the answer came from the repository index.
    pub from_index: bool,
}

impl Listed {
    fn push(&mut self, loaded: Loaded, settings: &Settings) -> String {
        for Unreadable { name, reason } in &loaded.unreadable {
            self.unreadable
                .push((share::vm_file(&loaded.vm, name.as_str()), reason.clone()));
        }
        let text = match &loaded.answer {
            Answer::RecordsObject(text) if text.trim() != "{}" => format!("{{\"object\":{text}}}"),
            Answer::RecordsPairs(text) if text != "[]" => format!("{{\"pairs\":{text}}}"),
            Answer::Summaries(summaries) if !summaries.is_empty() => {
                serde_json::to_string(summaries).expect("summaries serialize")
            }
            _ => String::new(),
        };
        if loaded.changed && !settings.immutable {
            self.repairs.push(loaded);
        }
        text
    }

    fn finish(mut self, parts: Vec<(String, String)>) -> Listed {
        let mut json = String::from("{");
        for (vm, text) in parts.iter().filter(|(_, t)| !t.is_empty()) {
            if json.len() > 1 {
                json.push(',');
            }
            push_string(&mut json, vm);
            json.push(':');
            json.push_str(text);
        }
        json.push('}');
        self.json = json;
        self.unreadable.sort();
        self
    }
}

/// One VM's records or summaries, its cache checked against its folder.
pub async fn list_vm(
    io: &Io,
    settings: &Settings,
    vm: &VmId,
    want: Want,
) -> Result<Listed, Failure> {
    let loaded = if settings.trusted {
        load::load_trusted(io, vm, &want, &settings.limits).await?
    } else {
        load::load(io, vm, &want, &settings.limits).await?
    };
    let mut listed = Listed::default();
    let text = listed.push(loaded, settings);
    Ok(listed.finish(vec![(vm.as_str().to_string(), text)]))
}

/// Every VM's records or summaries from their checked caches.
pub async fn list_all(io: &Io, settings: &Settings, want: Want) -> Result<Listed, Failure> {
    let vms = share::list_vm_folders(io).await?;
    from_caches(io, settings, &vms, &want).await
}

async fn from_caches(
    io: &Io,
    settings: &Settings,
    vms: &[VmId],
    want: &Want,
) -> Result<Listed, Failure> {
    let loads = join_all(
        vms.iter()
            .map(|vm| load::load(io, vm, want, &settings.limits)),
    )
    .await;
    let mut listed = Listed::default();
    let mut parts = Vec::with_capacity(vms.len());
    for (vm, loaded) in vms.iter().zip(loads) {
        let text = listed.push(loaded?, settings);
        parts.push((vm.as_str().to_string(), text));
    }
    Ok(listed.finish(parts))
}

/// The restore view: `{ vm: summaries }`, from the repository-wide index
/// when there is one, else from every VM's checked cache. With the index,
/// the VM folders are listed at the same time: a folder the index does not
/// know (Xen Orchestra backed it up behind the index's back) is read from
/// its cache, and one that is gone is not listed. Two round trips whatever
/// the VM count, when the index knows every folder.
pub async fn restore_view(io: &Io, settings: &Settings, filter: Filter) -> Result<Listed, Failure> {
    let want = Want::Summaries(filter.clone());
    if settings.index == IndexMode::Off {
        return list_all(io, settings, want).await;
    }
    let (vms, index) = join(share::list_vm_folders(io), index_for_listing(io, settings)).await;
    let (vms, index) = (vms?, index?);
    let Some(index) = index else {
        return from_caches(io, settings, &vms, &want).await;
    };
    let current = index.loaded.current();
    let unknown: Vec<VmId> = vms
        .iter()
        .filter(|vm| current.generation_of(vm.as_str()).is_none())
        .cloned()
        .collect();
    if !unknown.is_empty() {
        io.log(
            Level::Info,
            "brcache: VM folders the repository index does not know, read from their caches (brcache check catches the index up)",
            json!({ "vms": unknown.iter().map(VmId::as_str).collect::<Vec<_>>() }),
        );
    }
    let mut listed = from_caches(io, settings, &unknown, &want).await?;
    let cached: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&listed.json).unwrap_or_default();
    let view = current.filtered_view(&filter);
    let mut parts = Vec::with_capacity(vms.len());
    for vm in &vms {
        let text = match cached.get(vm.as_str()) {
            Some(value) => value.to_string(),
            None if unknown.contains(vm) => String::new(),
            None => view
                .get(vm.as_str())
                .map(|summaries| serde_json::to_string(summaries).expect("raw summaries serialize"))
                .unwrap_or_default(),
        };
        parts.push((vm.as_str().to_string(), text));
    }
    let repairs = std::mem::take(&mut listed.repairs);
    let unreadable = std::mem::take(&mut listed.unreadable);
    let mut out = Listed {
        repairs,
        unreadable,
        from_index: true,
        ..Listed::default()
    }
    .finish(parts);
    out.from_index = true;
    Ok(out)
}

/// The index, if there is one with a snapshot and it reads; else `None`
/// (and why, logged). Without a snapshot, the segments alone may not hold
/// every VM (the snapshot was lost, or the index never compacted).
async fn index_for_listing(
    io: &Io,
    settings: &Settings,
) -> Result<Option<index_ops::Read>, Failure> {
    match index_ops::read(io, settings, None).await {
        Ok(Some(read)) if read.plan.snapshot.is_some() => Ok(Some(read)),
        Ok(Some(_)) => {
            io.log(
                Level::Warn,
                "brcache: the repository index has no snapshot, listing every VM instead",
                json!({ "dir": crate::index::INDEX_DIR }),
            );
            Ok(None)
        }
        Ok(None) => Ok(None),
        Err(failure @ Failure::Io(_)) if failure.code() != "EAGAIN" => Err(failure),
        Err(failure) => {
            io.log(
                Level::Warn,
                "brcache: unusable repository index, listing every VM instead",
                json!({ "reason": failure.to_string() }),
            );
            Ok(None)
        }
    }
}
