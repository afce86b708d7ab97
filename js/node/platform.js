// The platform triple napi-rs names addons by (`linux-x64-gnu`, …), apart
// from the loader: the build needs it before any core exists to load.

import { readFileSync } from 'node:fs'

/**
 * glibc or musl, as napi-rs names them (`gnu`, `musl`): from the text of
 * ldd (a shell script on glibc, musl's loader elsewhere), else from the
 * process report, which names glibc's version when Node runs on it.
 */
function linuxLibc() {
  try {
    const ldd = readFileSync('/usr/bin/ldd', 'latin1')
    if (ldd.includes('musl')) return 'musl'
    if (ldd.includes('GNU C Library') || ldd.includes('glibc')) return 'gnu'
  } catch {
    // no ldd: ask the process report
  }
  const report = process.report?.getReport?.()
  return report?.header?.glibcVersionRuntime ? 'gnu' : 'musl'
}

/**
 * The napi-rs platform triple of this process (`linux-x64-gnu`,
 * `darwin-arm64`, `win32-x64-msvc`, …).
 */
export function platformTriple({ platform = process.platform, arch = process.arch, libc } = {}) {
  if (platform === 'linux') {
    const abi = libc ?? linuxLibc()
    return arch === 'arm' ? `linux-arm-${abi}eabihf` : `linux-${arch}-${abi}`
  }
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}
