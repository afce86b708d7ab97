//! A repository operation (see `brcache_core::ops::wire`) as a JS class,
//! mirroring the napi addon's `NativeOperation`.

use brcache_core::ops::Failure;
use brcache_core::ops::wire::{self, WireOp};
use serde::Serialize;
use wasm_bindgen::prelude::*;

#[derive(Serialize)]
struct OperationError {
    code: String,
    message: String,
    detail: String,
    offset: Option<f64>,
    io: bool,
    step: Option<&'static str>,
}

fn throw(failure: Failure) -> JsValue {
    let info = match failure {
        Failure::Core(error) => OperationError {
            code: error.code().to_string(),
            message: error.to_string(),
            detail: error.detail().to_string(),
            offset: error.offset().map(|o| o as f64),
            io: false,
            step: None,
        },
        Failure::Io(error) => OperationError {
            step: error.step,
            code: error.code,
            detail: error.message.clone(),
            message: error.message,
            offset: None,
            io: true,
        },
    };
    info.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .unwrap_or(JsValue::NULL)
}

#[wasm_bindgen]
pub struct NativeOperation {
    inner: WireOp,
}

#[wasm_bindgen(js_name = startOperation)]
pub fn start_operation(
    kind: String,
    settings: String,
    args: String,
    bytes: Option<Vec<u8>>,
) -> Result<NativeOperation, JsValue> {
    wire::start(&kind, &settings, &args, bytes)
        .map(|inner| NativeOperation { inner })
        .map_err(throw)
}

#[wasm_bindgen]
impl NativeOperation {
    pub fn poll(&mut self) -> String {
        self.inner.poll()
    }

    pub fn payload(&self, id: u32) -> Option<Vec<u8>> {
        self.inner.payload(id).map(<[u8]>::to_vec)
    }

    pub fn respond(
        &mut self,
        id: u32,
        error_code: Option<String>,
        bytes: Option<Vec<u8>>,
        text: Option<String>,
    ) -> Result<(), JsValue> {
        self.inner
            .respond(id, error_code, bytes, text)
            .map_err(throw)
    }

    pub fn logs(&mut self) -> String {
        self.inner.logs()
    }

    pub fn output(&mut self) -> Result<String, JsValue> {
        self.inner.output().map_err(throw)
    }

    pub fn repairs(&mut self) -> Option<NativeOperation> {
        self.inner.repairs().map(|inner| NativeOperation { inner })
    }
}
