/** One restore point's metadata record, as stored in a cache entry. */
export interface MetadataEntry {
  [field: string]: unknown
}

/** A decoded `cache.json.gz`: metadata path -> metadata record. */
export interface MetadataCache {
  [metadataPath: string]: MetadataEntry
}

export interface DecodeOptions {
  /** Largest inflated body accepted, in bytes (default 256 MiB). */
  maxInflatedSize?: number
  /** Deepest JSON nesting accepted (default 64). */
  maxDepth?: number
  /** The file the bytes came from, named in error messages. */
  name?: string
}

export interface EncodeOptions {
  /** The generation written in brcache's header (default 1). */
  generation?: number
}

/** brcache's header, carried in the gzip FEXTRA field. */
export interface CacheHeader {
  version: number
  generation: number
  entries: number
  /** SHA-256 (hex) of the sorted metadata file names, or null. */
  fingerprint: string | null
}

export type BrcacheErrorCode =
  | 'NOT_GZIP'
  | 'TRUNCATED'
  | 'UNSUPPORTED_GZIP'
  | 'HEADER_CRC_MISMATCH'
  | 'CORRUPT_DEFLATE'
  | 'CRC_MISMATCH'
  | 'SIZE_MISMATCH'
  | 'TOO_LARGE'
  | 'TRAILING_DATA'
  | 'INVALID_UTF8'
  | 'INVALID_JSON'
  | 'TOO_DEEP'
  | 'NOT_AN_OBJECT'
  | 'ENTRY_NOT_AN_OBJECT'
  | 'INVALID_KEY'
  | 'INVALID_METADATA'
  | 'INVALID_ARGUMENT'
  | 'ENCRYPTED'
  | 'NOT_ENCRYPTED'
  | 'UNSUPPORTED_ENCRYPTION'
  | 'INVALID_ENCRYPTION_KEY'
  | 'WRONG_ENCRYPTION_KEY'
  | 'DECRYPTION_FAILED'

/** Thrown for bytes that are not a valid cache, and for a repository whose encryption forbids reading it. */
export declare class BrcacheError extends Error {
  name: 'BrcacheError'
  code: BrcacheErrorCode | (string & {})
  /** The explanation without the file name and offset. */
  detail: string
  /** Byte offset of the problem: in the gzip member, or in the JSON body for JSON errors. */
  offset: number | undefined
  /** The file named in the options, if any. */
  file: string | undefined
}

export type BytesInput = Uint8Array | ArrayBuffer | ArrayBufferView

/** A disk of a restore point, as the restore view shows it. */
export interface DiskSummary {
  /** The VHD path, from the repository root. */
  id: string
  name: unknown
  uuid: unknown
}

/**
 * A restore point as the restore view shows it (the shape of Xen
 * Orchestra's `formatVmBackup`): the fields a user picks a restore point
 * by, without the full XAPI records.
 */
export interface Summary {
  /** The metadata path, `/xo-vm-backups/<vm>/<date>.json`. */
  id: string
  /** Milliseconds since the epoch, as the record says (usually a number). */
  timestamp: unknown
  mode: unknown
  size: unknown
  jobId: unknown
  scheduleId: unknown
  tags: unknown
  vm: { uuid: unknown; name_label: unknown; name_description: unknown; tags: unknown }
  disks: DiskSummary[]
  withMemory: boolean
  differencingVhds: number
  dynamicVhds: number
  isImmutable: boolean
}

/** Which restore points to keep; a field left out keeps all. */
export interface SummaryFilter {
  jobId?: string
  scheduleId?: string
  mode?: string
}

/** What makes a cache coherent with its folder: names, not paths. */
export interface ReconcilePlan {
  /** Entries whose metadata file is gone. */
  stale: string[]
  /** Metadata files the cache does not cover. */
  missing: string[]
  fingerprintMatches: boolean
  coherent: boolean
}

/** A metadata file left out of a cache, and why. */
export interface Unreadable {
  name: string
  reason: string
}

/** Metadata file name -> its bytes (or a record, serialised as XO writes it). */
export type MetadataFiles = Map<string, BytesInput | object> | Record<string, BytesInput | object>

/** A VM folder's cache: its entries, header, coherency with a listing, merges. */
export declare class VmCache {
  private constructor()
  static empty(vm: string): VmCache
  static decode(vm: string, bytes: BytesInput, options?: DecodeOptions): VmCache
  static rebuild(vm: string, listing: Iterable<string>, files?: MetadataFiles): { cache: VmCache; unreadable: Unreadable[] }
  readonly vm: string
  readonly generation: number
  readonly size: number
  keys(): string[]
  /** SHA-256 (hex) of the entries' file names. */
  fingerprint(): string
  /** The fingerprint the header recorded, or null. */
  recordedFingerprint(): string | null
  records(): MetadataEntry[]
  body(): string
  add(path: string, metadata: BytesInput | object): this
  remove(paths: Iterable<string>): this
  continueAfter(previousGeneration: number): this
  commit(): Uint8Array
  summaries(filter?: SummaryFilter): Summary[]
  reconcile(listing: Iterable<string>): ReconcilePlan
  apply(plan: Pick<ReconcilePlan, 'stale' | 'missing'>, files?: MetadataFiles): Unreadable[]
  rebuild(listing: Iterable<string>, files?: MetadataFiles): Unreadable[]
  merge(other: VmCache): VmCache
  replay(newer: VmCache): VmCache
  copy(): VmCache
}

/** The algorithms Xen Orchestra encrypts a remote with. */
export type EncryptionAlgorithm = 'chacha20-poly1305' | 'aes-256-gcm'

/** A repository's key and algorithm: seals and opens files as Xen Orchestra does (IV | ciphertext | tag). */
export interface Cipher {
  readonly algorithm: EncryptionAlgorithm
  /** Encrypted with a fresh IV. */
  seal(plaintext: BytesInput | string): Uint8Array
  /** The plaintext; a BrcacheError (DECRYPTION_FAILED) naming `file` when it does not authenticate. */
  open(sealed: BytesInput, file?: string): Uint8Array
  /** Throws WRONG_ENCRYPTION_KEY unless `metadata.json`'s bytes open with this key. */
  verifyKey(metadata: BytesInput | undefined): void
}

/** The core's encryption (`encryptionApi` of every entry). */
export interface EncryptionApi {
  /** null for a plaintext repository; throws ENCRYPTED, NOT_ENCRYPTED, UNSUPPORTED_ENCRYPTION or INVALID_ENCRYPTION_KEY. */
  openEncryption(descriptor: BytesInput | undefined, key: string | Uint8Array | undefined): Cipher | null
  /** What `encryption.json` names (null: plaintext). */
  encryptionAlgorithm(descriptor: BytesInput | undefined): EncryptionAlgorithm | null
  newCipher(algorithm: EncryptionAlgorithm, key: string | Uint8Array): Cipher
}
