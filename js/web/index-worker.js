// The repository index read and decoded off the page's main thread: the
// snapshot of a thousand VMs takes the wasm build a few hundred
// milliseconds to inflate, check and turn into the restore view, which on
// the main thread is one long task the page cannot paint through. The
// worker reads the index with the very code the page and the server use
// (IndexStore over the HTTP share, through EncryptedShare with the key the
// page hands it; the key stays in the page's own threads), and answers the
// view and, once the page has listed the VM folders, which of them the
// index knows.

import { EncryptedShare, IndexStore, encryptionApi, indexApi, init } from '../browser.js'
import { httpShare } from './http-share.js'

const read = new Map()

async function readIndex({ base, key }) {
  await init()
  const log = { warn: (message, data) => console.warn(message, data), debug() {} }
  const index = await new IndexStore(new EncryptedShare(httpShare(base), encryptionApi, key), indexApi, log).read()
  // Segments without a snapshot are not the whole view.
  return index?.plan.snapshot ? index : undefined
}

self.addEventListener('message', async ({ data }) => {
  const { id } = data
  try {
    if (data.vms) {
      const index = read.get(id)
      read.delete(id)
      self.postMessage({ id, generations: Object.fromEntries(data.vms.map((vm) => [vm, index.vmGeneration(vm)])) })
      return
    }
    const index = await readIndex(data)
    if (index) read.set(id, index)
    self.postMessage({ id, index: index && { plan: index.plan, view: index.view() } })
  } catch (error) {
    self.postMessage({ id, error: { message: error.message, code: error.code, status: error.status } })
  }
})
