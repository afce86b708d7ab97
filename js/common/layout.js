// Where things live in a backup repository (Xen Orchestra's layout).
// Free of Node-only imports: the browser and the sample generator use it,
// before any core is loaded; tests/surface.test.mjs holds these constants
// to the core's (`repositoryLayout`).

export const BACKUP_DIR = 'xo-vm-backups'
export const CACHE_FILE = 'cache.json.gz'

/** `xo-vm-backups/<vm>`, relative to the repository root. */
export const vmDir = (vm) => `${BACKUP_DIR}/${vm}`

/** The handler path of a file in a VM folder. */
export const vmFile = (vm, name) => `${BACKUP_DIR}/${vm}/${name}`

/** The canonical cache key (and XO id) of a metadata file. */
export const metadataKey = (vm, name) => `/${BACKUP_DIR}/${vm}/${name}`

/** `YYYYMMDDTHHmmssZ` in UTC: the name XO gives a restore point's files. */
export function formatFilenameDate(ms) {
  return new Date(ms).toISOString().slice(0, 19).replace(/[-:]/g, '') + 'Z'
}

/**
 * Splits a metadata path (`/xo-vm-backups/<vm>/<name>`, leading slash
 * optional) into its VM and file name, or returns undefined. This only
 * finds the VM folder a path claims; the core decides whether the path is
 * acceptable.
 */
export function splitMetadataPath(path) {
  const parts = String(path).replace(/^\//, '').split('/')
  if (parts.length !== 3 || parts[0] !== BACKUP_DIR) return undefined
  return { vm: parts[1], name: parts[2] }
}
