// A `brcache serve` server on a free loopback port, for tests.

import { createServer } from '../../js/node/serve.js'

/** Resolves to `{ server, port, url, close() }`. */
export async function listen(dirOrHandler, options) {
  const server = createServer(dirOrHandler, options)
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}/`,
    close: async () => {
      await new Promise((resolve) => {
        // Keep-alive connections would hold close() open.
        server.closeAllConnections()
        server.close(resolve)
      })
      // What the server does in the background (making, verifying the
      // index) ends before the repository is removed.
      await server.settle()
    },
  }
}
