// A handler that behaves like a network share in front of another handler:
// bounded concurrency, a round trip per operation, finite bandwidth, and
// injectable faults. Benchmarks use it to count what a cache saves on a real
// NFS/SMB mount; reliability tests use it to fail chosen calls.

import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { cleanTempsWith } from './local.js'

const KINDS = ['list', 'listWithTypes', 'readFile', 'writeFile', 'rename', 'unlink', 'rmdir', 'mkdir', 'stat', 'lock', 'release']

// Timers fire on the loop's cached clock and may come back a fraction of a
// millisecond early: loop so that a simulated latency is never undercut.
async function sleepUntil(deadline) {
  for (let remaining = deadline - performance.now(); remaining > 0; remaining = deadline - performance.now()) {
    await sleep(Math.ceil(remaining))
  }
}

function byteLength(data) {
  if (typeof data === 'string') return Buffer.byteLength(data)
  return data?.byteLength ?? 0
}

function zeroCalls() {
  return Object.fromEntries([...KINDS, 'total'].map((kind) => [kind, 0]))
}

/** FIFO counting semaphore: a freed slot goes to the oldest waiter, never to a newcomer. */
class Slots {
  #free
  #waiters = []
  #head = 0

  constructor(count) {
    this.#free = count
  }

  acquire() {
    if (this.#free > 0 && this.#head === this.#waiters.length) {
      this.#free--
      return Promise.resolve()
    }
    return new Promise((resolve) => this.#waiters.push(resolve))
  }

  release() {
    if (this.#head < this.#waiters.length) {
      const next = this.#waiters[this.#head]
      this.#waiters[this.#head++] = undefined
      // Compact now and then so a long benchmark queue doesn't grow forever.
      if (this.#head > 1024 && this.#head * 2 > this.#waiters.length) {
        this.#waiters = this.#waiters.slice(this.#head)
        this.#head = 0
      }
      next()
    } else {
      this.#free++
    }
  }
}

export class SimulatedShare {
  #inner
  #rttMs
  #bandwidth
  #slots
  #faults
  #seq = 0
  #calls = zeroCalls()
  #bytes = { read: 0, written: 0 }

  /**
   * @param {object} inner the handler that really does the I/O
   * @param {{ rttMs?: number, maxInFlight?: number, bandwidthBytesPerSec?: number, faults?: object | Function }} [options]
   */
  constructor(inner, { rttMs = 10, maxInFlight = 16, bandwidthBytesPerSec = 125_000_000, faults } = {}) {
    if (inner === null || typeof inner !== 'object' || typeof inner.list !== 'function') {
      throw new TypeError('SimulatedShare needs an inner handler')
    }
    if (!(rttMs >= 0)) throw new RangeError(`rttMs must be >= 0, got ${rttMs}`)
    if (!Number.isInteger(maxInFlight) || maxInFlight < 1) throw new RangeError(`maxInFlight must be a positive integer, got ${maxInFlight}`)
    if (!(bandwidthBytesPerSec > 0)) throw new RangeError(`bandwidthBytesPerSec must be > 0, got ${bandwidthBytesPerSec}`)
    this.#inner = inner
    this.#rttMs = rttMs
    this.#bandwidth = bandwidthBytesPerSec
    this.#slots = new Slots(maxInFlight)
    this.setFaults(faults)
  }

  get supportsLocks() {
    return this.inner.supportsLocks !== false
  }

  get inner() {
    return this.#inner
  }

  /**
   * `faults`: a function `({ kind, path, seq, to? }) => undefined | { error } | { delayMs }`,
   * or an object mapping a kind (or '*') to such a result or function.
   */
  setFaults(faults) {
    if (faults !== undefined && faults !== null && typeof faults !== 'function' && typeof faults !== 'object') {
      throw new TypeError('faults must be a function or an object')
    }
    this.#faults = faults ?? undefined
  }

  stats() {
    return { calls: { ...this.#calls }, bytes: { ...this.#bytes } }
  }

  resetStats() {
    this.#calls = zeroCalls()
    this.#bytes = { read: 0, written: 0 }
  }

  #faultFor(context) {
    const faults = this.#faults
    if (faults === undefined) return undefined
    if (typeof faults === 'function') return faults(context) ?? undefined
    const entry = Object.hasOwn(faults, context.kind) ? faults[context.kind] : faults['*']
    return (typeof entry === 'function' ? entry(context) : entry) ?? undefined
  }

  #transferMs(bytes) {
    return (bytes * 1000) / this.#bandwidth
  }

  /**
   * One simulated operation. The clock starts when the slot is granted, so
   * queueing behind `maxInFlight` adds to the caller's latency but not to
   * the per-call cost; the inner call's own time overlaps the simulated one
   * instead of adding to it.
   */
  async #call(kind, relPath, run, { bytesOut = 0, measureResult, to } = {}) {
    const seq = ++this.#seq
    this.#calls[kind]++
    this.#calls.total++
    await this.#slots.acquire()
    try {
      const start = performance.now()
      const context = { kind, path: relPath, seq }
      if (to !== undefined) context.to = to
      // Decided when the call runs, not when it's queued: a test can flip
      // faults on while calls are waiting for a slot.
      const fault = this.#faultFor(context)
      this.#bytes.written += bytesOut
      const requestDone = start + (fault?.delayMs ?? 0) + this.#rttMs + this.#transferMs(bytesOut)
      await sleepUntil(requestDone)
      if (fault?.error) {
        throw Object.assign(new Error(`${fault.error}: simulated fault on ${kind} '${relPath}'`), { code: fault.error, path: relPath })
      }
      const result = await run()
      if (measureResult) {
        const bytesIn = measureResult(result)
        this.#bytes.read += bytesIn
        await sleepUntil(requestDone + this.#transferMs(bytesIn))
      }
      return result
    } finally {
      this.#slots.release()
    }
  }

  list(dir) {
    return this.#call('list', dir, () => this.#inner.list(dir))
  }

  listWithTypes(dir) {
    return this.#call('listWithTypes', dir, () => this.#inner.listWithTypes(dir))
  }

  readFile(file) {
    return this.#call('readFile', file, () => this.#inner.readFile(file), { measureResult: byteLength })
  }

  writeFile(file, data, options) {
    return this.#call('writeFile', file, () => this.#inner.writeFile(file, data, options), { bytesOut: byteLength(data) })
  }

  rename(from, to) {
    return this.#call('rename', from, () => this.#inner.rename(from, to), { to })
  }

  unlink(file) {
    return this.#call('unlink', file, () => this.#inner.unlink(file))
  }

  rmdir(dir) {
    return this.#call('rmdir', dir, () => this.#inner.rmdir(dir))
  }

  mkdir(dir) {
    return this.#call('mkdir', dir, () => this.#inner.mkdir(dir))
  }

  stat(file) {
    return this.#call('stat', file, () => this.#inner.stat(file))
  }

  /**
   * One round trip, then the inner lock's wait happens outside any slot:
   * waiters holding slots while the holder queues for one to release would
   * deadlock until the lock times out.
   */
  async lock(file, options) {
    await this.#call('lock', file, async () => {})
    const release = await this.#inner.lock(file, options)
    return () => this.#call('release', file, () => release())
  }

  /** The inner handler's answer, if it has the question (see S3Handler). */
  async conditionalWrites() {
    return (await this.#inner.conditionalWrites?.()) === true
  }

  /** The inner handler's (probed there, without round trips of its own). */
  async capabilities() {
    return this.#inner.capabilities?.()
  }

  /** Built from list/stat/unlink so each costs its own round trip, as on a real share. */
  cleanTemps(dir, options) {
    return cleanTempsWith(this, dir, options)
  }
}
