// The shared semantics scenarios (tests/vectors/semantics.json) through
// the napi addon and the wasm build: the same outcomes as the Rust suite.

import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import zlib from 'node:zlib'
import * as napi from 'brcache'
import * as wasm from 'brcache/wasm'

const { vm, scenarios } = JSON.parse(readFileSync(join(import.meta.dirname, 'vectors', 'semantics.json'), 'utf8'))
const text = (s) => Buffer.from(s)
const files = (object = {}) => new Map(Object.entries(object).map(([name, content]) => [name, text(content)]))

function run(brcache, scenario) {
  const load = () =>
    scenario.cache === null ? brcache.VmCache.empty(vm) : brcache.VmCache.decode(vm, zlib.gzipSync(scenario.cache))
  if (scenario.expectLoadError) {
    assert.throws(load, { name: 'BrcacheError', code: scenario.expectLoadError })
    return
  }
  let cache = load()
  let plan
  scenario.steps.forEach((step, i) => {
    const at = `${scenario.name} step ${i}`
    const act = () => {
      if ('add' in step) cache.add(step.add, text(step.metadata))
      else if ('remove' in step) cache.remove(step.remove)
      else if ('reconcile' in step) {
        plan = cache.reconcile(step.reconcile)
        assert.deepStrictEqual(plan.stale, step.expectPlan.stale, at)
        assert.deepStrictEqual(plan.missing, step.expectPlan.missing, at)
        assert.equal(plan.coherent, plan.stale.length === 0 && plan.missing.length === 0)
      } else if ('apply' in step) {
        const unreadable = cache.apply(plan, files(step.apply))
        assert.deepStrictEqual(unreadable.map((u) => u.name), step.expectUnreadable, at)
      } else if ('rebuild' in step) {
        const rebuilt = brcache.VmCache.rebuild(vm, step.rebuild, files(step.files))
        assert.deepStrictEqual(rebuilt.unreadable.map((u) => u.name), step.expectUnreadable, at)
        for (const { reason } of rebuilt.unreadable) assert.ok(reason.length > 0)
        cache = rebuilt.cache
      } else if ('summaries' in step) {
        const summaries = cache.summaries(step.summaries ?? undefined)
        if (step.expectIds) assert.deepStrictEqual(summaries.map((s) => s.id), step.expectIds, at)
        if (step.expectSummaries) assert.deepStrictEqual(summaries, step.expectSummaries, at)
      } else assert.fail(`${at}: unknown step`)
    }
    if (step.expectError) assert.throws(act, { name: 'BrcacheError', code: step.expectError }, at)
    else act()
  })
  if (scenario.expect?.body) {
    assert.equal(cache.body(), scenario.expect.body, `${scenario.name}: body`)
    // What XO reads back from the written bytes is that same body.
    assert.equal(zlib.gunzipSync(cache.commit()).toString(), scenario.expect.body)
  }
}

for (const [surface, brcache] of Object.entries({ napi, wasm })) {
  describe(`${surface}: semantics scenarios`, () => {
    for (const scenario of scenarios) test(scenario.name, () => run(brcache, scenario))
  })
}

describe('merge and replay agree across surfaces', () => {
  test('the same random history gives the same bytes through napi and wasm', () => {
    const outcome = (brcache) => {
      let seed = 7
      const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
      const name = () => `/xo-vm-backups/${vm}/2024010${1 + Math.floor(random() * 9)}T000000Z.json`
      const base = brcache.VmCache.empty(vm)
      for (let i = 0; i < 5; i++) base.add(name(), { timestamp: i, mode: 'full' })
      base.commit()
      const [a, b] = [base.copy(), base.copy()]
      for (let i = 0; i < 20; i++) {
        const writer = random() < 0.5 ? a : b
        if (random() < 0.6) writer.add(name(), { timestamp: 100 + i, mode: 'delta', size: i })
        else writer.remove([name()])
      }
      const merged = a.merge(b)
      assert.equal(merged.body(), b.merge(a).body(), 'merge is commutative')
      assert.ok(merged.generation > Math.max(a.generation, b.generation))
      b.commit()
      return { merged: merged.body(), replayed: a.replay(b).body(), generation: merged.generation }
    }
    assert.deepStrictEqual(outcome(napi), outcome(wasm))
  })
})
