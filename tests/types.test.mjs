// The public API's TypeScript declarations compile against a consumer.

import { execFileSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { test } from 'node:test'

const require = createRequire(import.meta.url)

test('a TypeScript consumer of brcache, brcache/wasm and brcache/browser type-checks', () => {
  const tsc = require.resolve('typescript/bin/tsc')
  execFileSync(process.execPath, [tsc, '--noEmit', '-p', join(import.meta.dirname, 'types', 'tsconfig.json')], {
    stdio: 'pipe',
  })
})
