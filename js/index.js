// brcache for Node.js: the codec and VM caches on the napi addon, and the
// repository API a backup server calls.

export {
  decodeCache,
  encodeCache,
  readCacheHeader,
  VmCache,
  fastPath,
  checkKeys,
  summariesOf,
  spliceCache,
  indexSegmentOf,
  indexApi,
  encryptionApi,
} from './native.js'
export { listVmFolders, openRepository } from './repository.js'
export { LocalHandler, SimulatedShare, S3Handler, parseS3Url, openHandler, EncryptedShare } from './handlers/index.js'
export { BrcacheError } from './errors.js'
