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

/** Thrown for bytes that are not a valid cache. */
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
