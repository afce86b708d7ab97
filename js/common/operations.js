// Performs a core operation's requests through a handler: the only I/O a
// repository operation does, and the only thing this file decides is how
// many calls run at once. What to read, what an answer means, when a cache
// is rewritten and the index published: the core's operations decide
// (crates/core/src/ops/).
//
// Free of Node-only imports: the page drives the same operations over its
// HTTP share.

import { BrcacheError } from './errors.js'

/** An operation's failure as JS throws it: a BrcacheError for the core's verdicts on bytes, else an Error with the handler's code. */
function toError(info) {
  if (!info.io) return new BrcacheError(info)
  return Object.assign(new Error(info.message), { code: info.code }, info.step ? { step: info.step } : {})
}

/** Calls a backend method; what it throws (a caller's mistake: bad arguments) as a BrcacheError. */
function attempt(fn) {
  try {
    return fn()
  } catch (error) {
    if (error?.name === 'BrcacheError' && !(error instanceof BrcacheError)) throw new BrcacheError(error)
    throw error
  }
}

/** The operations API over a backend (the napi addon or the wasm module). */
export function makeOperationsApi(backend) {
  return {
    /**
     * A new operation: `kind` and `args` as crates/core/src/ops/wire.rs
     * lists them, `settings` `{ limits, immutable, index, trusted, locks, createOnly }`
     * (`trusted`: the share serves caches already checked, as `brcache
     * serve` does to its page; `locks: false`: the handler's locks do not
     * exclude, as on S3; `createOnly` with it: the store refuses to create
     * a name that exists, as S3 stores that honour If-None-Match do).
     */
    start(kind, settings, args = {}, bytes = undefined) {
      const [high, low] = crypto.getRandomValues(new Uint32Array(2))
      const wire = {
        maxInflatedSize: settings.limits?.maxInflatedSize,
        maxDepth: settings.limits?.maxDepth,
        immutable: Boolean(settings.immutable),
        trusted: Boolean(settings.trusted),
        index: settings.index === true ? 'on' : settings.index === false ? 'off' : 'auto',
        locks: settings.locks !== false,
        createOnly: settings.createOnly === true,
        // 53 bits: exact in a JS number.
        nonce: (high & 0x1fffff) * 2 ** 32 + low,
        // drive() takes a listing's VMs as the core makes them: the parse
        // of one overlaps the reads of the others, and no answer is built
        // whole (a listing of full records is tens of MB).
        stream: true,
      }
      return attempt(() => backend.startOperation(kind, JSON.stringify(wire), JSON.stringify(args), bytes))
    },
  }
}

const silent = { debug() {}, info() {}, warn() {}, error() {} }

/**
 * Runs `operation` to its end through `handler`: at most `concurrency`
 * calls at once (waiting for a lock does not count), each result handed
 * back as it comes. Resolves to the operation's answer (parsed JSON).
 * `repairs` receives the follow-up operation a listing leaves (the
 * background repairs of the caches it found behind), if any.
 */
export async function drive(operation, handler, { concurrency = 10, logger = silent, lockStaleMs = 10_000, repairs } = {}) {
  const locks = new Map()
  // A listing's VMs, as the core hands them out (parsed here while other
  // reads are in flight).
  const emitted = []
  const queue = []
  let running = 0
  let done = false
  let wake
  const flushLogs = () => {
    for (const [level, message, fields] of JSON.parse(operation.logs())) logger[level]?.(message, fields ?? undefined)
  }

  const perform = async (request) => {
    const { kind, path } = request
    switch (kind) {
      case 'list':
        return { text: JSON.stringify(await handler.list(path)) }
      case 'listFolders': {
        // A share that lists folders only (the page's HTTP share) has no types.
        if (!handler.listWithTypes) return { text: JSON.stringify(await handler.list(path)) }
        const entries = await handler.listWithTypes(path)
        return { text: JSON.stringify(entries.filter((e) => e.isDirectory).map((e) => e.name)) }
      }
      case 'read':
        return { bytes: await handler.readFile(path) }
      case 'stat':
        return { text: String((await handler.stat(path)).mtimeMs) }
      case 'create':
        await handler.writeFile(path, operation.payload(request.id), { exclusive: true })
        return {}
      case 'replace':
        await handler.writeFile(path, operation.payload(request.id))
        return {}
      case 'delete':
        await handler.unlink(path)
        return {}
      case 'makeFolder':
        await handler.mkdir(path)
        return {}
      case 'removeFolder':
        await handler.rmdir(path)
        return {}
      case 'lock': {
        const release = await handler.lock(path, { stale: lockStaleMs, ...(request.wait ? {} : { retries: 0 }) })
        locks.set(path, release)
        return {}
      }
      case 'unlock': {
        const release = locks.get(path)
        locks.delete(path)
        await release?.()
        return {}
      }
      case 'cleanTemps':
        await handler.cleanTemps(path, { anyAgeFor: request.anyAgeFor })
        return {}
      case 'now':
        return { text: String(Date.now()) }
      default:
        throw new Error(`brcache: unknown request ${kind}`)
    }
  }

  const start = (request) => {
    const counted = request.kind !== 'lock' || !request.wait
    if (counted) running++
    perform(request).then(
      ({ bytes, text }) => attempt(() => operation.respond(request.id, undefined, bytes, text)),
      (error) => attempt(() => operation.respond(request.id, String(error?.code ?? 'EIO'), undefined, String(error?.message ?? error))),
    ).then(
      () => {
        if (counted) running--
        wake?.()
      },
      (error) => {
        done = error
        wake?.()
      },
    )
  }

  try {
    for (;;) {
      const status = JSON.parse(operation.poll())
      if (status.emitted) emitted.push(...JSON.parse(operation.emitted()))
      flushLogs()
      if (status.done) break
      if (status.requests) queue.push(...status.requests)
      while (queue.length > 0 && (running < concurrency || (queue[0].kind === 'lock' && queue[0].wait))) start(queue.shift())
      await new Promise((resolve) => {
        wake = resolve
      })
      wake = undefined
      if (done instanceof Error) throw done
    }
  } finally {
    // A failure left locks taken: release them, never leave them to go stale.
    for (const release of locks.values()) await release().catch(() => {})
  }
  const answer = JSON.parse(operation.output())
  flushLogs()
  if (answer.error) throw toError(answer.error)
  if (emitted.length > 0) {
    // In the core's order (VM folder names, sorted), whatever order they came in.
    answer.ok.vms = Object.fromEntries([...Object.entries(answer.ok.vms ?? {}), ...emitted].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
  }
  if (repairs) {
    const next = operation.repairs()
    if (next) repairs(next)
  }
  return answer.ok
}
