// Handler over an S3-compatible object store (the contract is in
// interface.md). Paths map to object keys under an optional prefix; folders
// are key prefixes, listed with ListObjectsV2 and a delimiter.
//
// What S3 cannot give, this handler does not pretend to give:
// - there are no locks: `lock` returns at once (as Xen Orchestra's S3
//   handler does), so correctness across servers must come from the
//   design above it (create-only objects with unique names, caches checked
//   against the listing, see the README);
// - a create-only write sends `If-None-Match: *`, which stores that honour
//   it enforce (AWS S3, MinIO, Ceph RGW); Garage 2.5 ignores it. Which one
//   this store is, `conditionalWrites()` finds out once by trying it; where
//   it is not known to honour it, the handler also checks that the key is
//   free first: that narrows the race, it does not close it.
// A PutObject is atomic per object, so every write is an atomic replace.

import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3'
import { randomBytes } from 'node:crypto'

function codedError(code, message, path, cause) {
  return Object.assign(new Error(`${code}: ${message}`, { cause }), { code, path })
}

/** Node-style codes for S3 failures, so that the repository layer can tell them apart. */
function translate(error, path) {
  const status = error?.$metadata?.httpStatusCode
  const name = error?.name ?? ''
  if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) {
    if (name === 'NoSuchBucket') return codedError('ENOENT', `no such bucket (${error.message})`, path, error)
    return codedError('ENOENT', `no such object: ${path}`, path, error)
  }
  if (status === 403 || name === 'AccessDenied' || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch') {
    return codedError('EACCES', `access denied by the object store (${name}): check the key and the bucket`, path, error)
  }
  if (status === 412 || name === 'PreconditionFailed') return codedError('EEXIST', `${path} already exists`, path, error)
  if (error?.code) return error
  return codedError('EIO', `${name || 'S3 error'}: ${error?.message ?? error}`, path, error)
}

/**
 * Parses `s3://<key>:<secret>@<host>:<port>/<bucket>/<prefix>` (the form
 * backup servers use for S3 remotes). `http: true` talks plain HTTP, for a
 * store on loopback.
 */
export function parseS3Url(url, { http = false } = {}) {
  const parsed = new URL(url)
  if (parsed.protocol !== 's3:') throw codedError('EINVAL', `not an s3:// URL: ${url}`, url)
  const [bucket, ...prefix] = parsed.pathname.replace(/^\//, '').split('/')
  if (!bucket) throw codedError('EINVAL', `no bucket in ${url}`, url)
  return {
    endpoint: `${http ? 'http' : 'https'}://${parsed.host}`,
    bucket,
    prefix: prefix.filter(Boolean).join('/'),
    accessKeyId: decodeURIComponent(parsed.username),
    secretAccessKey: decodeURIComponent(parsed.password),
  }
}

/** The probe object's name, at the repository root (removed at once). */
export const CONDITIONAL_PROBE_PREFIX = '.brcache-probe-if-none-match-'

export class S3Handler {
  #client
  #bucket
  #prefix
  #conditional
  #objectLock

  /**
   * @param {{ endpoint: string, bucket: string, prefix?: string, accessKeyId: string,
   *   secretAccessKey: string, region?: string, maxAttempts?: number }} options
   */
  constructor({ endpoint, bucket, prefix = '', accessKeyId, secretAccessKey, region = 'garage', maxAttempts = 5 }) {
    this.#bucket = bucket
    this.#prefix = prefix.replace(/^\/+|\/+$/g, '')
    // The SDK retries 5xx and throttling with exponential backoff and
    // jitter; path-style addressing works with any store on any host.
    this.#client = new S3Client({
      endpoint,
      region,
      forcePathStyle: true,
      maxAttempts,
      credentials: { accessKeyId, secretAccessKey },
    })
  }

  /** No locks on S3 (see the top of this file). */
  get supportsLocks() {
    return false
  }

  static fromUrl(url, options) {
    return new S3Handler({ ...parseS3Url(url, options), ...options })
  }

  /** Checks that the bucket exists and the key may use it: a wrong key or bucket is an error, never "no backups". */
  async check() {
    try {
      await this.#client.send(new HeadBucketCommand({ Bucket: this.#bucket }))
    } catch (error) {
      throw translate(error, this.#bucket)
    }
  }

  #key(relPath, { allowRoot = false } = {}) {
    if (typeof relPath !== 'string') throw codedError('EINVAL', `path must be a string, got ${typeof relPath}`, relPath)
    const refuse = (why) => {
      throw codedError('EINVAL', `${why}: '${relPath.replace(/\0/g, '\\0')}'`, relPath)
    }
    if (relPath.includes('\0')) refuse('NUL in path')
    if (relPath.includes('\\')) refuse('backslash in path')
    if (relPath.startsWith('/')) refuse('absolute path')
    const segments = relPath.split('/').filter((s) => s !== '' && s !== '.')
    if (segments.includes('..')) refuse("'..' segment in path")
    if (segments.length === 0 && !allowRoot) refuse('path designates the repository root')
    return [this.#prefix, ...segments].filter(Boolean).join('/')
  }

  async #send(command, path) {
    try {
      return await this.#client.send(command)
    } catch (error) {
      throw translate(error, path)
    }
  }

  /** Every name directly under `dir`, objects and "folders" alike, paginated. */
  async listWithTypes(dir) {
    const base = this.#key(dir, { allowRoot: true })
    const prefix = base ? `${base}/` : ''
    const entries = new Map()
    let token
    do {
      const page = await this.#send(
        new ListObjectsV2Command({ Bucket: this.#bucket, Prefix: prefix, Delimiter: '/', ContinuationToken: token }),
        dir,
      )
      for (const { Prefix } of page.CommonPrefixes ?? []) entries.set(Prefix.slice(prefix.length, -1), true)
      for (const { Key } of page.Contents ?? []) if (Key !== prefix) entries.set(Key.slice(prefix.length), false)
      token = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (token)
    // An object store has no empty folders: a prefix with nothing under it
    // is a folder that does not exist, except the repository's own root,
    // which is there as soon as the bucket is (a missing bucket fails the
    // request itself).
    if (entries.size === 0) {
      if (base === this.#prefix) return []
      throw codedError('ENOENT', `no such folder: ${dir}`, dir)
    }
    return [...entries].map(([name, isDirectory]) => ({ name, isDirectory })).sort((a, b) => (a.name < b.name ? -1 : 1))
  }

  async list(dir) {
    return (await this.listWithTypes(dir)).map((e) => e.name)
  }

  async readFile(path) {
    const response = await this.#send(new GetObjectCommand({ Bucket: this.#bucket, Key: this.#key(path) }), path)
    try {
      return Buffer.from(await response.Body.transformToByteArray())
    } catch (error) {
      throw translate(error, path)
    }
  }

  async #exists(path) {
    try {
      await this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: this.#key(path) }))
      return true
    } catch (error) {
      const translated = translate(error, path)
      if (translated.code === 'ENOENT') return false
      throw translated
    }
  }

  /**
   * Whether the bucket has Object Lock on (GetObjectLockConfiguration, as
   * Xen Orchestra finds it out): there an object cannot be overwritten or
   * deleted while retained, and each write of a cache would leave a
   * billed version for good, so the repository is immutable. Asked once
   * per handler. A bucket without the configuration answers false, and so
   * does a store or key that may not ask (`--immutable` says it then).
   */
  objectLocked() {
    this.#objectLock ??= this.#client.send(new GetObjectLockConfigurationCommand({ Bucket: this.#bucket })).then(
      (answer) => answer?.ObjectLockConfiguration?.ObjectLockEnabled === 'Enabled',
      () => false,
    )
    return this.#objectLock
  }

  /**
   * Whether the store honours `If-None-Match: *` on PutObject: a probe
   * object is created with it, then created again with it, which must fail
   * with 412; then it is deleted. Asked once per handler (the answer is
   * kept). A store that refuses the header, or a key that may not write,
   * answers false: the caller then keeps to what needs no conditional write.
   */
  conditionalWrites() {
    this.#conditional ??= this.#probeConditionalWrites()
    return this.#conditional
  }

  async #probeConditionalWrites() {
    const Key = this.#key(`${CONDITIONAL_PROBE_PREFIX}${randomBytes(8).toString('hex')}`)
    const put = () => this.#client.send(new PutObjectCommand({ Bucket: this.#bucket, Key, Body: Buffer.alloc(0), IfNoneMatch: '*' }))
    try {
      await put()
    } catch {
      return false
    }
    try {
      await put()
      return false
    } catch (error) {
      return translate(error, Key).code === 'EEXIST'
    } finally {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key })).catch(() => {})
    }
  }

  async writeFile(path, data, { exclusive = false } = {}) {
    const Key = this.#key(path)
    // Where the store enforces If-None-Match, the key needs no look first.
    const enforced = exclusive && this.#conditional !== undefined && (await this.#conditional)
    if (exclusive && !enforced && (await this.#exists(path))) throw codedError('EEXIST', `${path} already exists`, path)
    const Body = typeof data === 'string' ? Buffer.from(data) : data
    await this.#send(new PutObjectCommand({ Bucket: this.#bucket, Key, Body, ...(exclusive ? { IfNoneMatch: '*' } : {}) }), path)
  }

  async rename(from, to) {
    await this.#send(
      new CopyObjectCommand({ Bucket: this.#bucket, Key: this.#key(to), CopySource: `${this.#bucket}/${encodeURIComponent(this.#key(from)).replace(/%2F/g, '/')}` }),
      from,
    )
    await this.unlink(from)
  }

  async unlink(path) {
    // S3 deletes of absent keys succeed; the contract says ENOENT. The
    // delete goes out whatever the HEAD said, so that a HEAD answered by a
    // node behind a PUT just made cannot keep the object (once on Garage,
    // a delete left a data file written a moment before; a stale HEAD is
    // the one way this code could do that).
    const existed = await this.#exists(path)
    await this.#send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: this.#key(path) }), path)
    if (!existed) throw codedError('ENOENT', `no such object: ${path}`, path)
  }

  async rmdir(dir) {
    this.#key(dir)
  }

  async mkdir(dir) {
    this.#key(dir, { allowRoot: true })
  }

  async stat(path) {
    const head = await this.#send(new HeadObjectCommand({ Bucket: this.#bucket, Key: this.#key(path) }), path)
    return { size: head.ContentLength ?? 0, mtimeMs: head.LastModified?.getTime() ?? 0, isDirectory: false }
  }

  /** An object store is no file system: nothing to probe (see the top of this file). */
  async capabilities() {
    return {
      hardLinks: false,
      // rename is a copy then a delete: not one atomic step
      renameOver: false,
      exclusiveCreate: false,
      directoryFsync: false,
      mtimeResolutionMs: 1000,
      probed: false,
      createStrategy: 'conditional-put',
    }
  }

  /** No locks on S3: correctness comes from the design (see the top of this file). */
  async lock(path) {
    this.#key(path)
    return async () => {}
  }

  /** Writes are single PUTs: no temp files are ever left behind. */
  async cleanTemps(dir) {
    this.#key(dir, { allowRoot: true })
    return []
  }

  destroy() {
    this.#client.destroy()
  }
}
