// Short versions of the reliability campaigns (scripts/campaigns/, README
// "Reliability"), run as the README runs them: as child processes, judged
// by their exit code and their JSON figures. The two run side by side: the
// crash campaign spends most of its time waiting for dead writers' locks to
// go stale, which leaves the CPU to the race campaign.

import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, test } from 'node:test'
import { Children } from '../scripts/campaigns/common.mjs'

const CAMPAIGNS = path.join(import.meta.dirname, '..', 'scripts', 'campaigns')

/** Runs a campaign script to its end; the child is killed if the test ends first. */
async function run(t, script, args) {
  const children = new Children()
  t.after(() => children.close())
  let figures
  const { exited } = children.spawn(path.join(CAMPAIGNS, script), [...args, '--json'], { onLine: (line) => (figures = line) })
  const { code, signal, stdout, stderr } = await exited
  return { code, signal, figures, output: `${stdout}\n${stderr}` }
}

describe('reliability campaigns, short', { concurrency: 2 }, () => {
  test('crash: 8 SIGKILLs of a writer leave no torn cache, no phantom or lost restore point', { timeout: 120_000 }, async (t) => {
    const { code, figures, output } = await run(t, 'crash.mjs', ['--kills', '8', '--seed', 'npm-test'])
    assert.ok(figures, output)
    assert.deepStrictEqual(figures.failed, [], JSON.stringify(figures.problems, null, 2))
    assert.equal(code, 0, output)
    assert.equal(figures.kills, 8)
    for (const name of [
      'torn',
      'phantomListed',
      'lostListed',
      'lostAfterRepair',
      'phantomAfterRepair',
      'differentAfterRepair',
      'incoherentAfterRepair',
      'tempsRemaining',
      'locksRemaining',
      'tornMetadataFiles',
      'writerFailures',
      'checkErrors',
    ]) {
      assert.equal(figures[name], 0, name)
    }
    // Every temp file a kill left was removed by a later cache write.
    assert.equal(figures.tempsCleaned, figures.tempsLeft)
    assert.ok(figures.backupsAtEnd > 0)
  })

  test('race: 4 writers and 2 readers, on a folder and through the simulated share, lose nothing', { timeout: 120_000 }, async (t) => {
    const { code, figures, output } = await run(t, 'race.mjs', ['--ops', '120', '--writers', '4', '--readers', '2', '--share', 'both', '--seed', 'npm-test'])
    assert.ok(figures, output)
    assert.deepStrictEqual(
      figures.rounds.map((round) => [round.share, round.failed, round.problems]),
      [
        ['local', [], []],
        ['simulated', [], []],
      ],
    )
    assert.equal(code, 0, output)
    for (const round of figures.rounds) {
      for (const name of ['writerErrors', 'readerErrors', 'readerBadRecords', 'readerPhantom', 'readerStale', 'readerMissed', 'lostUpdates', 'phantomEntries', 'incoherent', 'leftovers']) {
        assert.equal(round[name], 0, `${round.share}: ${name}`)
      }
      assert.equal(round.ops, 120)
      assert.equal(round.adds + round.deletes, 120)
      assert.ok(round.deletes > 0 && round.adds >= round.deletes)
      assert.ok(round.readerListings > 0)
      assert.equal(round.backupsAtEnd, round.adds - round.deletes)
    }
  })
})
