// The shared repository-index scenarios (tests/vectors/index.json) through
// the napi addon and the wasm build: the same outcomes as the Rust suite
// (crates/core/tests/index_vectors.rs). Each scenario's segments are fed
// as plain JSON (the first release's segments) and gzip-compressed.

import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import zlib from 'node:zlib'
import { indexApi as napi } from '../js/node/native.js'
import { indexApi as wasm } from '../js/wasm.js'

const { scenarios } = JSON.parse(readFileSync(join(import.meta.dirname, 'vectors', 'index.json'), 'utf8'))

/** A vector's file: a JSON value as its text, a string as its bytes. */
const text = (value) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value))
const form = (bytes, compress) => (compress ? zlib.gzipSync(bytes) : bytes)
const segments = (pairs, compress) => pairs.map(([name, value]) => [name, form(text(value), compress)])

/** `{ vm: [ids] }`, each summary checked against the scenario's inputs. */
function idsOf(view, scenario) {
  const inputs = new Map()
  JSON.stringify(scenario, (key, value) => {
    if (value && typeof value === 'object' && typeof value.id === 'string' && 'timestamp' in value) inputs.set(value.id, value)
    return value
  })
  return Object.fromEntries(
    Object.entries(view).map(([vm, summaries]) => [
      vm,
      summaries.map((s) => {
        assert.deepStrictEqual(s, inputs.get(s.id), `${scenario.name}: summary ${s.id} as published`)
        return s.id
      }),
    ]),
  )
}

const summaryOf = ({ name, generation, segmentsToDelete }) => ({ name, generation, segmentsToDelete })

function checkLoad(api, scenario, compress) {
  const { load, expect } = scenario
  const snapshot = load.snapshot ? zlib.gzipSync(text(load.snapshot)) : load.snapshotBytes ? text(load.snapshotBytes) : null
  const plan = load.listedGeneration === undefined ? undefined : { generation: load.listedGeneration }
  const open = () => api.load(snapshot, segments(load.segments, compress), plan)
  if (expect.loadError) {
    assert.throws(open, { name: 'BrcacheError', code: expect.loadError }, scenario.name)
    return
  }
  const index = open()
  if (expect.view) assert.deepStrictEqual(idsOf(index.view(scenario.filter), scenario), expect.view, `${scenario.name}: view`)
  for (const [vm, generation] of Object.entries(expect.generations ?? {})) {
    assert.equal(index.vmGeneration(vm), generation, `${scenario.name}: generation of ${vm}`)
  }
  if (expect.generation !== undefined) assert.equal(index.generation, expect.generation, scenario.name)
  if (expect.unfolded !== undefined) assert.equal(index.unfolded, expect.unfolded, `${scenario.name}: unfolded`)
  if (expect.unreadable) {
    assert.deepStrictEqual(index.unreadable().map((u) => u.name), expect.unreadable, `${scenario.name}: unreadable`)
    assert.ok(index.unreadable().every((u) => u.reason.length > 0))
  }
  if (expect.compaction) {
    const compaction = index.compaction()
    assert.deepStrictEqual(summaryOf(compaction), expect.compaction, `${scenario.name}: compaction`)
    // What it writes, with the segments it keeps (a VM in doubt's deltas),
    // reads back as the index it was made from.
    const kept = segments(load.segments, compress).filter(([name]) => !compaction.segmentsToDelete.includes(name))
    const written = api.load(compaction.bytes, kept)
    assert.deepStrictEqual(written.view(), index.view(), `${scenario.name}: compacted view`)
    assert.deepStrictEqual(written.inDoubt(), index.inDoubt(), `${scenario.name}: compacted doubt`)
  }
  if (expect.inDoubt) assert.deepStrictEqual(index.inDoubt(), expect.inDoubt, `${scenario.name}: in doubt`)
  if (expect.drift) assert.deepStrictEqual(index.drift(scenario.caches), expect.drift, `${scenario.name}: drift`)
}

function checkRebuild(api, scenario, compress) {
  const { rebuild, expect } = scenario
  const run = () =>
    api.rebuild(
      rebuild.listing,
      rebuild.fromCaches.map((s) => form(text(s), compress)),
      segments(rebuild.segments, compress),
    )
  if (expect.rebuildError) {
    assert.throws(run, { name: 'BrcacheError', code: expect.rebuildError }, scenario.name)
    return
  }
  const rebuilt = run()
  assert.deepStrictEqual(summaryOf(rebuilt), expect.compaction, `${scenario.name}: compaction`)
  assert.deepStrictEqual(idsOf(api.load(rebuilt.bytes, []).view(), scenario), expect.view, `${scenario.name}: view`)
}

/** A table scenario: the table and its parts (gzip, as written), the segments beside. */
function checkTable(api, scenario, compress) {
  const { table, expect } = scenario
  const parts = table.parts.map(([name, part]) => [name, zlib.gzipSync(text(part))])
  const open = () => api.loadTable(zlib.gzipSync(text(table.table)), parts, segments(table.segments, compress))
  if (expect.loadError) {
    assert.throws(open, { name: 'BrcacheError', code: expect.loadError }, scenario.name)
    return
  }
  const index = open()
  assert.deepStrictEqual(index.rows(), expect.rows, `${scenario.name}: rows`)
  assert.deepStrictEqual(idsOf(index.view(), scenario), expect.view, `${scenario.name}: view`)
}

for (const [surface, api] of Object.entries({ napi, wasm })) {
  describe(`${surface}: index scenarios`, () => {
    for (const scenario of scenarios) {
      test(scenario.name, () => {
        if (scenario.load) for (const compress of [false, true]) checkLoad(api, scenario, compress)
        else if (scenario.listing) assert.deepStrictEqual(api.readPlan(scenario.listing), scenario.expect.plan)
        else if (scenario.rebuild) for (const compress of [false, true]) checkRebuild(api, scenario, compress)
        else if (scenario.table) for (const compress of [false, true]) checkTable(api, scenario, compress)
        else assert.fail(`${scenario.name}: unknown scenario kind`)
      })
    }
  })
}
