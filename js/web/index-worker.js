// The restore view read off the page's main thread: with an index, the
// restoreView operation inflates, checks and folds an index of a
// thousand VMs in a few hundred milliseconds of the wasm build, which on
// the main thread is one long task the page cannot paint through. The
// worker runs the same code the page would (js/web/reader.js, over the
// HTTP share through EncryptedShare with the key the page hands it; the
// key stays in the page's own threads) and posts back its answer.

import { EncryptedShare, encryptionApi, init } from '../browser.js'
import { httpShare } from './http-share.js'
import { readView } from './reader.js'

self.addEventListener('message', async ({ data: { id, base, key, immutable, locks } }) => {
  try {
    await init()
    const http = httpShare(base)
    self.postMessage({ id, result: await readView(new EncryptedShare(http, encryptionApi, key), http, { immutable, locks }) })
  } catch (error) {
    self.postMessage({ id, error: { message: error.message, code: error.code, status: error.status } })
  }
})
