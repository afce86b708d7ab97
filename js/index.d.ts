// brcache: the codec and VM caches on the napi addon, and the repository API.
import type { Cipher, EncryptionAlgorithm, EncryptionApi, MetadataEntry, Summary, SummaryFilter } from './types.js'

export * from './core.js'

/** The core this process runs on: the napi addon ('native') or the WebAssembly build ('wasm'); see BRCACHE_CORE. */
export declare const coreName: 'native' | 'wasm'

export interface Logger {
  debug?(message: string, data?: object): void
  info?(message: string, data?: object): void
  warn?(message: string, data?: object): void
  error?(message: string, data?: object): void
}

/** The I/O a repository does, all of it (see js/node/handlers/interface.md). */
export interface Handler {
  readonly supportsLocks?: boolean
  list(dir: string): Promise<string[]>
  listWithTypes(dir: string): Promise<{ name: string; isDirectory: boolean }[]>
  readFile(path: string): Promise<Uint8Array>
  writeFile(path: string, data: Uint8Array | string, options?: { exclusive?: boolean }): Promise<void>
  rename(from: string, to: string): Promise<void>
  unlink(path: string): Promise<void>
  rmdir(path: string): Promise<void>
  mkdir(path: string): Promise<void>
  stat(path: string): Promise<{ size: number; mtimeMs: number; isDirectory: boolean }>
  lock(path: string, options?: { stale?: number; retries?: number | object }): Promise<() => Promise<void>>
  cleanTemps(dir: string, options?: { olderThanMs?: number }): Promise<string[]>
  /** What the share can do (probed once by LocalHandler; see js/node/handlers/interface.md). */
  capabilities?(): Promise<ShareCapabilities | undefined>
}

export interface ShareCapabilities {
  hardLinks: boolean
  renameOver: boolean
  exclusiveCreate: boolean
  directoryFsync: boolean
  /** 1 (milliseconds or finer), 10, 1000 (whole seconds) or 2000 */
  mtimeResolutionMs: number
  /** false when given to the constructor rather than found by trying */
  probed: boolean
  /** how create-only writes go there */
  createStrategy: 'link' | 'claim' | 'check-then-rename' | 'conditional-put'
}

export declare class LocalHandler {
  constructor(rootDir: string, options?: { capabilities?: Partial<ShareCapabilities> })
  readonly root: string
  readonly supportsLocks: boolean
}
/** Every Handler method (declaration merging: the class declares them once, through Handler). */
export interface LocalHandler extends Handler {}

export interface ShareStats {
  calls: Record<string, number> & { total: number }
  bytes: { read: number; written: number }
}

export type Fault = undefined | { error: string } | { delayMs: number }

/** Wraps a handler with a network share's behaviour: round trips, calls in flight, bandwidth, faults. */
export declare class SimulatedShare extends LocalHandler {
  constructor(
    inner: Handler,
    options?: {
      rttMs?: number
      maxInFlight?: number
      bandwidthBytesPerSec?: number
      faults?: Record<string, Fault | ((call: { kind: string; path: string; seq: number }) => Fault)> | ((call: { kind: string; path: string; seq: number }) => Fault)
    },
  )
  readonly inner: Handler
  stats(): ShareStats
  resetStats(): void
  setFaults(faults: Record<string, Fault> | ((call: { kind: string; path: string; seq: number }) => Fault)): void
}

export interface S3Options {
  endpoint: string
  bucket: string
  prefix?: string
  accessKeyId: string
  secretAccessKey: string
  region?: string
  maxAttempts?: number
}

/** A repository in an S3-compatible object store. */
export declare class S3Handler extends LocalHandler {
  constructor(options: S3Options)
  static fromUrl(url: string, options?: { http?: boolean }): S3Handler
  /** Throws unless the bucket exists and the key may use it. */
  check(): Promise<void>
  destroy(): void
}

/**
 * A handler that decrypts every read and encrypts every write, as Xen Orchestra's handler does
 * on a remote with an encryption key; every call fails (ENCRYPTED, WRONG_ENCRYPTION_KEY, ...)
 * when the repository cannot be read with the key given, and nothing is written then.
 */
export declare class EncryptedShare {
  constructor(inner: Handler, api: EncryptionApi, key?: string | Uint8Array)
  /** The share as it lies. */
  readonly inner: Handler
  /** The repository's cipher, null when plaintext; rejects when it cannot be read. */
  cipher(): Promise<Cipher | null>
  /** What encryption.json names, without a key. */
  describe(): Promise<{ algorithm: EncryptionAlgorithm | null }>
}
export interface EncryptedShare extends Handler {}

export declare function parseS3Url(url: string, options?: { http?: boolean }): S3Options & { prefix: string }
export declare function openHandler(pathOrHandler: string | URL | Handler, options?: { s3?: { http?: boolean } }): Handler

/** A restore point's metadata as listed: it names the file its key names. */
export interface MetadataRecord extends MetadataEntry {
  id: string
  _filename: string
  isImmutable: boolean
}

export interface CheckReport {
  vm: string
  entries: number
  fastPath: boolean
  cacheError?: string
  stale: string[]
  missing: string[]
  unreadable: { id: string; reason: string }[]
  /** metadata files that do not parse yet, young enough to be being written (not listed, not cached) */
  writing: string[]
  incomplete?: { id: string; missing: string[] }[]
  coherent: boolean
  repaired: boolean
}

export interface CheckOptions {
  repair?: boolean
  dryRun?: boolean
  deep?: boolean
}

export interface IndexCheck {
  exists: boolean
  unusable?: string
  /** the index folder holds no snapshot (a build or compaction failed): listings do not use it; a repair rebuilds it */
  noSnapshot?: boolean
  drift: Record<string, 'unknown' | 'behind' | 'gone'>
  repaired: boolean
  /** Index segments that did not decode (cut short, or damaged); a repair removes them. */
  damaged?: string[]
  /** VMs whose index entry is in doubt: listings read them from their caches; a repair publishes their views. */
  inDoubt?: string[]
}

export interface RepositoryOptions {
  /** Calls on the share at once, per operation (default 20: ten VM folders, each cache read beside its listing). */
  concurrency?: number
  immutable?: boolean
  logger?: Logger
  lockStaleMs?: number
  /** The core: the napi addon by default; `await import('brcache/wasm')` works too. */
  core?: object
  index?: boolean | 'auto'
  s3?: { http?: boolean }
  /** The key of a repository Xen Orchestra encrypts (its remote's 32-character `encryptionKey`). */
  encryptionKey?: string | Uint8Array
  /** After an answer from the index, a verification in the background at most this often, counted from the object's creation (default 60,000 ms; Infinity: never). */
  verifyEveryMs?: number
}

/** The restore view with what it could not read. */
export interface RestoreView {
  vms: Record<string, Summary[]>
  /** Metadata files found in the VM folders read that are not listed: not JSON, not a restore point, or not decrypting. */
  unreadable: { file: string; reason: string }[]
  /** The answer came from the repository index. */
  fromIndex: boolean
  /** Exact for writers that know nothing of the index (Xen Orchestra): always from the caches; from the index, once verified. */
  verified: boolean
  /** With `fromIndex`: the VMs answered from their caches and folders instead (exact whatever `verified` says), sorted. */
  notFromIndex?: NotFromIndex
}

/** The VMs a listing from the index did not trust it for. A VM may be both locked and in doubt. */
export interface NotFromIndex {
  /** Their lock showed: a writer at work, or one that died. */
  locked: string[]
  /** Their index entry is in doubt (deltas that do not add up to the cache they name). */
  inDoubt: string[]
  /** VM folders the index has no entry for. */
  unknown: string[]
}

/** A VM's row in the VM table. */
export interface VmRow {
  /** The VM's name label in its newest restore point (null without one). */
  name: string | null
  /** Restore points. */
  count: number
  /** Restore points by mode (`full`, `delta`). */
  modes: Record<string, number>
  /** The newest restore point's timestamp (ms). */
  lastBackup: number | null
  /** The restore points' sizes added up (bytes). */
  size: number
}

/** The VM table with what it could not read. */
export interface VmTable {
  vms: Record<string, VmRow>
  unreadable: { file: string; reason: string }[]
  /** The answer came from the repository index. */
  fromIndex: boolean
}

/** One VM's restore view with what it could not read. */
export interface VmRestoreView {
  summaries: Summary[]
  unreadable: { file: string; reason: string }[]
  fromIndex: boolean
}

export declare class Repository {
  /** The share as it lies: on an encrypted repository, its bytes are encrypted. */
  readonly handler: Handler
  /** As far as known yet: an S3 bucket's Object Lock shows after the first call. */
  readonly immutable: boolean
  /** Opened immutable, or an S3 bucket with Object Lock (asked once, nothing written). */
  isImmutable(): Promise<boolean>
  listAllVms(): Promise<string[]>
  listVmBackups(vm: string, predicate?: (record: MetadataRecord) => boolean): Promise<MetadataRecord[]>
  listAllVmBackups(): Promise<Record<string, MetadataRecord[]>>
  listVmSummaries(vm: string, filter?: SummaryFilter): Promise<Summary[]>
  listSummaries(filter?: SummaryFilter, options?: { verified?: boolean }): Promise<Record<string, Summary[]>>
  /** The VM table: a row per VM, from the index's table when there is one. */
  vmTable(): Promise<VmTable>
  /** One VM's restore view, from the index when there is one (its table, its part, the segments). */
  vmRestoreView(vm: string, filter?: SummaryFilter): Promise<VmRestoreView>
  /** `verified: true`: from the index, waits for a verification that starts after the call. */
  restoreView(filter?: SummaryFilter, options?: { vm?: string; verified?: boolean }): Promise<RestoreView>
  /** Compares every cache with the index and catches up what changed behind its back (see checkIndex); calls while one runs share the next one. */
  verify(): Promise<IndexCheck>
  /** When the last verification that caught the index up began (ms since the epoch), or undefined. */
  readonly verifiedAsOf: number | undefined
  /** Starts a verification in the background if none runs and the last ended `verifyEveryMs` ago; whether one started. */
  verifyInBackground(): boolean
  /** What encryption.json names and whether this repository object can read it (`reason` when not). */
  encryption(): Promise<{ algorithm: EncryptionAlgorithm | null; readable: boolean; code?: string; reason?: string }>
  writeVmBackupMetadata(vm: string, metadata: { timestamp: number; [field: string]: unknown }): Promise<string>
  deleteVmBackups(ids: Iterable<string>): Promise<void>
  checkVm(vm: string, options?: CheckOptions): Promise<CheckReport>
  checkAll(options?: CheckOptions): Promise<Record<string, CheckReport>>
  checkIndex(options?: { repair?: boolean; dryRun?: boolean }): Promise<IndexCheck>
  buildIndex(): Promise<{ vms: number; generation?: number }>
  /** Waits for background repairs (tests, and a clean shutdown). */
  settle(): Promise<void>
}

/** The VM folders of a share, names only (they lie in clear on an encrypted repository too). */
export declare function listVmFolders(handler: Handler): Promise<string[]>

/** Opens a backup repository: a folder, an `s3://` URL or a handler. */
export declare function openRepository(pathOrHandler: string | URL | Handler, options?: RepositoryOptions): Repository
