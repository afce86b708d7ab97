#!/usr/bin/env node
// Writes tests/vectors/: cache inputs and what decoding them must give,
// shared by the Rust, napi and wasm test suites.
//
// Inputs are made with Node's own zlib (as Xen Orchestra makes them) or
// crafted byte by byte; expected outputs come from JSON.parse and from
// the RFC 1952 layout, never from brcache itself, so the vectors check
// brcache rather than restate it. Deterministic: rerunning rewrites the
// same bytes.

import { createHash } from 'node:crypto'
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import zlib from 'node:zlib'
import { createRandom, makeRepository } from '../js/sample/metadata.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const dir = join(root, 'tests', 'vectors')
const cases = []

// Start afresh so that a removed case leaves no file behind (the
// semantics scenarios beside them belong to another generator).
mkdirSync(dir, { recursive: true })
for (const file of readdirSync(dir)) {
  if (file.endsWith('.gz') || file.endsWith('.expected.json') || file === 'manifest.json') rmSync(join(dir, file))
}

// --- helpers ---------------------------------------------------------------

/** A gzip member with full control of its header (RFC 1952 2.3). */
function gzipMember(body, { flags = 0, mtime = 0, extra, name, comment, headerCrc = false, os = 3, method = 8 } = {}) {
  const parts = []
  const fixed = Buffer.alloc(10)
  fixed[0] = 0x1f
  fixed[1] = 0x8b
  fixed[2] = method
  fixed[3] =
    flags | (extra ? 0x04 : 0) | (name !== undefined ? 0x08 : 0) | (comment !== undefined ? 0x10 : 0) | (headerCrc ? 0x02 : 0)
  fixed.writeUInt32LE(mtime, 4)
  fixed[9] = os
  parts.push(fixed)
  if (extra) {
    const xlen = Buffer.alloc(2)
    xlen.writeUInt16LE(extra.length)
    parts.push(xlen, extra)
  }
  if (name !== undefined) parts.push(Buffer.from(name, 'latin1'), Buffer.from([0]))
  if (comment !== undefined) parts.push(Buffer.from(comment, 'latin1'), Buffer.from([0]))
  if (headerCrc) {
    const crc = Buffer.alloc(2)
    crc.writeUInt16LE(zlib.crc32(Buffer.concat(parts)) & 0xffff)
    parts.push(crc)
  }
  const data = Buffer.from(body)
  const trailer = Buffer.alloc(8)
  trailer.writeUInt32LE(zlib.crc32(data), 0)
  trailer.writeUInt32LE(data.length >>> 0, 4)
  return Buffer.concat([...parts, zlib.deflateRawSync(data), trailer])
}

function subfield(id, data) {
  const head = Buffer.alloc(4)
  head.write(id, 0, 'latin1')
  head.writeUInt16LE(data.length, 2)
  return Buffer.concat([head, data])
}

/** brcache's header sub-field, laid out from the README's table. */
function brcacheHeader({ generation, names }) {
  const sorted = [...new Set(names)].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
  const hash = createHash('sha256')
  for (const n of sorted) hash.update(Buffer.concat([Buffer.from(n), Buffer.from([0])]))
  const fingerprint = hash.digest()
  const data = Buffer.alloc(14)
  data[0] = 1
  data[1] = 1
  data.writeBigUInt64LE(BigInt(generation), 2)
  data.writeUInt32LE(sorted.length, 10)
  return {
    extra: subfield('BC', Buffer.concat([data, fingerprint])),
    expected: { version: 1, generation, entries: sorted.length, fingerprint: fingerprint.toString('hex') },
  }
}

function valid(name, bytes, { header = null, limits, note, json = true } = {}) {
  const input = `${name}.gz`
  writeFileSync(join(dir, input), bytes)
  if (!json) {
    // Valid, but JSON cannot spell what JSON.parse makes of it (Infinity):
    // the suites check that every surface accepts it, not its value.
    cases.push({ name, note, input, limits, expect: { ok: true, header } })
    return
  }
  const text = zlib.gunzipSync(bytes).toString('utf8')
  // The expectation is what JSON.parse makes of the body, stored as JSON.
  writeFileSync(join(dir, `${name}.expected.json`), JSON.stringify(JSON.parse(text)))
  cases.push({ name, note, input, limits, expect: { json: `${name}.expected.json`, header } })
}

function invalid(name, bytes, error, { offset, limits, note } = {}) {
  const input = `${name}.gz`
  writeFileSync(join(dir, input), bytes)
  cases.push({ name, note, input, limits, expect: { error, offset } })
}

const gzip = (text, level) => zlib.gzipSync(Buffer.from(text), level === undefined ? {} : { level })
const nest = (depth) => '['.repeat(depth) + ']'.repeat(depth)

// --- valid caches ----------------------------------------------------------

// An XO-written cache: leading-slash keys, full records with _filename and
// id, full and delta backups of two VMs (one of them UEFI).
const repo = makeRepository('vectors-1', { vms: 2, retention: 4 })
function xoCache(vmEntry, { slash = true } = {}) {
  const cache = {}
  for (const { filename, metadata } of vmEntry.backups) {
    const path = `${slash ? '/' : ''}xo-vm-backups/${vmEntry.vm.uuid}/${filename}`
    cache[path] = { ...metadata, _filename: path, id: path }
  }
  return cache
}
valid('xo-full-and-delta', gzip(JSON.stringify(xoCache(repo.vms[0]))), {
  note: 'as Xen Orchestra writes it: leading-slash keys, full records, Node default gzip',
})
valid('xo-legacy-no-slash', gzip(JSON.stringify(xoCache(repo.vms[1], { slash: false }))), {
  note: 'keys without the leading slash, as some XO versions wrote them',
})
valid('empty-object', gzip('{}'))
valid('pretty-printed', gzip(JSON.stringify(xoCache(repo.vms[0]), null, 2)), { note: 'whitespace between tokens' })

const rng = createRandom('unicode')
valid(
  'unicode-names',
  gzip(
    JSON.stringify({
      '/xo-vm-backups/5f1d/20240101T000000Z.json': {
        vm: { name_label: 'serveur-été ☃ 日本語 🚀', name_description: 'quote " backslash \\ tab \t nl \n nul \u0000' },
        mode: 'full',
        uuid: rng.uuid(),
      },
      '/xo-vm-backups/5f1d/20240102T000000Z.json': { 'clé-é': '\u2028\u2029', emoji: '👩‍💻' },
    }),
  ),
)
valid(
  'large-numbers',
  gzip(
    JSON.stringify({
      '/xo-vm-backups/v/20240101T000000Z.json': {
        size: 2 ** 53 - 1,
        huge: 1.7976931348623157e308,
        tiny: 5e-324,
        exp: 1e21,
        frac: 0.1 + 0.2,
        negative: -123456789012,
        zero: -0,
        timestamp: 1706666405123,
      },
    }),
  ),
  { note: 'numbers must read exactly as JSON.parse reads them' },
)
valid('duplicate-keys', gzip('{"/a/1.json":{"v":1},"/a/2.json":{},"/a/1.json":{"v":2}}'), {
  note: 'JSON.parse keeps the first position and the last value',
})
valid('proto-keys', gzip('{"__proto__":{"polluted":true},"/a/b.json":{"constructor":{"prototype":{"x":1}},"__proto__":[]}}'), {
  note: 'hostile keys decode as own properties and pollute nothing',
})
valid('level-0-stored', gzip(JSON.stringify(xoCache(repo.vms[1])), 0))
valid('level-9', gzip(JSON.stringify(xoCache(repo.vms[1])), 9))
valid(
  'header-fields',
  gzipMember('{"/a/b.json":{"x":1}}', {
    mtime: 1706666405,
    extra: subfield('Zz', Buffer.from('foreign sub-field')),
    name: 'cache.json',
    comment: 'written by another tool',
    headerCrc: true,
  }),
  { note: 'FEXTRA of another tool, FNAME, FCOMMENT and FHCRC are read and skipped' },
)
valid('garbage-extra', gzipMember('{"/a/b.json":{}}', { extra: Buffer.from([1, 2, 200, 0, 5]) }), {
  note: 'an FEXTRA that is not a list of sub-fields is ignored, like gzip does',
})
{
  const cache = xoCache(repo.vms[0])
  const names = Object.keys(cache).map((k) => k.split('/').pop())
  const { extra, expected } = brcacheHeader({ generation: 7, names })
  valid('brcache-header', gzipMember(JSON.stringify(cache), { extra: Buffer.concat([subfield('Zz', Buffer.from('x')), extra]) }), {
    header: expected,
    note: "brcache's sub-field after another one",
  })
}
valid('depth-at-limit', gzip(`{"/a/b.json":{"x":${nest(62)}}}`), { note: 'exactly 64 levels' })

// --- invalid caches --------------------------------------------------------

const sample = gzip('{"/xo-vm-backups/v/20240101T000000Z.json":{"mode":"full","size":1}}')
const withTrailer = (mutate) => {
  const copy = Buffer.from(sample)
  mutate(copy)
  return copy
}

invalid('empty-file', Buffer.alloc(0), 'NOT_GZIP', { offset: 0 })
invalid('plain-json', Buffer.from('{"a":{}}'), 'NOT_GZIP', { offset: 0 })
invalid('zlib-not-gzip', zlib.deflateSync(Buffer.from('{}')), 'NOT_GZIP', { offset: 0 })
invalid('truncated-header', sample.subarray(0, 6), 'TRUNCATED', { offset: 6 })
invalid('truncated-body', sample.subarray(0, 20), 'TRUNCATED')
invalid('truncated-trailer', sample.subarray(0, sample.length - 4), 'TRUNCATED', { offset: sample.length - 8 })
invalid('crc-mismatch', withTrailer((b) => (b[b.length - 8] ^= 0xff)), 'CRC_MISMATCH', { offset: sample.length - 8 })
invalid('size-mismatch', withTrailer((b) => (b[b.length - 1] ^= 0x01)), 'SIZE_MISMATCH', { offset: sample.length - 4 })
// Found by the property tests: a forged ISIZE of 4 GiB once made a
// 20-byte file reserve the whole inflate limit before failing.
invalid('forged-size', withCopy(gzip('{}'), (b) => b.writeUInt32LE(0xffffffff, b.length - 4)), 'SIZE_MISMATCH')
invalid('bad-method', withTrailer((b) => (b[2] = 7)), 'UNSUPPORTED_GZIP', { offset: 2 })
invalid('reserved-flags', withTrailer((b) => (b[3] |= 0x20)), 'UNSUPPORTED_GZIP', { offset: 3 })
{
  const good = gzipMember('{}', { name: 'x', headerCrc: true })
  const crcAt = 10 + 2
  invalid('header-crc-mismatch', withCopy(good, (b) => (b[crcAt] ^= 0xff)), 'HEADER_CRC_MISMATCH', { offset: crcAt })
}
invalid('truncated-fname', gzipMember('{}', { name: 'cache.json' }).subarray(0, 14), 'TRUNCATED')
{
  // A deflate block of reserved type 3 (BFINAL=1, BTYPE=11).
  const bytes = Buffer.concat([sample.subarray(0, 10), Buffer.from([0x07, 0, 0, 0]), sample.subarray(-8)])
  invalid('corrupt-deflate', bytes, 'CORRUPT_DEFLATE')
}
invalid('two-members', Buffer.concat([sample, gzip('{}')]), 'TRAILING_DATA', { offset: sample.length })
invalid('trailing-garbage', Buffer.concat([sample, Buffer.from('junk')]), 'TRAILING_DATA', { offset: sample.length })
{
  // 8 MiB of spaces inside a valid document: a bomb for a 1 MiB cap.
  const body = `{"/a/b.json":{"pad":"${' '.repeat(8 << 20)}"}}`
  invalid('gzip-bomb', gzip(body, 9), 'TOO_LARGE', { limits: { maxInflatedSize: 1 << 20 } })
}
{
  const body = Buffer.concat([Buffer.from('{"/a/b.json":{"name":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}}')])
  invalid('invalid-utf8', gzipMember(body), 'INVALID_UTF8', { offset: 22 })
}
invalid('invalid-json', gzip('{"/a/b.json":{"x":1},}'), 'INVALID_JSON')
invalid('trailing-text', gzip('{"/a/b.json":{}} x'), 'INVALID_JSON')
invalid('bom', gzipMember(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{}')])), 'INVALID_JSON')
invalid('empty-body', gzip(''), 'INVALID_JSON')
// Found by the property tests: a body ending in a backslash inside a
// string once made the depth scan read past the end.
invalid('backslash-at-end', gzip('{"/a/b.json":{"x":"\\'), 'INVALID_JSON')
invalid('top-level-array', gzip('[{"a":1}]'), 'NOT_AN_OBJECT', { offset: 0 })
invalid('top-level-null', gzip(' null'), 'NOT_AN_OBJECT', { offset: 1 })
invalid('top-level-string', gzip('"cache"'), 'NOT_AN_OBJECT', { offset: 0 })
invalid('entry-number', gzip('{"/a/1.json":{},"/a/2.json":42}'), 'ENTRY_NOT_AN_OBJECT')
invalid('entry-array', gzip('{"/a/1.json":[]}'), 'ENTRY_NOT_AN_OBJECT')
invalid('entry-null', gzip('{"/a/1.json":null}'), 'ENTRY_NOT_AN_OBJECT')
invalid('entry-string', gzip('{"/a/1.json":"{}"}'), 'ENTRY_NOT_AN_OBJECT')
invalid('too-deep', gzip(`{"/a/b.json":{"x":${nest(63)}}}`), 'TOO_DEEP', { offset: 18 + 62 })
invalid('deep-bomb', gzip('['.repeat(100000)), 'TOO_DEEP', { offset: 64 })
{
  // A 64 MiB string: under a 16 MiB cap it is refused before it is built.
  const body = `{"/a/b.json":{"name":"${'x'.repeat(64 << 20)}"}}`
  invalid('huge-string', gzip(body, 9), 'TOO_LARGE', { limits: { maxInflatedSize: 16 << 20 } })
}
invalid('lone-surrogate-key', gzip('{"\\ud800":{}}'), 'INVALID_JSON', {
  note: 'a key JSON.parse would accept but no Rust string can hold',
})
invalid('control-character-in-string', gzip('{"/a/b.json":{"x":"a\u0001b"}}'), 'INVALID_JSON')
valid('numbers-out-of-range', gzip('{"/a/b.json":{"size":1e400,"neg":-1e400,"tiny":1e-400}}'), {
  note: 'kept verbatim by the core; JS reads them as JSON.parse does (Infinity, 0)',
  json: false,
})

function withCopy(buffer, mutate) {
  const copy = Buffer.from(buffer)
  mutate(copy)
  return copy
}

// --- write -----------------------------------------------------------------

writeFileSync(join(dir, 'manifest.json'), `${JSON.stringify({ cases }, null, 2)}\n`)
console.log(`wrote ${cases.length} vectors to ${dir}`)
