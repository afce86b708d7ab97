// Compiled with `tsc --noEmit` by tests/types.test.mjs: uses every public
// declaration the way an application would.

import { BrcacheError, coreName, decodeCache, encodeCache, readCacheHeader } from 'brcache'
import type { CacheHeader, DecodeOptions, MetadataCache } from 'brcache'
import * as wasm from 'brcache/wasm'
import * as browser from 'brcache/browser'

const options: DecodeOptions = { maxInflatedSize: 1 << 20, maxDepth: 32, name: 'cache.json.gz' }
const bytes: Uint8Array = encodeCache({ '/xo-vm-backups/v/20240101T000000Z.json': { mode: 'full' } }, { generation: 2 })
const cache: MetadataCache = decodeCache(bytes, options)
for (const [path, entry] of Object.entries(cache)) {
  const mode: unknown = entry.mode
  console.log(path, mode)
}
const header: CacheHeader | null = readCacheHeader(bytes)
if (header) {
  const generation: number = header.generation
  const fingerprint: string | null = header.fingerprint
  console.log(generation, fingerprint, header.entries, header.version)
}
try {
  decodeCache(new ArrayBuffer(0))
} catch (error) {
  if (error instanceof BrcacheError) {
    const code: string = error.code
    const offset: number | undefined = error.offset
    console.log(code, offset, error.file, error.detail)
  }
}

const fromWasm: MetadataCache = wasm.decodeCache(wasm.encodeCache(cache))
console.log(fromWasm)

async function inBrowser(response: Response): Promise<void> {
  await browser.init()
  const decoded: MetadataCache = browser.decodeCache(new Uint8Array(await response.arrayBuffer()))
  console.log(decoded, browser.readCacheHeader(browser.encodeCache(decoded)))
}
void inBrowser

async function restoreView(vm: string, response: Response): Promise<number> {
  await browser.init()
  const bytes = new Uint8Array(await response.arrayBuffer())
  const summaries: browser.Summary[] = browser.summariesOf(vm, bytes, { mode: 'full' }, { name: 'cache.json.gz' })
  const cache: browser.VmCache = browser.VmCache.decode(vm, bytes)
  const plan = cache.reconcile(['20240101T000000Z.json'])
  const fresh = browser.VmCache.empty(vm).add(`/xo-vm-backups/${vm}/20240101T000000Z.json`, { mode: 'full', timestamp: 0 })
  const same: boolean = browser.vmCacheApi().VmCache === browser.VmCache
  console.log(plan.coherent, plan.stale, fresh.commit().length, same, summaries.map((s) => s.disks.length))
  return summaries.length + cache.summaries().length
}
void restoreView

// The repository API of the Node entry.
import { openRepository, LocalHandler, SimulatedShare, S3Handler } from 'brcache'
import type { CheckReport, MetadataRecord, Repository, Summary } from 'brcache'

async function backupServer(): Promise<void> {
  const local = new LocalHandler('/mnt/backups')
  const folders: string[] = await local.list('xo-vm-backups')
  console.log(local.root, local.supportsLocks, folders.length)
  const share = new SimulatedShare(local, { rttMs: 10, maxInFlight: 16 })
  const repository: Repository = openRepository(share, { concurrency: 8, logger: { warn: console.warn } })
  const id: string = await repository.writeVmBackupMetadata('vm', { timestamp: Date.now(), mode: 'full' })
  const records: MetadataRecord[] = await repository.listVmBackups('vm', (r) => r.mode === 'full')
  const report: CheckReport = await repository.checkVm('vm', { repair: true, dryRun: false, deep: true })
  const view: Record<string, Summary[]> = await repository.listSummaries({ jobId: 'j' })
  await repository.deleteVmBackups([id])
  console.log(records.length, report.coherent, Object.keys(view), share.stats().calls.total)
  const s3 = S3Handler.fromUrl('s3://key:secret@127.0.0.1:3900/bucket/prefix', { http: true })
  await s3.check()
  console.log((await openRepository(s3, { immutable: true }).listAllVms()).length)
}
void backupServer

// The restore view in a page, over any fetch-based file source.
async function pageView(base: URL): Promise<number> {
  await browser.init()
  const files: browser.IndexFiles = {
    list: async (dir) => (await fetch(new URL(`api/${dir === 'xo-vm-backups' ? 'vms' : 'index'}`, base))).json() as Promise<string[]>,
    readFile: async (file) => new Uint8Array(await (await fetch(new URL(`api/index/${file.split('/').at(-1)}`, base))).arrayBuffer()),
  }
  const { vms } = await browser.drive(browser.operations.start('restoreView', { trusted: true, index: 'auto' }), files, { concurrency: 6 })
  return Object.keys(vms).length
}
void pageView

// Encrypted repositories, on Node and in a page.
import { EncryptedShare, encryptionApi } from 'brcache'
import type { RestoreView } from 'brcache'

async function encrypted(key: string): Promise<number> {
  const repository = openRepository('/mnt/backups', { encryptionKey: key })
  const state = await repository.encryption()
  if (!state.readable) console.log(state.algorithm, state.reason)
  const view: RestoreView = await repository.restoreView()
  for (const { file, reason } of view.unreadable) console.log(file, reason)
  const cipher = encryptionApi.newCipher('aes-256-gcm', key)
  const sealed: Uint8Array = cipher.seal('{}')
  cipher.verifyKey(sealed)
  const share = new EncryptedShare(new LocalHandler('/mnt/backups'), encryptionApi, key)
  console.log((await share.cipher())?.algorithm, (await share.describe()).algorithm, share.inner)
  return Object.keys(view.vms).length + cipher.open(sealed, 'metadata.json').length
}
void encrypted

async function pageEncrypted(files: browser.IndexFiles, key: string): Promise<void> {
  await browser.init()
  const share = new browser.EncryptedShare(files, browser.encryptionApi, key)
  const view = await browser.drive(browser.operations.start('listVm', { trusted: true }, { vm: 'vm', want: 'summaries' }), share)
  console.log(view.fromIndex, (await share.cipher())?.algorithm)
}
void pageEncrypted

// Which core runs (the addon, or the wasm build where none loads).
const core: 'native' | 'wasm' = coreName
console.log(core)
