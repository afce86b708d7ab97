//! Operations as the bindings carry them: plain strings, numbers and bytes,
//! so that the napi addon and the wasm module each wrap one type and make
//! no decision of their own.
//!
//! - `start(kind, settings, args, bytes)`: `settings` is
//!   `{ maxInflatedSize?, maxDepth?, immutable?, trusted?, index?: "off"|"auto"|"on", locks?, nonce?, stream? }`
//!   (`locks: false`: the share's locks do not exclude and its create-only
//!   writes may overwrite, as on S3)
//!   and `args` the operation's (see [`start`]); `stream`: the caller takes
//!   a listing's VMs from `emitted()` as they come.
//! - `poll()`: `{"done":true}`, `{"waiting":true}` or
//!   `{"requests":[{"id","kind","path", ...}]}`, with `"emitted": true` when
//!   `emitted()` holds the listing's `[vm, answer]` pairs made since (the
//!   final answer's `vms` then holds the rest); a write's bytes come from
//!   `payload(id)`.
//! - `respond(id, error_code, bytes, text)`: a success carries the bytes
//!   read, or as text the JSON array of names listed, the mtime stat gave
//!   or the time; a failure carries the handler's code and message (text).
//! - `logs()`: `[[level, message, fields], ...]` left since the last call.
//! - `output()`: `{"ok": answer}` or `{"error": {code, message, detail,
//!   offset?, io, step?}}`: a failed call (`io: true`, the handler's code) is
//!   no core error, so failures cross as values here, and only the caller's
//!   own mistakes (`start`'s arguments, an unknown request id) throw.

use super::check::CheckOptions;
use super::exec::{RequestId, Status};
use super::io::{Failure, IoError, Request, Response};
use super::{IndexMode, Op, Output, Settings, Want};
use crate::codec::DecodeLimits;
use crate::summary::Filter;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// An operation and the requests it has out, by id.
pub struct WireOp {
    op: Op,
    outstanding: BTreeMap<RequestId, Request>,
    settings: Settings,
    repairs: Vec<super::Loaded>,
    index_seed: Vec<crate::index::Segment>,
    compact_index: bool,
    seed_time: u64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SettingsArgs {
    max_inflated_size: Option<f64>,
    max_depth: Option<f64>,
    immutable: bool,
    trusted: bool,
    index: Option<String>,
    locks: Option<bool>,
    create_only: Option<bool>,
    nonce: Option<f64>,
    stream: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Args {
    vm: Option<String>,
    want: Option<String>,
    filter: Option<Value>,
    paths: Vec<String>,
    repair: bool,
    dry_run: bool,
    deep: bool,
    drop_unreadable: bool,
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::Core(crate::Error::new(
        crate::ErrorKind::InvalidArgument,
        message,
    ))
}

/// A failure as a caller's mistake (a core error): what `start` and
/// `respond` throw.
fn mistake(failure: Failure) -> crate::Error {
    match failure {
        Failure::Core(error) => error,
        Failure::Io(error) => crate::Error::new(crate::ErrorKind::InvalidArgument, error.message),
    }
}

/// A failure as `output()` gives it.
pub fn failure_json(failure: &Failure) -> Value {
    match failure {
        Failure::Core(error) => {
            let mut out = json!({ "code": error.code(), "message": error.to_string(), "detail": error.detail(), "io": false });
            if let Some(offset) = error.offset() {
                out["offset"] = json!(offset);
            }
            out
        }
        Failure::Io(error) => {
            let mut out = json!({ "code": error.code, "message": error.message, "detail": error.message, "io": true });
            if let Some(step) = error.step {
                out["step"] = json!(step);
            }
            out
        }
    }
}

fn parse<T: for<'de> Deserialize<'de> + Default>(text: &str, what: &str) -> Result<T, Failure> {
    if text.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_str(text).map_err(|e| invalid(format!("invalid {what}: {e}")))
}

pub fn settings(text: &str) -> Result<Settings, Failure> {
    let args: SettingsArgs = parse(text, "settings")?;
    let default = DecodeLimits::default();
    let limits = DecodeLimits {
        max_inflated_size: args
            .max_inflated_size
            .map_or(default.max_inflated_size, |v| v as usize),
        max_depth: args.max_depth.map_or(default.max_depth, |v| v as usize),
    };
    let index = match args.index.as_deref() {
        None | Some("auto") => IndexMode::Auto,
        Some("on") => IndexMode::On,
        Some("off") => IndexMode::Off,
        Some(other) => return Err(invalid(format!("invalid index mode {other:?}"))),
    };
    let settings = Settings::new(
        limits,
        args.immutable,
        index,
        args.nonce.unwrap_or(0.0) as u64,
    );
    let settings = if args.trusted {
        settings.trusting()
    } else {
        settings
    };
    let settings = match (args.locks, args.create_only) {
        (Some(false), Some(true)) => settings.without_locks().with_create_only(),
        (Some(false), _) => settings.without_locks(),
        _ => settings,
    };
    Ok(if args.stream {
        settings.streaming()
    } else {
        settings
    })
}

/// Starts an operation. Kinds and their `args`: `listVms`,
/// `listBackupFolders` (the VM folders and `<vm>.lock`), `listVm` `{vm, want:
/// "records"|"summaries", filter?}`, `listAll` `{want, filter?}`,
/// `restoreView` `{filter?}`, `vmTable`, `vmRestoreView` `{vm, filter?}`,
/// `writeBackup` `{vm}` with the metadata as
/// `bytes`, `deleteBackups` `{paths}`, `checkVm` `{vm, repair?, dryRun?,
/// deep?}`, `checkAll` (the same but `vm`), `checkIndex` `{repair?}`,
/// `buildIndex`, `readIndex`, `compactIndex` `{dropUnreadable?}`.
pub fn start(
    kind: &str,
    settings_text: &str,
    args_text: &str,
    bytes: Option<Vec<u8>>,
) -> Result<WireOp, crate::Error> {
    start_op(kind, settings_text, args_text, bytes).map_err(mistake)
}

fn start_op(
    kind: &str,
    settings_text: &str,
    args_text: &str,
    bytes: Option<Vec<u8>>,
) -> Result<WireOp, Failure> {
    let settings = settings(settings_text)?;
    let args: Args = parse(args_text, "arguments")?;
    let filter = || -> Result<Filter, Failure> {
        match &args.filter {
            None | Some(Value::Null) => Ok(Filter::default()),
            Some(value) => Ok(Filter::from_json(Some(&value.to_string()))?),
        }
    };
    let want = || -> Result<Want, Failure> {
        match args.want.as_deref() {
            Some("records") => Ok(Want::Records),
            Some("summaries") | None => Ok(Want::Summaries(filter()?)),
            Some(other) => Err(invalid(format!("invalid want {other:?}"))),
        }
    };
    let vm = || {
        args.vm
            .clone()
            .ok_or_else(|| invalid("a VM folder name is needed"))
    };
    let options = CheckOptions {
        repair: args.repair,
        dry_run: args.dry_run,
        deep: args.deep,
    };
    let s = settings.clone();
    let op = match kind {
        "listVms" => super::list_vms(),
        "listBackupFolders" => super::list_backup_folders(),
        "listVm" => super::list_vm(s, &vm()?, want()?)?,
        "listAll" => super::list_all(s, want()?),
        "restoreView" => super::restore_view(s, filter()?),
        "vmTable" => super::vm_table(s),
        "vmRestoreView" => super::vm_restore_view(s, &vm()?, filter()?)?,
        "writeBackup" => super::write_backup(
            s,
            &vm()?,
            bytes.ok_or_else(|| invalid("the metadata bytes are needed"))?,
        )?,
        "deleteBackups" => super::delete_backups(s, args.paths.clone())?,
        "checkVm" => super::check_vm(s, &vm()?, options)?,
        "checkAll" => super::check_all(s, options),
        "checkIndex" => super::check_index(s, args.repair && !args.dry_run),
        "buildIndex" => super::build_index(s),
        "readIndex" => super::read_index(s),
        "compactIndex" => super::compact_index(s, args.drop_unreadable),
        other => return Err(invalid(format!("no operation {other:?}"))),
    };
    Ok(WireOp::new(op, settings))
}

impl WireOp {
    fn new(op: Op, settings: Settings) -> WireOp {
        WireOp {
            op,
            outstanding: BTreeMap::new(),
            settings,
            repairs: Vec::new(),
            index_seed: Vec::new(),
            compact_index: false,
            seed_time: 0,
        }
    }

    /// What the operation wants next (see the module); `"emitted": true`
    /// when parts of the answer wait in [`WireOp::emitted`].
    pub fn poll(&mut self) -> String {
        let status = self.status();
        if !self.op.has_emitted() {
            return status;
        }
        format!(r#"{{"emitted":true,{}"#, &status[1..])
    }

    /// The listing's `[vm, answer]` pairs made since the last call, as a
    /// JSON array's text.
    pub fn emitted(&mut self) -> String {
        self.op.take_emitted()
    }

    fn status(&mut self) -> String {
        match self.op.poll() {
            Status::Done => r#"{"done":true}"#.to_string(),
            Status::Waiting => r#"{"waiting":true}"#.to_string(),
            Status::Requests(requests) => {
                let list: Vec<Value> = requests
                    .iter()
                    .map(|(id, request)| {
                        let mut out =
                            json!({ "id": id, "kind": request.kind(), "path": request.path() });
                        match request {
                            Request::Lock { wait, .. } => out["wait"] = json!(wait),
                            Request::CleanTemps { any_age_for, .. } => {
                                out["anyAgeFor"] = json!(any_age_for)
                            }
                            _ => {}
                        }
                        out
                    })
                    .collect();
                self.outstanding.extend(requests);
                json!({ "requests": list }).to_string()
            }
        }
    }

    pub fn payload(&self, id: RequestId) -> Option<&[u8]> {
        self.outstanding.get(&id).and_then(Request::payload)
    }

    pub fn respond(
        &mut self,
        id: RequestId,
        error_code: Option<String>,
        bytes: Option<Vec<u8>>,
        text: Option<String>,
    ) -> Result<(), crate::Error> {
        self.respond_with(id, error_code, bytes, text)
            .map_err(mistake)
    }

    fn respond_with(
        &mut self,
        id: RequestId,
        error_code: Option<String>,
        bytes: Option<Vec<u8>>,
        text: Option<String>,
    ) -> Result<(), Failure> {
        let request = self
            .outstanding
            .remove(&id)
            .ok_or_else(|| invalid(format!("request {id} is not outstanding")))?;
        let response = match error_code {
            Some(code) => Response::Failed(IoError::new(code, text.unwrap_or_default())),
            None => match request {
                Request::Read { .. } => Response::Bytes(bytes.unwrap_or_default()),
                Request::List { .. } | Request::ListFolders { .. } => {
                    Response::Names(parse(text.as_deref().unwrap_or("[]"), "listing")?)
                }
                Request::Stat { .. } => Response::Modified(number(text)?),
                Request::Now => Response::Time(number(text)?),
                _ => Response::Done,
            },
        };
        self.op.respond(id, response)
    }

    pub fn logs(&mut self) -> String {
        let logs: Vec<Value> = self
            .op
            .take_logs()
            .into_iter()
            .map(|log| {
                let fields: Value = serde_json::from_str(&log.fields).unwrap_or(Value::Null);
                json!([log.level.as_str(), log.message, fields])
            })
            .collect();
        Value::Array(logs).to_string()
    }

    /// `{"ok": answer}` or `{"error": failure}` (see the module); repairs a
    /// listing found stay here for [`WireOp::repairs`].
    pub fn output(&mut self) -> String {
        let output = self.op.take_output().unwrap_or_else(|| {
            Err(invalid(
                "the operation has not finished (or its output was taken)",
            ))
        });
        match output {
            Ok(output) => {
                let mut out = String::from(r#"{"ok":"#);
                self.answer(output, &mut out);
                out.push('}');
                out
            }
            Err(failure) => json!({ "error": failure_json(&failure) }).to_string(),
        }
    }

    /// Appends the answer's JSON to `out` (a listing's may be tens of MB:
    /// copied once).
    fn answer(&mut self, output: Output, out: &mut String) {
        let text = match output {
            Output::Listed(listed) => {
                let unreadable: Vec<Value> = listed
                    .unreadable
                    .iter()
                    .map(|(file, reason)| json!({ "file": file, "reason": reason }))
                    .collect();
                let mut tail = format!(
                    r#","unreadable":{},"repairs":{},"fromIndex":{}"#,
                    Value::Array(unreadable),
                    listed.repairs.len(),
                    listed.from_index
                );
                if listed.from_index {
                    tail.push_str(r#","notFromIndex":"#);
                    tail.push_str(&listed.not_from_index.to_json().to_string());
                }
                tail.push('}');
                out.push_str(r#"{"vms":"#);
                listed.write_json(out);
                out.push_str(&tail);
                self.repairs = listed.repairs;
                self.index_seed = listed.index_seed;
                self.compact_index = listed.compact_index;
                self.seed_time = listed.seed_time;
                return;
            }
            Output::Vms(vms) => json!(vms).to_string(),
            Output::Written(key) => json!({ "key": key }).to_string(),
            Output::Deleted => "{}".to_string(),
            Output::Report(report) => serde_json::to_string(&report).expect("serializes"),
            Output::Reports(reports) => serde_json::to_string(&reports).expect("serializes"),
            Output::Index(report) => report.to_json().to_string(),
            Output::Built(built) => {
                json!({ "vms": built.vms, "generation": built.generation }).to_string()
            }
            Output::Repaired(count) => json!({ "repaired": count }).to_string(),
            Output::IndexRead(None) | Output::Compacted(None) => "null".to_string(),
            Output::IndexRead(Some(read)) => json!({
                "plan": read.plan,
                "generation": read.loaded.snapshot.generation,
                "unfolded": read.loaded.unfolded(),
                "unreadable": read.loaded.unreadable.iter().map(|(name, reason)| json!({ "name": name, "reason": reason })).collect::<Vec<_>>(),
            })
            .to_string(),
            Output::Compacted(Some(done)) => {
                json!({ "generation": done.generation, "folded": done.folded }).to_string()
            }
        };
        out.push_str(&text);
    }

    /// What the listing leaves to do in the background (the repairs it
    /// found, the index it found missing), as one operation.
    pub fn repairs(&mut self) -> Option<WireOp> {
        let repairs = std::mem::take(&mut self.repairs);
        let seed = std::mem::take(&mut self.index_seed);
        let compact = std::mem::take(&mut self.compact_index);
        (!repairs.is_empty() || !seed.is_empty() || compact).then(|| {
            let op = if self.settings.journal {
                super::journal_follow_up(self.settings.clone(), seed, self.seed_time, compact)
            } else {
                super::follow_up(self.settings.clone(), seed, repairs, compact)
            };
            WireOp::new(op, self.settings.clone())
        })
    }
}

fn number(text: Option<String>) -> Result<f64, Failure> {
    text.as_deref()
        .unwrap_or("")
        .parse()
        .map_err(|_| invalid("a number was expected"))
}
