// The one error type brcache throws for bad cache bytes, whichever surface
// (napi, wasm, browser) decoded them. `code` is stable (see README).

export class BrcacheError extends Error {
  /**
   * @param {{ code: string, message: string, detail?: string, offset?: number | null }} info
   * @param {string} [file] the file the bytes came from, for the message
   */
  constructor(info, file) {
    super(file ? `${file}: ${info.message}` : info.message)
    this.name = 'BrcacheError'
    this.code = info.code
    this.detail = info.detail ?? info.message
    this.offset = info.offset ?? undefined
    this.file = file
  }
}
