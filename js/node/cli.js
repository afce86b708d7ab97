#!/usr/bin/env node
// The brcache command line: gen, list, check, serve, demo, bench.
// Exit status: 0 fine, 1 something incoherent left as it is (check) or
// metadata that could not be read (list), 2 usage, I/O or encryption
// errors, 3 no backup folder (list: is the share mounted?). Errors are one
// line on stderr.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { listWithoutCache, listXoStyle, restoreView } from '../sample/baselines.js'
import { generateRepository } from '../sample/generate.js'
import { LocalHandler, SimulatedShare } from './handlers/index.js'
import { openRepository } from './repository.js'
import { formatBytes, progress, table } from './cli/format.js'

const KEY_HELP = `  --encryption-key-file FILE
                  the key of an encrypted repository (Xen Orchestra's
                  32-character encryptionKey), else $BRCACHE_ENCRYPTION_KEY`

const HELP = {
  main: `brcache: a backup-repository cache for Xen Orchestra-style repositories

Usage: brcache <command> [options]

Commands:
  gen <dir>     write a sample repository (XO-shaped metadata, placeholder data, caches)
  list <dir>    the restore view: every VM's restore points
  check <dir>   is every VM's cache true to its folder? (--repair to fix)
  serve <dir>   the restore view in a web browser (caches decoded by the page)
  index <dir>   build (or rebuild) the repository-wide index: listings in 2 round trips
  demo          the article's case, with and without brcache, on a simulated share
  bench         benchmark scenarios on a simulated share

Run \`brcache <command> --help\` for a command's options.`,
  gen: `Usage: brcache gen <dir> [--vms N] [--retention R] [--seed S] [--no-cache]

Writes a deterministic sample repository: one folder per VM with
<date>.json metadata shaped like Xen Orchestra's (full and delta backups),
empty placeholder data files, and brcache's caches (unless --no-cache).

  --vms N         number of VMs (default 22)
  --retention R   restore points per VM (default 45)
  --seed S        the same seed always writes the same repository (default "brcache")
  --no-cache      write no cache.json.gz
  --encryption-key-file FILE, or $BRCACHE_ENCRYPTION_KEY
                  write an encrypted repository, as Xen Orchestra encrypts
                  a remote with that key (into an empty or new folder)
  --algorithm A   chacha20-poly1305 (default) or aes-256-gcm`,
  list: `Usage: brcache list <dir> [--json] [--vm <uuid>] [--verify] [--immutable]

The VM table: per VM, its name, restore points by mode, last backup and
total size. From the repository index's table when there is one (the first
listing of a writable repository makes it), else from the caches, checked
against the folders and repaired as needed; --json, --vm and --verify give
the restore view itself, whose VMs the index was not trusted for (locked,
in doubt, not in it), read from their caches instead, are named on stderr.

  --json          { "<vmUuid>": [summary, ...] } on stdout
  --vm <uuid>     one VM's restore points
  --verify        from the index, exact even for what Xen Orchestra wrote
                  behind its back: every cache is compared first, and the
                  index caught up
  --immutable     an immutable repository: never write a cache; its index is
                  made of create-only files only (the first listing makes it)
${KEY_HELP}

Exit status: 0 listed, 1 listed without metadata files that could not be
read (each named on stderr), 2 error (an encrypted repository without its
key, or with another key, is an error: never an empty list), 3 no backup
folder at <dir>/xo-vm-backups (an empty or unmounted mount point: is the
share mounted?).`,
  check: `Usage: brcache check <dir> [--repair] [--dry-run] [--deep] [--json] [--immutable] [--verbose]

Reconciles every VM's cache with its folder: stale entries (file gone),
missing ones (file not cached), unreadable metadata.

  --repair        write repaired caches (reads only what is missing)
  --dry-run       report what --repair would do, write nothing
  --deep          also check that each restore point's data files exist
                  (incomplete ones are reported, never deleted)
  --json          one report per VM on stdout
  --immutable     never write a cache
  --verbose       also say what the share can do (hard links, rename over a
                  file, exclusive create, folder fsync, timestamp step) and
                  how create-only writes go there (probed in a hidden folder)
${KEY_HELP}

Exit status: 0 coherent or repaired, 1 incoherent and left as it is, 2 error.`,
  serve: `Usage: brcache serve <dir|s3://…> [<dir|s3://…>…] [--port P] [--host H] [--auth | --auth-file FILE]
                     [--tls-cert FILE --tls-key FILE] [--no-repair] [--immutable] [--no-index]
                     [--verify-every S]

Serves the restore view of one or more repositories as a web page (a
repository that fails shows its error; the others load): the browser fetches the repository
index (see brcache index), or else each VM's cache.json.gz, as they lie on
the share and decodes them with brcache's WebAssembly build. A VM folder the
index does not know is read from its cache. Requests reach the page, its
assets, the list of VMs, the caches of listed VMs and the listed index
files (on an immutable repository, its epoch folders' and the listed VM
folders' metadata files), nothing else.

  --port P        port to listen on (default 8080; 0 picks a free one)
  --host H        address to listen on (default 127.0.0.1: this machine only);
                  any other address needs --auth or --auth-file
  --auth          generate a token, print it, and require it: scripts send
                  \`Authorization: Bearer <token>\`, the page asks for it once
                  and keeps a session cookie
  --auth-file FILE
                  the same with the token in FILE (one line, 16+ characters)
  --tls-cert FILE, --tls-key FILE
                  serve HTTPS with this certificate and key (PEM)
  --no-repair     serve caches as they are, without checking them against
                  their folders first
  --immutable     write nothing (an immutable repository; an S3 bucket with
                  Object Lock is found out): no cache checked or repaired, no
                  index made. The page reads its index of create-only files
                  (which brcache list makes there), served read only, and the
                  VM folders the index does not know or doubts; without one,
                  every VM folder
  --no-index      ignore the repository index: every VM's cache is checked
                  against its folder (unless --no-repair) and fetched
  --verify-every S
                  while pages read the index, verify it against every VM
                  cache at most every S seconds (default 60), so that what
                  Xen Orchestra writes shows within that window
  --encryption-key-file FILE, or $BRCACHE_ENCRYPTION_KEY
                  on an encrypted repository, lets the server check and
                  repair caches before serving them; without it they are
                  served as they lie. Either way the page asks for the key
                  and decrypts in the browser: the key never reaches the server.

With repair on (and neither --immutable nor --no-index), the server keeps the
index: before it listens, it makes it when the repository has none (one
listing of the VM caches, as brcache list does), or else verifies it against
every VM's cache (brcache check's index part), so that the first page reads
the index and what Xen Orchestra did behind its back shows on it. Then,
while pages poll the index, it verifies it in the background, one
verification at a time, at most every --verify-every seconds. The index
listing (/api/index) says when it was last verified (X-Brcache-Verified-At);
/api/index?verified=1 answers after a verification that began after it.`,
  index: `Usage: brcache index <dir> [--json]

Rebuilds the repository-wide index (xo-vm-backups/.brcache-index/) from the
VM caches, after checking (and repairing) each of them. No need to run it
first: the first \`brcache list\` of a writable repository makes the index,
every write through brcache keeps it up to date, \`brcache list\` reads the
whole restore view from it in two round trips whatever the VM count, and
\`brcache check\` (or \`list --verify\`) finds what changed behind its back.

${KEY_HELP}`,
  demo: `Usage: brcache demo [--vms N] [--retention R] [--rtt MS] [--keep]

Generates the article's repository (22 VMs x 45 restore points) in a temp
folder, then lists it through a simulated network share (10 ms round trip,
16 calls in flight, 1 Gbit/s): first without any cache, then with brcache.

  --vms N, --retention R   another size (defaults 22 and 45)
  --rtt MS                 round-trip time of the simulated share (default 10)
  --keep                   keep the generated repository and print its path`,
  bench: `Usage: brcache bench [--scenario NAME] [--json] [--runs N] [--vms N] [--retention R]

Scenarios (all on the simulated share, each a ratio measured in the same run):
  article    22 VMs x 45: no cache vs XO-style cache vs brcache
  update     add one backup and delete one, at retention 45 and 1,000
  job        a backup job: one backup to each of 50 VMs at once, vs XO-style
  large      1,000 VMs x 100: cold rebuild, warm listing, summaries (slow)
  encrypted  22 VMs x 45, encrypted as XO does (chacha20-poly1305) vs plaintext
  immutable  200 VMs x 45 with no cache: the create-only index vs every metadata file
  all        article, update, job and encrypted (default)

--vms and --retention change the size of the article, job, large and immutable scenarios.`,
}

class UsageError extends Error {}

function readFileOption(file, what = 'file') {
  try {
    return readFileSync(file)
  } catch (error) {
    throw new UsageError(`cannot read the ${what} ${file}: ${error.message}`)
  }
}

/** A secret kept in a file: its one line (a final line break is not part of it). */
function readLine(file, what) {
  return readFileOption(file, `${what} file`).toString('utf8').replace(/\r?\n$/, '')
}

const KEY_OPTION = { 'encryption-key-file': { type: 'string' } }

/**
 * The encryption key: from --encryption-key-file (one line; a final line
 * break is not part of it), else $BRCACHE_ENCRYPTION_KEY. Never from an
 * argument, which every user of the machine can read in the process list.
 */
function encryptionKey(values) {
  const file = values['encryption-key-file']
  if (file !== undefined) return readLine(file, 'encryption key')
  const fromEnv = process.env.BRCACHE_ENCRYPTION_KEY
  return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv
}

/** No backup folder where one was expected: exit status 3. */
class NoBackupFolderError extends Error {}

/**
 * A folder without xo-vm-backups/ is an unmounted or wrong share (an empty
 * mount point) far more often than an empty repository.
 */
async function requireBackupFolder(repository, dir) {
  try {
    const { isDirectory } = await repository.handler.stat('xo-vm-backups')
    if (isDirectory) return
  } catch (error) {
    if (error.code !== 'ENOENT' && error.code !== 'ENOTDIR') throw error
    // No folder at all is the listing's error (exit 2), not this one.
    if (!(await repository.handler.stat('').then(() => true, () => false))) return
  }
  throw new NoBackupFolderError(`no backup folder at ${join(dir, 'xo-vm-backups')}: is the share mounted?`)
}

function parse(args, options) {
  try {
    return parseArgs({ args, options: { help: { type: 'boolean' }, ...options }, allowPositionals: true })
  } catch (error) {
    throw new UsageError(error.message)
  }
}

function number(value, name) {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`--${name} expects a whole number, got ${JSON.stringify(value)}`)
  return n
}

function requireDir(positionals, command) {
  if (positionals.length !== 1) throw new UsageError(`${command} expects one repository folder (see brcache ${command} --help)`)
  return positionals[0]
}

// --- commands ----------------------------------------------------------------

async function gen(args) {
  const { values, positionals } = parse(args, {
    vms: { type: 'string', default: '22' },
    retention: { type: 'string', default: '45' },
    seed: { type: 'string', default: 'brcache' },
    'no-cache': { type: 'boolean' },
    algorithm: { type: 'string' },
    ...KEY_OPTION,
  })
  if (values.help) return console.log(HELP.gen)
  const key = encryptionKey(values)
  if (values.algorithm !== undefined && key === undefined) throw new UsageError('--algorithm needs an encryption key')
  const dir = requireDir(positionals, 'gen')
  const bar = progress('gen')
  const result = await generateRepository(dir, {
    vms: number(values.vms, 'vms'),
    retention: number(values.retention, 'retention'),
    seed: values.seed,
    caches: !values['no-cache'],
    encryptionKey: key,
    algorithm: values.algorithm,
    onProgress: (done, total) => bar.update(done, total, 'VMs'),
  })
  bar.done()
  const encrypted = key === undefined ? '' : `, encrypted (${values.algorithm ?? 'chacha20-poly1305'})`
  console.log(`${dir}: ${result.vms} VMs, ${result.restorePoints} restore points, ${result.files} files${values['no-cache'] ? '' : ', caches written'}${encrypted}`)
}

function summarizeVm(summaries) {
  const modes = {}
  let size = 0
  for (const s of summaries) {
    modes[s.mode] = (modes[s.mode] ?? 0) + 1
    size += typeof s.size === 'number' ? s.size : 0
  }
  const last = summaries[summaries.length - 1]
  return {
    name: last.vm?.name_label ?? '',
    points: Object.entries(modes)
      .map(([mode, n]) => `${n} ${mode}`)
      .join(', '),
    last: typeof last.timestamp === 'number' ? new Date(last.timestamp).toISOString().replace('.000Z', 'Z') : '',
    size: formatBytes(size),
  }
}

const NOT_FROM_INDEX = { locked: 'locked', inDoubt: 'index entry in doubt', unknown: 'not in the index' }

async function list(args) {
  const { values, positionals } = parse(args, {
    json: { type: 'boolean' },
    vm: { type: 'string' },
    immutable: { type: 'boolean' },
    verify: { type: 'boolean' },
    ...KEY_OPTION,
  })
  if (values.help) return console.log(HELP.list)
  const dir = requireDir(positionals, 'list')
  // One-shot: no verification in the background; --verify waits for one.
  const repository = openRepository(dir, { immutable: values.immutable, encryptionKey: encryptionKey(values), verifyEveryMs: Infinity })
  if (typeof dir === 'string' && !dir.startsWith('s3://')) await requireBackupFolder(repository, dir)
  // The table alone needs no restore point's summary: from the index's
  // table (sized by VMs), unless a verified answer is asked for.
  if (!values.json && !values.vm && !values.verify) return listVms(repository)
  const { vms: view, unreadable, notFromIndex } = await repository.restoreView(undefined, { vm: values.vm, verified: values.verify })
  await repository.settle()
  // What could not be read is said whatever the format, and in the exit
  // status: a listing without it would pass for complete.
  for (const { file, reason } of unreadable) process.stderr.write(`brcache: unreadable, not listed: ${file}: ${reason}\n`)
  // Which VMs the index was not trusted for, whatever the format too (on
  // stderr: stdout stays the view).
  for (const [why, vms] of Object.entries(notFromIndex ?? {})) {
    if (vms.length > 0) process.stderr.write(`brcache: read from their caches, not the index (${NOT_FROM_INDEX[why]}): ${vms.join(' ')}\n`)
  }
  const exitCode = unreadable.length > 0 ? 1 : 0
  if (values.json) {
    console.log(JSON.stringify(view, null, 2))
    return exitCode
  }
  if (values.vm) {
    const rows = (view[values.vm] ?? []).map((s) => [
      new Date(s.timestamp).toISOString().replace('.000Z', 'Z'),
      s.mode,
      formatBytes(s.size),
      s.disks.length,
      s.id,
    ])
    console.log(table(['date', 'mode', 'size', 'disks', 'id'], rows) || `no restore point for VM ${values.vm}`)
    if (unreadable.length > 0) console.log(`\n${unreadable.length} metadata file${unreadable.length === 1 ? '' : 's'} could not be read (see above)`)
    return exitCode
  }
  const rows = Object.entries(view).map(([vm, summaries]) => {
    const s = summarizeVm(summaries)
    return [vm, s.name, s.points, s.last, s.size]
  })
  return printVmRows(rows, Object.values(view).reduce((n, s) => n + s.length, 0), unreadable, exitCode)
}

/** The VM table (see listVms): a row per VM, from the index's table when there is one. */
async function listVms(repository) {
  const { vms, unreadable } = await repository.vmTable()
  await repository.settle()
  for (const { file, reason } of unreadable) process.stderr.write(`brcache: unreadable, not listed: ${file}: ${reason}\n`)
  const exitCode = unreadable.length > 0 ? 1 : 0
  const rows = Object.entries(vms).map(([vm, row]) => [
    vm,
    row.name ?? '',
    Object.entries(row.modes)
      .map(([mode, n]) => `${n} ${mode}`)
      .join(', '),
    typeof row.lastBackup === 'number' ? new Date(row.lastBackup).toISOString().replace('.000Z', 'Z') : '',
    formatBytes(row.size),
  ])
  return printVmRows(rows, Object.values(vms).reduce((n, row) => n + row.count, 0), unreadable, exitCode)
}

function printVmRows(rows, total, unreadable, exitCode) {
  const none = unreadable.length > 0 ? 'no readable restore point in this repository' : 'no restore point in this repository'
  console.log(table(['VM', 'name', 'restore points', 'last backup', 'total size'], rows) || none)
  const notRead = unreadable.length > 0 ? `; ${unreadable.length} metadata file${unreadable.length === 1 ? '' : 's'} could not be read (see above)` : ''
  console.log(`\n${rows.length} VMs, ${total} restore points${notRead}`)
  return exitCode
}

async function check(args) {
  const { values, positionals } = parse(args, {
    repair: { type: 'boolean' },
    'dry-run': { type: 'boolean' },
    deep: { type: 'boolean' },
    json: { type: 'boolean' },
    immutable: { type: 'boolean' },
    verbose: { type: 'boolean' },
    ...KEY_OPTION,
  })
  if (values.help) return console.log(HELP.check)
  const repository = openRepository(requireDir(positionals, 'check'), { immutable: values.immutable, encryptionKey: encryptionKey(values) })
  const reports = await repository.checkAll({ repair: values.repair, dryRun: values['dry-run'], deep: values.deep })
  const index = await repository.checkIndex({ repair: values.repair, dryRun: values['dry-run'] })
  const indexDrift = Object.keys(index.drift).length + (index.unusable ? 1 : 0) + (index.damaged?.length ?? 0)
  let incoherent = indexDrift > 0 && !index.repaired ? 1 : 0
  for (const report of Object.values(reports)) {
    const problems = report.stale.length + report.missing.length + report.unreadable.length + (report.incomplete?.length ?? 0)
    if ((problems > 0 || report.cacheError) && !report.repaired) incoherent++
  }
  if (values.json) {
    const out = {}
    for (const [vm, r] of Object.entries(reports)) {
      out[vm] = { stale: r.stale, missing: r.missing, unreadable: r.unreadable, repaired: r.repaired }
      if (r.writing?.length) out[vm].writing = r.writing
      if (r.cacheError) out[vm].cacheError = r.cacheError
      if (r.incomplete) out[vm].incomplete = r.incomplete
      if (index.inDoubt?.includes(vm)) out[vm].indexInDoubt = true
    }
    console.log(JSON.stringify(out, null, 2))
  } else {
    for (const [vm, r] of Object.entries(reports)) {
      const notes = []
      if (r.cacheError) notes.push(`unusable cache (${r.cacheError})`)
      if (r.stale.length) notes.push(`${r.stale.length} stale`)
      if (r.missing.length) notes.push(`${r.missing.length} missing`)
      if (r.unreadable.length) notes.push(`${r.unreadable.length} unreadable`)
      if (r.incomplete?.length) notes.push(`${r.incomplete.length} incomplete`)
      let state = notes.length === 0 ? 'coherent' : `${notes.join(', ')}${r.repaired ? ': repaired' : ''}`
      if (r.writing?.length) state += `, ${r.writing.length} being written (not listed yet)`
      console.log(`${vm}  ${r.entries} restore points  ${state}`)
      for (const { id, reason } of r.unreadable) console.log(`  unreadable ${id}: ${reason}`)
      for (const { id, missing } of r.incomplete ?? []) console.log(`  incomplete ${id}: missing ${missing.join(', ')}`)
    }
    if (index.exists) {
      const drift = [
        ...Object.entries(index.drift).map(([vm, kind]) => `${vm} ${kind}`),
        ...(index.damaged ?? []).map((file) => `${file} damaged`),
        ...(index.inDoubt ?? []).map((vm) => `${vm} in doubt`),
      ]
      const state = index.unusable ? `unusable (${index.unusable})` : drift.length === 0 ? 'coherent' : drift.join(', ')
      const rebuilt = index.noSnapshot && index.repaired
      console.log(`repository index  ${rebuilt ? 'had no snapshot (a build or compaction failed): rebuilt' : `${state}${index.repaired ? ': repaired' : ''}`}`)
    }
    console.log(`\n${Object.keys(reports).length} VMs, ${incoherent} incoherent${values.repair && !values['dry-run'] ? ' after repair' : ''}`)
  }
  if (values.verbose) {
    // On stderr with --json, so that stdout stays one JSON document.
    const say = values.json ? (line) => process.stderr.write(`${line}\n`) : console.log
    // The probe writes (a hidden folder, removed after): never on an
    // immutable repository, and a share that refuses it is said, not fatal.
    const share = values.immutable
      ? undefined
      : await repository.handler.capabilities?.().catch((error) => {
          say(`share: not probed (${error.message})`)
        })
    if (values.immutable) say('share: not probed (an immutable repository gets nothing written)')
    if (share) {
      const yes = (b) => (b ? 'yes' : 'no')
      say(
        `share: hard links ${yes(share.hardLinks)}, rename over a file ${yes(share.renameOver)}, exclusive create ${yes(share.exclusiveCreate)}, ` +
          `folder fsync ${yes(share.directoryFsync)}, timestamps to ${share.mtimeResolutionMs} ms${share.probed ? '' : ' (not probed)'}; ` +
          `create-only writes by ${share.createStrategy}`,
      )
    }
  }
  return incoherent > 0 ? 1 : 0
}

async function index(args) {
  const { values, positionals } = parse(args, { json: { type: 'boolean' }, ...KEY_OPTION })
  if (values.help) return console.log(HELP.index)
  const repository = openRepository(requireDir(positionals, 'index'), { index: true, encryptionKey: encryptionKey(values) })
  const built = await repository.buildIndex()
  if (values.json) return console.log(JSON.stringify(built))
  console.log(`repository index built from ${built.vms} VM caches (snapshot generation ${built.generation})`)
}

async function serve(args) {
  const { values, positionals } = parse(args, {
    port: { type: 'string', default: '8080' },
    host: { type: 'string', default: '127.0.0.1' },
    'no-repair': { type: 'boolean' },
    immutable: { type: 'boolean' },
    'no-index': { type: 'boolean' },
    'verify-every': { type: 'string', default: '60' },
    auth: { type: 'boolean' },
    'auth-file': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    ...KEY_OPTION,
  })
  if (values.help) return console.log(HELP.serve)
  if (positionals.length === 0) throw new UsageError('serve expects one or more repositories (see brcache serve --help)')
  const dirs = positionals
  const port = number(values.port, 'port')
  const verifyEvery = number(values['verify-every'], 'verify-every')
  const { generateToken, isLoopback } = await import('./auth.js')
  if (values.auth && values['auth-file'] !== undefined) throw new UsageError('--auth generates a token, --auth-file reads one: give one of them')
  let token
  if (values['auth-file'] !== undefined) token = readLine(values['auth-file'], 'token')
  else if (values.auth) token = generateToken()
  if (token !== undefined && token.length < 16) throw new UsageError('the token in --auth-file needs at least 16 characters')
  if (token === undefined && !isLoopback(values.host)) {
    throw new UsageError(
      `--host ${values.host} would serve every VM's backup history to anyone who can reach the port: add --auth (a token is generated and printed) or --auth-file FILE`,
    )
  }
  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) throw new UsageError('--tls-cert and --tls-key go together')
  const tls = values['tls-cert'] === undefined ? undefined : { cert: readFileOption(values['tls-cert']), key: readFileOption(values['tls-key']) }
  const key = encryptionKey(values)
  const { createServer } = await import('./serve.js')
  const server = createServer(dirs, {
    repair: !values['no-repair'],
    immutable: values.immutable,
    index: !values['no-index'],
    encryptionKey: key,
    verifyEveryMs: verifyEvery * 1000,
    auth: token,
    tls,
  })
  // Fail now on a missing or unmounted repository, or on a wrong key, not
  // at the first page load: alone, it is an error; among others, it is
  // said, and the page shows its error on its own.
  const started = await Promise.all(server.repositories.map((served) => served.start().then((s) => ({ ...s, served }), (error) => ({ error, served }))))
  const failed = started.filter(({ error }) => error)
  if (failed.length === started.length) throw failed[0].error
  const states = []
  for (const { served, vms, encryption, immutable, error } of started) {
    if (error) {
      states.push(`${served.name}: ${error.message}`)
      continue
    }
    let state = ''
    if (!encryption.readable) {
      state = `, encrypted with ${encryption.algorithm}: served as it lies, unchecked; the page asks for the key`
    } else {
      // The page trusts the index as listings do: made now when there is
      // none, else caught up once with what Xen Orchestra (or a crash)
      // changed behind it, before the first page.
      let kept
      try {
        kept = await served.prepareIndex()
      } catch (error) {
        // The page can still read the caches: said, not fatal, and no
        // other repository held back.
        state = `, repository index not kept: ${error.message}`
      }
      if (kept?.made) state = ', repository index made from the VM caches'
      else if (kept?.check?.exists) {
        const { check } = kept
        const behind = Object.keys(check.drift).length
        if (check.vms !== undefined) state = ', repository index rebuilt'
        else if (behind > 0) state = `, repository index caught up on ${behind} VM${behind === 1 ? '' : 's'}`
        else state = check.repaired ? ', repository index repaired' : ', repository index in step'
      }
    }
    if (encryption.readable && encryption.algorithm) state += `, encrypted with ${encryption.algorithm}: checked with the server's key; the page asks for it too`
    if (immutable) {
      state += immutable.index
        ? ', immutable: nothing written; the page reads its index of create-only files'
        : ', immutable: nothing written and no index yet (a brcache list makes it); the page reads every VM folder'
    }
    states.push(`${served.name} (${vms.length} VMs${state})`)
  }
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, values.host, resolve)
  })
  const { address, port: bound } = server.address()
  const host = address.includes(':') ? `[${address}]` : address
  const what = states.length === 1 ? states[0] : `${states.length} repositories`
  console.log(`brcache: the restore view of ${what} at ${tls ? 'https' : 'http'}://${host}:${bound}/ (Ctrl-C to stop)`)
  if (states.length > 1) for (const state of states) console.log(`  ${state}`)
  if (values.auth) console.log(`brcache: the token (sign in with it, or send "Authorization: Bearer <token>"): ${token}`)
  else if (token !== undefined) console.log(`brcache: sign in with the token in ${values['auth-file']}`)
}

// --- demo --------------------------------------------------------------------

/** Times one listing on a fresh simulated share. */
async function timed(share, fn) {
  share.resetStats()
  const start = performance.now()
  const result = await fn()
  const ms = performance.now() - start
  return { result, ms, ...share.stats() }
}

async function demo(args) {
  const { values } = parse(args, {
    vms: { type: 'string', default: '22' },
    retention: { type: 'string', default: '45' },
    rtt: { type: 'string', default: '10' },
    keep: { type: 'boolean' },
  })
  if (values.help) return console.log(HELP.demo)
  const vms = number(values.vms, 'vms')
  const retention = number(values.retention, 'retention')
  const dir = mkdtempSync(join(tmpdir(), 'brcache-demo-'))
  try {
    const bar = progress('gen')
    await generateRepository(dir, { vms, retention, seed: 'article', onProgress: (d, t) => bar.update(d, t, 'VMs') })
    await openRepository(dir).buildIndex()
    bar.done()
    const share = new SimulatedShare(new LocalHandler(dir), { rttMs: number(values.rtt, 'rtt') })
    console.log(
      `A repository of ${vms} VMs x ${retention} restore points (${vms * retention} metadata files), listed through a simulated share (${values.rtt} ms round trip, 16 calls in flight, 1 Gbit/s):\n`,
    )
    const repository = openRepository(share, { index: false })
    const indexed = openRepository(share, { index: true, verifyEveryMs: Infinity })
    const runs = {
      'no cache: read every metadata file (XO before 5.71)': () => listWithoutCache(share).then(restoreView),
      'XO-style cache: read each cache, trust it (XO today)': () => listXoStyle(share).then(restoreView),
      'brcache: checked caches, restore view': () => repository.listSummaries(),
      'brcache: repository index, restore view': () => indexed.listSummaries(),
      'brcache: checked caches, full records': () => repository.listAllVmBackups(),
    }
    const results = {}
    for (const [name, fn] of Object.entries(runs)) {
      results[name] = await timed(share, fn)
      await repository.settle()
    }
    const ids = (view) => JSON.stringify(Object.entries(view).map(([vm, list]) => [vm, list.map((b) => b.id).sort()]).sort())
    const views = Object.values(results).map((r) => ids(r.result))
    if (views.some((v) => v !== views[0])) throw new Error('the listings disagree')
    const rows = Object.entries(results).map(([name, r]) => [name, `${r.ms.toFixed(0)} ms`, r.calls.total, formatBytes(r.bytes.read)])
    console.log(table(['listing', 'time', 'calls', 'bytes read'], rows))
    const [baseline, , view] = Object.values(results)
    const points = Object.values(view.result).reduce((n, list) => n + list.length, 0)
    console.log(
      `\nbrcache's restore view lists the same ${points} restore points ${(baseline.ms / view.ms).toFixed(1)}x faster than no cache (the article's cache: 8x), with ${(baseline.calls.total / view.calls.total).toFixed(1)}x fewer calls and ${(baseline.bytes.read / view.bytes.read).toFixed(1)}x fewer bytes.`,
    )
    const index = results['brcache: repository index, restore view']
    console.log(
      `With the repository index: ${(baseline.ms / index.ms).toFixed(1)}x faster than no cache, in ${index.calls.total} calls whatever the number of VMs.`,
    )
    console.log(
      "Every listing gives the same restore points. brcache's per-VM listings check each cache against its folder; the index is kept by every brcache writer and reconciled by `brcache check`.",
    )
    if (values.keep) console.log(`\nRepository kept in ${dir}`)
  } finally {
    if (!values.keep) rmSync(dir, { recursive: true, force: true })
  }
}

async function bench(args) {
  const { runBench } = await import('./cli/bench.js')
  const { values } = parse(args, {
    scenario: { type: 'string', default: 'all' },
    json: { type: 'boolean' },
    runs: { type: 'string', default: '3' },
    vms: { type: 'string' },
    retention: { type: 'string' },
  })
  if (values.help) return console.log(HELP.bench)
  return runBench({
    scenario: values.scenario,
    json: values.json,
    runs: number(values.runs, 'runs'),
    vms: values.vms === undefined ? undefined : number(values.vms, 'vms'),
    retention: values.retention === undefined ? undefined : number(values.retention, 'retention'),
  })
}

const COMMANDS = { gen, list, check, serve, index, demo, bench }

async function main(argv) {
  const [command, ...args] = argv
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    console.log(HELP.main)
    return command ? 0 : 2
  }
  const run = COMMANDS[command]
  if (!run) throw new UsageError(`unknown command ${JSON.stringify(command)} (see brcache --help)`)
  return (await run(args)) ?? 0
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (error) => {
    const message = error instanceof UsageError || error instanceof NoBackupFolderError ? error.message : `error: ${error.message}`
    process.stderr.write(`brcache: ${message}\n`)
    process.exitCode = error instanceof NoBackupFolderError ? 3 : 2
  },
)
