// brcache/wasm: the same functions as the napi entry, on the WebAssembly build.
export * from './core.js'
