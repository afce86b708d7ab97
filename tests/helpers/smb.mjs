// The SMB share the SMB tests run against (scripts/smb.sh): Samba on
// loopback, mounted through the FUSE client smbnetfs, started (and, the
// first time on a machine, installed) by the project itself.

import { serviceScript } from './service.mjs'

const smb = serviceScript('smb.sh')

/** Starts the share and its mount (idempotent): `{ mount, exported }`. */
export function startSmb() {
  const env = smb.start()
  return { mount: env.BRCACHE_SMB_MOUNT, exported: env.BRCACHE_SMB_EXPORT }
}

export function stopSmb() {
  smb.run('stop')
}
