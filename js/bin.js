#!/usr/bin/env node
// The `brcache` command. It loads the core first, so that a core that
// cannot load (BRCACHE_CORE forcing one that is missing) is one line on
// stderr and exit status 2, like every other error of the command line;
// then it runs js/node/cli.js.

try {
  await import('./node/core.js')
} catch (error) {
  process.stderr.write(`${error.message}\n`)
  process.exit(2)
}
await import('./node/cli.js')
