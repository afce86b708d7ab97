//! A repository operation (see `brcache_core::ops::wire`) as a JS class:
//! the JS driver performs its requests through a handler.

use brcache_core::ops::Failure;
use brcache_core::ops::wire::{self, WireOp};
use napi::bindgen_prelude::{Buffer, Either, Uint8Array};
use napi_derive::napi;

/// A failure of an operation: the core's verdict on bytes (`io: false`) or
/// a call that failed (`io: true`, `code` the handler's).
#[napi(object)]
pub struct OperationError {
    pub code: String,
    pub message: String,
    pub detail: String,
    pub offset: Option<f64>,
    pub io: bool,
    pub step: Option<String>,
}

impl From<Failure> for OperationError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Core(error) => OperationError {
                code: error.code().to_string(),
                message: error.to_string(),
                detail: error.detail().to_string(),
                offset: error.offset().map(|o| o as f64),
                io: false,
                step: None,
            },
            Failure::Io(error) => OperationError {
                step: error.step.map(str::to_string),
                code: error.code,
                detail: error.message.clone(),
                message: error.message,
                offset: None,
                io: true,
            },
        }
    }
}

#[napi]
pub struct NativeOperation {
    inner: WireOp,
}

#[napi]
pub fn start_operation(
    kind: String,
    settings: String,
    args: String,
    bytes: Option<Uint8Array>,
) -> Either<NativeOperation, OperationError> {
    match wire::start(&kind, &settings, &args, bytes.map(|b| b.to_vec())) {
        Ok(inner) => Either::A(NativeOperation { inner }),
        Err(failure) => Either::B(failure.into()),
    }
}

#[napi]
impl NativeOperation {
    #[napi]
    pub fn poll(&mut self) -> String {
        self.inner.poll()
    }

    #[napi]
    pub fn payload(&self, id: u32) -> Option<Buffer> {
        self.inner.payload(id).map(|bytes| bytes.to_vec().into())
    }

    #[napi]
    pub fn respond(
        &mut self,
        id: u32,
        error_code: Option<String>,
        bytes: Option<Uint8Array>,
        text: Option<String>,
    ) -> Option<OperationError> {
        self.inner
            .respond(id, error_code, bytes.map(|b| b.to_vec()), text)
            .err()
            .map(OperationError::from)
    }

    #[napi]
    pub fn logs(&mut self) -> String {
        self.inner.logs()
    }

    #[napi]
    pub fn output(&mut self) -> Either<String, OperationError> {
        match self.inner.output() {
            Ok(text) => Either::A(text),
            Err(failure) => Either::B(failure.into()),
        }
    }

    #[napi]
    pub fn repairs(&mut self) -> Option<NativeOperation> {
        self.inner.repairs().map(|inner| NativeOperation { inner })
    }
}
