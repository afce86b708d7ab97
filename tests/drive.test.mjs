// The driver (js/common/operations.js) over both builds: a listing
// streams each VM's answer as the core makes it (so that parsing one
// overlaps the reads of the others, and no answer of tens of MB is built
// whole), and the streamed answer is the one a whole answer gives, on
// both builds alike. A result the operation did not ask for ends it.

import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { drive, makeOperationsApi } from '../js/common/operations.js'
import { LocalHandler } from '../js/node/handlers/index.js'
import { loadNativeAddon, loadWasmModule } from '../js/node/load-core.js'
import { generateRepository } from '../js/sample/generate.js'

const builds = { napi: loadNativeAddon(), wasm: loadWasmModule() }

/** The backend with each operation's emitted() calls counted. */
function counting(backend) {
  const counts = { emitted: 0 }
  return {
    counts,
    startOperation(...args) {
      const operation = backend.startOperation(...args)
      return new Proxy(operation, {
        get(target, name) {
          const value = target[name]
          if (typeof value !== 'function') return value
          return (...call) => {
            if (name in counts) counts[name]++
            return value.apply(target, call)
          }
        },
      })
    },
  }
}

describe('the driver', () => {
  let dir
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'brcache-drive-'))
    // Caches of tens of KiB each: a poll's results are bulk.
    await generateRepository(dir, { vms: 3, retention: 45, seed: 'drive' })
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  test('a listing streams its VMs, and the answer is the whole one, on both builds', async () => {
    const answers = {}
    for (const [name, build] of Object.entries(builds)) {
      const backend = counting(build)
      const operation = makeOperationsApi(backend).start('listAll', { index: false }, { want: 'records' })
      const streamed = await drive(operation, new LocalHandler(dir))
      assert.ok(backend.counts.emitted > 0, `${name}: VMs were emitted`)
      const whole = counting(build)
      const settings = JSON.stringify({ index: 'off', nonce: 1 })
      const unstreamed = await drive(whole.startOperation('listAll', settings, JSON.stringify({ want: 'records' })), new LocalHandler(dir))
      assert.equal(whole.counts.emitted, 0, `${name}: without stream, nothing is emitted`)
      assert.deepEqual(streamed, unstreamed, name)
      answers[name] = streamed
    }
    assert.equal(Object.keys(answers.napi.vms).length, 3)
    assert.deepEqual(answers.napi, answers.wasm)
  })

  test('a result for a request never asked is refused, on both builds', () => {
    for (const [name, build] of Object.entries(builds)) {
      const operation = makeOperationsApi(build).start('listVms', { index: false })
      assert.ok(JSON.parse(operation.poll()).requests?.length > 0, name)
      assert.throws(() => operation.respond(9999, undefined, undefined, '[]'), { name: 'BrcacheError', message: /request 9999 is not outstanding/ }, name)
    }
  })
})
