#!/usr/bin/env node
// `brcache serve` under load, on loopback: 200 clients polling the restore
// view at once, as 200 open pages would, against the same server with one
// client (the baseline, in the same run). Two servers on the article's
// repository (22 VMs x 45): with the repository index (each page reads the
// index once, then polls the VM and index listings every second with
// their ETags), and with --no-index (each page reads every VM's cache,
// checked by the server first, then asks for them again every 3 s).
// Bounded in clients and time; the server runs in a child process whose
// memory (VmRSS) is sampled.
//
//   node bench/serve-load.bench.mjs [--json] [--clients N] [--seconds S]

import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateRepository } from '../js/sample/generate.js'
import { openRepository } from '../js/node/repository.js'

const args = process.argv.slice(2)
const option = (name, fallback) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : fallback)
const CLIENTS = option('--clients', 200)
const SECONDS = option('--seconds', 10)
const cli = join(import.meta.dirname, '..', 'js', 'node', 'cli.js')

function rssOf(pid) {
  try {
    const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))
    return Number(line.split(/\s+/)[1]) * 1024
  } catch {
    return 0
  }
}

/** `brcache serve` in a child: `{ url, pid, stop() }`. */
async function serve(dir, extra) {
  const child = spawn(process.execPath, [cli, 'serve', dir, '--port', '0', ...extra], { stdio: ['ignore', 'pipe', 'inherit'] })
  const url = await new Promise((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (chunk) => {
      out += chunk
      const match = /http:\/\/127\.0\.0\.1:\d+\//.exec(out)
      if (match) resolve(match[0])
    })
    child.on('exit', (code) => reject(new Error(`brcache serve exited with ${code}`)))
  })
  return { url, pid: child.pid, stop: () => child.kill() }
}

/** One page: its first load, then polls until `until`; every answer timed and counted. */
async function page(url, mode, until, record) {
  const etags = new Map()
  async function get(path, { revalidate = false } = {}) {
    const headers = revalidate && etags.has(path) ? { 'If-None-Match': etags.get(path) } : {}
    const start = performance.now()
    let status
    let body
    try {
      const response = await fetch(new URL(path, url), { headers })
      status = response.status
      body = status === 200 ? Buffer.from(await response.arrayBuffer()) : undefined
      if (response.headers.get('etag')) etags.set(path, response.headers.get('etag'))
    } catch (error) {
      status = `error ${error.cause?.code ?? error.message}`
    }
    record(status, performance.now() - start)
    return body
  }
  const vms = JSON.parse(await get('api/r/0/vms'))
  if (mode === 'index') {
    const names = JSON.parse(await get('api/r/0/index'))
    await Promise.all(names.map((name) => get(`api/r/0/index/${name}`)))
  } else {
    for (let i = 0; i < vms.length; i += 6) await Promise.all(vms.slice(i, i + 6).map((vm) => get(`api/r/0/vms/${vm}/cache`)))
  }
  const every = mode === 'index' ? 1000 : 3000
  while (performance.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, every * (0.5 + Math.random())))
    if (performance.now() >= until) break
    if (mode === 'index') await Promise.all([get('api/r/0/vms', { revalidate: true }), get('api/r/0/index', { revalidate: true })])
    else for (let i = 0; i < vms.length; i += 6) await Promise.all(vms.slice(i, i + 6).map((vm) => get(`api/r/0/vms/${vm}/cache`, { revalidate: true })))
  }
}

async function run(server, mode, clients) {
  const latencies = []
  const statuses = {}
  const record = (status, ms) => {
    statuses[status] = (statuses[status] ?? 0) + 1
    latencies.push(ms)
  }
  const rssBefore = rssOf(server.pid)
  let rssPeak = rssBefore
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, rssOf(server.pid))), 100)
  const start = performance.now()
  await Promise.all(Array.from({ length: clients }, () => page(server.url, mode, start + SECONDS * 1000, record)))
  clearInterval(sampler)
  latencies.sort((a, b) => a - b)
  const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]
  const errors = Object.entries(statuses)
    .filter(([status]) => status !== '200' && status !== '304')
    .reduce((n, [, count]) => n + count, 0)
  return {
    clients,
    requests: latencies.length,
    perSecond: latencies.length / ((performance.now() - start) / 1000),
    statuses,
    errors,
    p50: at(0.5),
    p99: at(0.99),
    max: latencies.at(-1),
    rssBefore,
    rssPeak,
  }
}

const dir = mkdtempSync(join(tmpdir(), 'brcache-serve-load-'))
const reports = []
try {
  await generateRepository(dir, { vms: 22, retention: 45, seed: 'article' })
  await openRepository(dir).buildIndex()
  for (const [mode, extra] of [
    ['index', []],
    ['caches', ['--no-index']],
  ]) {
    const server = await serve(dir, extra)
    try {
      const one = await run(server, mode, 1)
      const many = await run(server, mode, CLIENTS)
      reports.push({ mode, one, many })
    } finally {
      server.stop()
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}

if (args.includes('--json')) {
  console.log(JSON.stringify({ seconds: SECONDS, reports }, null, 2))
} else {
  const mib = (bytes) => `${(bytes / 1048576).toFixed(0)} MiB`
  const ms = (value) => `${value.toFixed(1)} ms`
  console.log(`brcache serve on loopback, 22 VMs x 45, ${SECONDS} s of polling per run; the baseline is one client, same server, same run\n`)
  console.log('| path | clients | requests (per s) | 200 / 304 / errors | p50 | p99 | p99 vs one client | max | server RSS (start → peak) |')
  console.log('|---|---|---|---|---|---|---|---|---|')
  for (const { mode, one, many } of reports) {
    for (const r of [one, many]) {
      console.log(
        `| ${mode} | ${r.clients} | ${r.requests} (${r.perSecond.toFixed(0)}) | ${r.statuses[200] ?? 0} / ${r.statuses[304] ?? 0} / ${r.errors} | ${ms(r.p50)} | ${ms(r.p99)} | ${r === one ? '1.0x' : `${(r.p99 / one.p99).toFixed(1)}x`} | ${ms(r.max)} | ${mib(r.rssBefore)} → ${mib(r.rssPeak)} |`,
      )
    }
  }
  const failed = reports.filter(({ many }) => many.errors > 0)
  if (failed.length > 0) console.log(`\nErrors under load: ${failed.map(({ mode, many }) => `${mode}: ${JSON.stringify(many.statuses)}`).join('; ')}`)
}
