// brcache for Node.js: the codec and VM caches on the napi addon (or on the
// wasm core where no addon loads, see js/node/core.js), and the repository API a
// backup server calls.

export {
  coreName,
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
  operations,
} from './node/core.js'
export { listVmFolders, openRepository } from './node/repository.js'
export { LocalHandler, SimulatedShare, S3Handler, parseS3Url, openHandler, EncryptedShare } from './node/handlers/index.js'
export { BrcacheError } from './common/errors.js'
