// The tree names no machine's paths: a comment or a test that cites a
// folder of the machine it was written on (its work or home folders)
// means nothing on a clone. Notes outside the repository are cited
// relative to it (../shared/notes/…).

import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'

const root = join(import.meta.dirname, '..')
const MACHINE_PATH = /(?:^|[\s'"`(=])\/(?:work|root|home|Users|tmp\/(?!brcache-|sample\b))[/\w]/m

test('no tracked file cites an absolute path of the machine it was written on', () => {
  const files = execFileSync('git', ['ls-files', '-z'], { cwd: root, encoding: 'utf8' }).split('\0').filter(Boolean)
  const offenders = []
  for (const file of files) {
    if (/\.(gz|wasm|node|png)$/.test(file) || file === 'package-lock.json') continue
    const text = readFileSync(join(root, file), 'utf8')
    const match = MACHINE_PATH.exec(text)
    if (match) offenders.push(`${file}:${text.slice(0, match.index).split('\n').length}: ${match[0].trim()}`)
  }
  assert.deepEqual(offenders, [])
})
