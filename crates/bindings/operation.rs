//! A repository operation as a JS class (the core's `ops::wire`): the JS
//! driver (js/common/operations.js) performs its requests through a
//! handler and hands each result back.

use crate::wire::{self, Bytes, BytesOut, Json, Plain, Throws};
use brcache_core::ops::wire::{self as ops_wire, WireOp};

class! {
    /// An operation in progress: it asks, the caller performs and answers.
    pub struct NativeOperation { inner: WireOp }
    impl {
        /// `{"done":true}`, `{"waiting":true}` or `{"requests":[…]}` (JSON).
        #[export(js_name = "poll")]
        pub fn poll(&mut self) -> Json {
            wire::json_text(self.inner.poll())
        }

        /// The listing's `[vm, answer]` pairs made since the last call (a
        /// JSON array), when `poll()` said `"emitted": true`.
        #[export(js_name = "emitted")]
        pub fn emitted(&mut self) -> Json {
            wire::json_text(self.inner.emitted())
        }

        /// The bytes a create or replace request writes.
        #[export(js_name = "payload")]
        pub fn payload(&self, id: u32) -> Option<BytesOut> {
            self.inner.payload(id).map(|bytes| wire::bytes_out(bytes.to_vec()))
        }

        /// A request's result: a success (`errorCode` undefined) with the
        /// bytes read or the text (names listed as JSON, an mtime, the
        /// time), or the handler's error code with its message as `text`.
        #[export(js_name = "respond")]
        pub fn respond(
            &mut self,
            id: u32,
            error_code: Option<String>,
            bytes: Option<Bytes>,
            text: Option<String>,
        ) -> Throws<()> {
            Ok(self.inner.respond(id, error_code, bytes.map(|b| b.to_vec()), text)?)
        }

        /// `[[level, message, fields]]` left for the logger since the last call (JSON).
        #[export(js_name = "logs")]
        pub fn logs(&mut self) -> String {
            self.inner.logs()
        }

        /// `{"ok": answer}` or `{"error": failure}` (JSON), once done.
        #[export(js_name = "output")]
        pub fn output(&mut self) -> Json {
            wire::json_text(self.inner.output())
        }

        /// The background repairs a listing found, as an operation, if any.
        #[export(js_name = "repairs")]
        pub fn repairs(&mut self) -> Option<NativeOperation> {
            self.inner.repairs().map(|inner| NativeOperation { inner })
        }
    }
}

functions! {
    /// Starts an operation: its kind, the repository's settings and its
    /// arguments (JSON, see the core's `ops::wire::start`), and the bytes a
    /// write records.
    #[export(js_name = "startOperation")]
    pub fn start_operation(
        kind: String,
        settings: String,
        args: String,
        bytes: Option<Bytes>,
    ) -> Throws<NativeOperation> {
        let inner = ops_wire::start(&kind, &settings, &args, bytes.map(|b| b.to_vec()))?;
        Ok(NativeOperation { inner })
    }

    /// Where things live in a repository, as the core reads and writes it
    /// (`{ backupDir, cacheFile, indexDir }`): the JS side's own constants
    /// (js/common/layout.js, which the page and the sample generator use
    /// before any core is loaded) are held to these by a test.
    #[export(js_name = "repositoryLayout")]
    pub fn repository_layout() -> Plain<RepositoryLayout> {
        Plain(RepositoryLayout {
            backup_dir: brcache_core::BACKUP_DIR,
            cache_file: brcache_core::CACHE_FILE,
            index_dir: brcache_core::INDEX_DIR,
        })
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryLayout {
    backup_dir: &'static str,
    cache_file: &'static str,
    index_dir: &'static str,
}
