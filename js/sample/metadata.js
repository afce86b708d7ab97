// Deterministic generator of realistic Xen Orchestra backup metadata.
//
// Used by test-vector generation, `brcache gen` and the benchmarks, so two
// rules matter more than anything else:
//   - determinism: the same seed must give byte-identical JSON on every
//     platform (no Date.now(), no Math.random(), no locale-dependent code);
//   - realism of *shape and size*: the cache's cost is dominated by the bulky
//     XAPI records (`vm`, `vmSnapshot`, `last_booted_record`, UEFI NVRAM), so
//     those are generated at full size, in the order XO writes them
//     (see ../shared/notes/xo-reference.md, sections 1.1 and 1.2).
//
// Pure ESM, no dependencies, no I/O: it also runs in a browser.

import { formatFilenameDate } from '../common/layout.js'

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB
const DAY_MS = 24 * 60 * 60 * 1000

const NULL_REF = 'OpaqueRef:NULL'
// The XAPI default for "never": non-snapshot VMs and VDIs carry it in snapshot_time.
const XAPI_EPOCH = '19700101T00:00:00Z'

// ---------------------------------------------------------------------------
// Seeded PRNG
// ---------------------------------------------------------------------------

// Strings and numbers are both accepted as seeds. The hash is FNV-1a followed by
// murmur3's finalizer, because FNV alone leaves nearby seeds ('vm-1', 'vm-2')
// with correlated low bits, which mulberry32 would carry into its first outputs.
function hashSeed(seed) {
  const text = String(seed)
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

/**
 * Seeded PRNG (mulberry32 over a 32-bit hash of `seed`).
 *
 * @param {string|number} seed
 */
export function createRandom(seed) {
  let state = hashSeed(seed)

  function uint32() {
    state = (state + 0x6d2b79f5) | 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }

  function next() {
    return uint32() / 0x100000000
  }

  function int(min, maxInclusive) {
    const span = maxInclusive - min + 1
    // 32 bits of entropy cannot reach every value of a multi-GiB range, and
    // byte sizes that are all multiples of 8 would look synthetic.
    const fraction = span > 0x100000000 ? (uint32() * 0x200000 + (uint32() >>> 11)) / 2 ** 53 : next()
    return min + Math.floor(fraction * span)
  }

  function hex(nBytes) {
    let out = ''
    for (let i = 0; i < nBytes; i += 4) {
      const word = uint32()
      for (let j = 0; j < 4 && i + j < nBytes; j++) out += HEX[(word >>> (8 * j)) & 0xff]
    }
    return out
  }

  function uuid() {
    const h = hex(16)
    const variant = ((parseInt(h[16], 16) & 0x3) | 0x8).toString(16)
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`
  }

  return {
    next,
    int,
    pick: array => array[int(0, array.length - 1)],
    uuid,
    hex,
    bool: (p = 0.5) => next() < p,
  }
}

// ---------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------

function isoSeconds(ms) {
  return new Date(ms).toISOString().slice(0, 19) // YYYY-MM-DDTHH:mm:ss, always UTC
}

export { formatFilenameDate }

// XAPI's DateTime flavour (and XO's `xo:backup:datetime`) keeps the colons.
function formatXapiDate(ms) {
  return isoSeconds(ms).replace(/-/g, '') + 'Z'
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

const opaqueRef = rng => `OpaqueRef:${rng.uuid()}`
const pad2 = n => String(n).padStart(2, '0')
const roundTo = (value, unit) => Math.round(value / unit) * unit
const clamp = (value, min, max) => Math.min(max, Math.max(min, value))

// Backup sizes spread over orders of magnitude; a uniform draw would put
// almost every value near the top of the range.
function logUniform(rng, min, max) {
  return Math.exp(Math.log(min) + rng.next() * (Math.log(max) - Math.log(min)))
}

function randomBytes(rng, n) {
  const bytes = new Uint8Array(n)
  for (let i = 0; i < n; i++) bytes[i] = rng.int(0, 255)
  return bytes
}

// Locally administered unicast, like XAPI's generated MACs.
function macAddress(rng) {
  const bytes = randomBytes(rng, 6)
  bytes[0] = (bytes[0] & 0xfc) | 0x02
  return Array.from(bytes, b => HEX[b]).join(':')
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

// btoa() needs a binary string and Buffer is Node-only; this works everywhere.
function base64(bytes) {
  const parts = []
  let i = 0
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2]
    parts.push(B64[n >>> 18] + B64[(n >>> 12) & 63] + B64[(n >>> 6) & 63] + B64[n & 63])
  }
  const rest = bytes.length - i
  if (rest === 1) {
    const n = bytes[i] << 16
    parts.push(B64[n >>> 18] + B64[(n >>> 12) & 63] + '==')
  } else if (rest === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8)
    parts.push(B64[n >>> 18] + B64[(n >>> 12) & 63] + B64[(n >>> 6) & 63] + '=')
  }
  return parts.join('')
}

// ---------------------------------------------------------------------------
// Word lists
// ---------------------------------------------------------------------------

const OS = {
  debian12: { template: 'Debian Bookworm 12', label: 'debian-12', windows: false },
  debian11: { template: 'Debian Bullseye 11', label: 'debian-11', windows: false },
  ubuntu22: { template: 'Ubuntu Jammy Jellyfish 22.04', label: 'ubuntu-22.04', windows: false },
  rocky9: { template: 'Rocky Linux 9', label: 'rocky-9', windows: false },
  alma8: { template: 'AlmaLinux 8', label: 'almalinux-8', windows: false },
  win2019: { template: 'Windows Server 2019 (64-bit)', label: 'windows-server-2019-64bit', windows: true },
  win2022: { template: 'Windows Server 2022 (64-bit)', label: 'windows-server-2022-64bit', windows: true },
}
const LINUX = ['debian12', 'debian12', 'debian11', 'ubuntu22', 'rocky9', 'alma8']
const WINDOWS = ['win2019', 'win2022']

// [role, possible descriptions, possible OS keys]
const ROLES = [
  ['web', ['nginx front end', 'Apache 2.4 + PHP-FPM', 'public website', ''], LINUX],
  ['db', ['PostgreSQL 15 primary', 'MariaDB 10.11 replica', ''], LINUX],
  ['app', ['Java backend (Tomcat 10)', 'Node.js API', 'Django application server'], LINUX],
  ['cache', ['Redis 7', 'memcached'], LINUX],
  ['mail', ['Postfix + Dovecot', 'mail relay'], LINUX],
  ['dns', ['bind9 resolver', 'PowerDNS authoritative'], LINUX],
  ['proxy', ['HAProxy', 'Squid outbound proxy'], LINUX],
  ['files', ['Samba file server', 'Nextcloud'], [...LINUX, ...WINDOWS]],
  ['ci', ['GitLab runner', 'Jenkins agent'], LINUX],
  ['mon', ['Zabbix server', 'Prometheus + Grafana'], LINUX],
  ['k8s', ['Kubernetes worker', 'Kubernetes control plane'], LINUX],
  ['vpn', ['WireGuard gateway', 'OpenVPN'], LINUX],
  ['log', ['Graylog', 'Elasticsearch node'], LINUX],
  ['ad', ['Active Directory domain controller'], WINDOWS],
  ['rds', ['Remote Desktop session host'], WINDOWS],
  ['sql', ['SQL Server 2019', 'SQL Server 2022 Standard'], WINDOWS],
  ['erp', ['ERP application server', ''], WINDOWS],
]
// prod is over-represented: that is what people back up.
const ENVS = ['prod', 'prod', 'prod', 'staging', 'dev', 'test', 'qa', 'preprod']
const EXTRA_TAGS = ['critical', 'ha', 'customer-a', 'customer-b', 'legacy', 'pci-dss']
const JOB_NAMES = ['Daily delta', 'Nightly backup', 'Prod VMs', 'Weekly full', 'Critical VMs', 'All VMs - NAS']
const SYSTEM_DISK_GIB = [10, 20, 32, 40, 50, 64, 80, 100]
const DATA_DISK_GIB = [50, 100, 200, 250, 500, 1024]

// ---------------------------------------------------------------------------
// Pool: one repository usually backs up one pool, so hosts, SRs and networks
// are shared by every VM. Built lazily from a fixed seed, hence identical
// for every repository seed, as if all repositories backed up the same pool.
// ---------------------------------------------------------------------------

let pool
function getPool() {
  if (pool === undefined) {
    const rng = createRandom('brcache/sample/pool')
    const named = names => names.map(name_label => ({ ref: opaqueRef(rng), uuid: rng.uuid(), name_label }))
    pool = {
      hosts: named(['xcp-host-01', 'xcp-host-02', 'xcp-host-03']),
      srs: named(['NFS VM storage', 'iSCSI SAN - tier 1', 'Local storage']),
      networks: [
        ['Pool-wide network associated with eth0', -1],
        ['Pool-wide network associated with eth1', -1],
        ['VLAN 20 - DMZ', 20],
        ['VLAN 30 - backend', 30],
      ].map(([name_label, VLAN]) => ({ ref: opaqueRef(rng), uuid: rng.uuid(), name_label, VLAN })),
    }
  }
  return pool
}

// ---------------------------------------------------------------------------
// Source VMs
// ---------------------------------------------------------------------------

/**
 * A source VM, as the caller of the backup job sees it.
 *
 * @returns {{ uuid: string, name_label: string, name_description: string, tags: string[],
 *   firmware: 'bios'|'uefi', disks: { vdiUuid: string, name_label: string, virtual_size: number }[],
 *   vifs: { MAC: string, device: string, network: { uuid: string, name_label: string, VLAN: number } }[] }}
 */
export function makeVm(rng, index) {
  const [role, descriptions] = rng.pick(ROLES)
  const env = rng.pick(ENVS)
  // The index makes names unique within a repository, which keeps listings readable.
  const name_label = `${role}-${env}-${pad2(index + 1)}`
  const uuid = rng.uuid()
  const name_description = rng.pick(descriptions)
  const tags = vmTags(rng, env)
  const firmware = rng.bool(0.2) ? 'uefi' : 'bios'

  const disks = Array.from({ length: rng.int(1, 3) }, (_, i) => ({
    vdiUuid: rng.uuid(),
    name_label: i === 0 ? `${name_label} 0` : rng.pick([`${name_label} ${i}`, `${name_label} data${i}`, `${role} data`]),
    virtual_size: (i === 0 ? rng.pick(SYSTEM_DISK_GIB) : rng.pick(DATA_DISK_GIB)) * GiB,
  }))

  const { networks } = getPool()
  const vifs = Array.from({ length: rng.bool(0.7) ? 1 : 2 }, (_, i) => {
    const { uuid, name_label, VLAN } = rng.pick(networks)
    return { MAC: macAddress(rng), device: String(i), network: { uuid, name_label, VLAN } }
  })

  return { uuid, name_label, name_description, tags, firmware, disks, vifs }
}

function vmTags(rng, env) {
  const roll = rng.next()
  if (roll < 0.4) return []
  if (roll < 0.8) return [env]
  return [env, rng.pick(EXTRA_TAGS)]
}

// Everything about a VM that the hypervisor knows but `makeVm` does not
// describe (memory, OS, refs, NVRAM...). It is seeded by the VM uuid, not by
// the caller's rng, so that all the restore points of a VM agree on it
// without widening makeVm's documented shape. Cached per VM object because a series of 45
// restore points would otherwise rebuild the same NVRAM and boot record 45
// times; treat VM descriptions as immutable.
const profiles = new WeakMap()
function vmProfile(vm) {
  let profile = profiles.get(vm)
  if (profile === undefined) {
    profile = buildVmProfile(vm)
    profiles.set(vm, profile)
  }
  return profile
}

function buildVmProfile(vm) {
  const rng = createRandom(`profile:${vm.uuid}`)
  const role = vm.name_label.split('-')[0]
  const osChoices = ROLES.find(([r]) => r === role)?.[2] ?? LINUX
  const os = OS[rng.pick(osChoices)]
  const vcpus = rng.pick(os.windows ? [2, 4, 4, 8] : [1, 2, 2, 4, 8])
  const memory = rng.pick(os.windows ? [4, 8, 8, 16, 32] : [1, 2, 4, 4, 8, 16]) * GiB
  const { hosts, srs } = getPool()

  const profile = {
    os,
    vcpus,
    coresPerSocket: vcpus >= 4 ? vcpus / 2 : vcpus,
    memory,
    memoryMin: rng.bool(0.3) ? memory / 2 : memory,
    running: rng.bool(0.9),
    ref: opaqueRef(rng),
    metrics: opaqueRef(rng),
    guestMetrics: opaqueRef(rng),
    consoles: [opaqueRef(rng)],
    // one VBD per disk, then the CD drive every template creates
    vbds: [...vm.disks.map(() => opaqueRef(rng)), opaqueRef(rng)],
    vifs: vm.vifs.map(() => opaqueRef(rng)),
    vdiRefs: vm.disks.map(() => opaqueRef(rng)),
    diskSrs: vm.disks.map(() => rng.pick(srs)),
    host: rng.pick(hosts),
    domid: rng.int(1, 300),
    macSeed: rng.uuid(),
    autoPowerOn: rng.bool(0.5),
    protected: rng.bool(0.15),
    generationId: os.windows ? `${rng.int(1e9, 4e9)}${rng.int(1e8, 9e8)}:${rng.int(1e9, 4e9)}${rng.int(1e8, 9e8)}` : '',
    cpuFeatures: Array.from({ length: 9 }, () => rng.hex(4)).join('-'),
    // typical bytes moved by one XVA export / one daily delta for this VM
    fullSize: logUniform(rng, 1.2 * GiB, 36 * GiB),
    churn: logUniform(rng, 24 * MiB, 1.5 * GiB),
    nvram: vm.firmware === 'uefi' ? efiVariables(rng, os) : undefined,
  }
  profile.lastBootedRecord = lastBootedRecord(vm, profile)
  return profile
}

// ---------------------------------------------------------------------------
// UEFI NVRAM: a varstored-like blob, ~12 KB raw, ~16 KB once in base64.
// The Secure Boot databases (PK, KEK, db, dbx) are the same vendor
// certificates on every VM, so they come from a fixed seed; boot entries and
// counters are per VM. That mix keeps cross-record compression realistic.
// ---------------------------------------------------------------------------

const EFI_GLOBAL = '8be4df61-93ca-11d2-aa0d-00e098032b8c'
const EFI_IMAGE_SECURITY = 'd719b2cb-3d3a-4596-a3bc-dad00e67656f'

let secureBootDatabases
function getSecureBootDatabases() {
  if (secureBootDatabases === undefined) {
    const rng = createRandom('brcache/sample/secure-boot')
    secureBootDatabases = [
      ['PK', EFI_GLOBAL, randomBytes(rng, 0x330)],
      ['KEK', EFI_GLOBAL, randomBytes(rng, 0x630)],
      ['db', EFI_IMAGE_SECURITY, randomBytes(rng, 0xc40)],
      ['dbx', EFI_IMAGE_SECURITY, randomBytes(rng, 0x1500)],
    ]
  }
  return secureBootDatabases
}

function utf16(text) {
  const bytes = new Uint8Array(text.length * 2 + 2)
  for (let i = 0; i < text.length; i++) bytes[2 * i] = text.charCodeAt(i)
  return bytes
}

function guidBytes(guid) {
  return Uint8Array.from(guid.replace(/-/g, '').match(/../g), h => parseInt(h, 16))
}

function u32(n) {
  return Uint8Array.of(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24)
}

function bootEntry(rng, description, devicePathLength) {
  return new Uint8Array([...u32(1), ...utf16(description), ...randomBytes(rng, devicePathLength)])
}

function efiVariables(rng, os) {
  const boot = [
    bootEntry(rng, 'UiApp', 44),
    bootEntry(rng, 'UEFI QEMU DVD-ROM QM00001 ', 80),
    bootEntry(rng, 'UEFI Misc Device', 96),
    bootEntry(rng, os.windows ? 'Windows Boot Manager' : 'debian', 136),
  ]
  const variables = [
    ...getSecureBootDatabases(),
    ['Timeout', EFI_GLOBAL, Uint8Array.of(0, 0)],
    ['Lang', EFI_GLOBAL, new TextEncoder().encode('eng')],
    ['PlatformLang', EFI_GLOBAL, new TextEncoder().encode('en-US')],
    ['ConOut', EFI_GLOBAL, randomBytes(rng, 150)],
    ['ConIn', EFI_GLOBAL, randomBytes(rng, 130)],
    ['ErrOut', EFI_GLOBAL, randomBytes(rng, 150)],
    ...boot.map((entry, i) => [`Boot000${i}`, EFI_GLOBAL, entry]),
    ['BootOrder', EFI_GLOBAL, Uint8Array.of(3, 0, 1, 0, 2, 0, 0, 0)],
    ['MTC', 'eb704011-1402-11d3-8e77-00a0c969723b', u32(rng.int(1, 400))],
  ]

  const chunks = [new TextEncoder().encode('VARS'), u32(1), u32(variables.length)]
  for (const [name, guid, data] of variables) {
    const utf16Name = utf16(name)
    chunks.push(u32(utf16Name.length), utf16Name, guidBytes(guid), u32(0x27), u32(data.length), data)
  }
  const blob = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0))
  let offset = 0
  for (const chunk of chunks) {
    blob.set(chunk, offset)
    offset += chunk.length
  }
  return base64(blob)
}

// ---------------------------------------------------------------------------
// XAPI VM records
// ---------------------------------------------------------------------------

const RUNNING_OPERATIONS = [
  'changing_dynamic_range', 'migrate_send', 'pool_migrate', 'changing_VCPUs_live', 'suspend',
  'hard_reboot', 'hard_shutdown', 'clean_reboot', 'clean_shutdown', 'pause', 'checkpoint', 'snapshot',
]
const HALTED_OPERATIONS = [
  'changing_NVRAM', 'changing_dynamic_range', 'changing_shadow_memory', 'changing_static_range',
  'make_into_template', 'migrate_send', 'destroy', 'export', 'start_on', 'start', 'clone', 'copy', 'snapshot',
]
const SNAPSHOT_OPERATIONS = [
  'changing_NVRAM', 'changing_dynamic_range', 'changing_shadow_memory', 'changing_static_range',
  'destroy', 'export', 'revert', 'clone', 'copy',
]

function vmOtherConfig(profile) {
  const { os } = profile
  return {
    ...(profile.autoPowerOn ? { auto_poweron: 'true' } : {}),
    base_template_name: os.template,
    import_task: NULL_REF,
    'install-methods': os.windows ? 'cdrom' : 'cdrom,nfs,http,ftp',
    ...(os.windows ? {} : { linux_template: 'true' }),
    mac_seed: profile.macSeed,
  }
}

function vmPlatform(vm, profile) {
  const uefi = vm.firmware === 'uefi'
  return {
    timeoffset: '0',
    'device-model': 'qemu-upstream-' + (uefi ? 'uefi' : 'compat'),
    videoram: '8',
    hpet: 'true',
    ...(uefi ? { secureboot: profile.os.windows ? 'true' : 'false' } : {}),
    vga: 'std',
    apic: 'true',
    ...(profile.os.windows
      ? { viridian: 'true', viridian_time_ref_count: 'true', viridian_reference_tsc: 'true', device_id: '0002' }
      : {}),
    nx: 'true',
    pae: 'true',
    acpi: '1',
    'cores-per-socket': String(profile.coresPerSocket),
  }
}

function biosStrings(profile) {
  return {
    'bios-vendor': 'Xen',
    'bios-version': '',
    'system-manufacturer': 'Xen',
    'system-product-name': 'HVM domU',
    'system-version': '',
    'system-serial-number': '',
    'baseboard-manufacturer': '',
    'baseboard-product-name': '',
    'baseboard-version': '',
    'baseboard-serial-number': '',
    'baseboard-asset-tag': '',
    'baseboard-location-in-chassis': '',
    'enclosure-asset-tag': '',
    'hp-rombios': '',
    'oem-1': 'Xen',
    'oem-2': profile.os.windows ? 'MS_VM_CERT/SHA1/bdbeb6e0a816d43fa6d3fe8aaef04c2bad9d3e3d' : '',
  }
}

function recommendations(profile) {
  const maxMemory = profile.os.windows ? 1.5 * 1024 * GiB : 128 * GiB
  return (
    '<restrictions>' +
    `<restriction field="memory-static-max" max="${maxMemory}" />` +
    `<restriction field="vcpus-max" max="${profile.os.windows ? 64 : 32}" />` +
    `<restriction field="has-vendor-device" value="${profile.os.windows}" />` +
    '<restriction property="number-of-vbds" max="255" />' +
    '<restriction property="number-of-vifs" max="7" />' +
    '</restrictions>'
  )
}

// XAPI stores the record captured at boot as an S-expression string; it is
// the single largest field of a BIOS VM record.
function toSexpr(value) {
  if (Array.isArray(value)) return `('array'${value.map(v => ' ' + toSexpr(v)).join('')})`
  if (value !== null && typeof value === 'object') {
    return `('struct'${Object.entries(value)
      .map(([key, v]) => ` ('${key}' ${toSexpr(v)})`)
      .join('')})`
  }
  return `'${String(value).replace(/[\\']/g, '\\$&')}'`
}

// All the per-record differences between the source VM and its snapshot;
// everything else comes from the VM and its profile.
function sourceVmState(vm, profile, { snapshots }) {
  const running = profile.running
  return {
    uuid: vm.uuid,
    name_label: vm.name_label,
    allowed_operations: running ? RUNNING_OPERATIONS : HALTED_OPERATIONS,
    power_state: running ? 'Running' : 'Halted',
    suspend_VDI: NULL_REF,
    resident_on: running ? profile.host.ref : NULL_REF,
    memory_target: running ? profile.memory : 0,
    consoles: running ? profile.consoles : [],
    VIFs: profile.vifs,
    VBDs: profile.vbds,
    domid: running ? profile.domid : -1,
    metrics: profile.metrics,
    guest_metrics: profile.guestMetrics,
    is_a_snapshot: false,
    snapshot_of: NULL_REF,
    snapshots,
    snapshot_time: XAPI_EPOCH,
    transportable_snapshot_id: '',
    other_config: vmOtherConfig(profile),
    parent: snapshots.at(-1) ?? NULL_REF,
  }
}

// Arrays are copied so that callers may edit one record (tests do) without
// touching the shared profile, the VM description or other records.
function vmRecord(vm, profile, state, lastBootedRecord) {
  const uefi = vm.firmware === 'uefi'
  return {
    uuid: state.uuid,
    allowed_operations: [...state.allowed_operations],
    current_operations: {},
    name_label: state.name_label,
    name_description: vm.name_description,
    power_state: state.power_state,
    user_version: 1,
    is_a_template: false,
    is_default_template: false,
    suspend_VDI: state.suspend_VDI,
    resident_on: state.resident_on,
    scheduled_to_be_resident_on: NULL_REF,
    affinity: NULL_REF,
    memory_overhead: roundTo(profile.memory / 128 + profile.vcpus * MiB + 2 * MiB, 4 * KiB),
    memory_target: state.memory_target,
    memory_static_max: profile.memory,
    memory_dynamic_max: profile.memory,
    memory_dynamic_min: profile.memoryMin,
    memory_static_min: profile.memoryMin,
    VCPUs_params: {},
    VCPUs_max: profile.vcpus,
    VCPUs_at_startup: profile.vcpus,
    actions_after_softreboot: 'soft_reboot',
    actions_after_shutdown: 'destroy',
    actions_after_reboot: 'restart',
    actions_after_crash: 'restart',
    consoles: [...state.consoles],
    VIFs: [...state.VIFs],
    VBDs: [...state.VBDs],
    VUSBs: [],
    crash_dumps: [],
    VTPMs: [],
    PV_bootloader: '',
    PV_kernel: '',
    PV_ramdisk: '',
    PV_args: '',
    PV_bootloader_args: '',
    PV_legacy_args: '',
    HVM_boot_policy: 'BIOS order',
    HVM_boot_params: { order: profile.os.windows ? 'dc' : 'cdn', firmware: vm.firmware },
    HVM_shadow_multiplier: 1,
    platform: vmPlatform(vm, profile),
    PCI_bus: '',
    other_config: state.other_config,
    domid: state.domid,
    domarch: '',
    last_boot_CPU_flags: { vendor: 'GenuineIntel', features: profile.cpuFeatures },
    is_control_domain: false,
    metrics: state.metrics,
    guest_metrics: state.guest_metrics,
    last_booted_record: lastBootedRecord,
    recommendations: recommendations(profile),
    xenstore_data: profile.os.windows ? { 'vm-data': '' } : { 'vm-data': '', 'vm-data/mmio-hole-size': '268435456' },
    ha_always_run: false,
    ha_restart_priority: '',
    is_a_snapshot: state.is_a_snapshot,
    snapshot_of: state.snapshot_of,
    snapshots: [...state.snapshots],
    snapshot_time: state.snapshot_time,
    transportable_snapshot_id: state.transportable_snapshot_id,
    blobs: {},
    tags: [...vm.tags],
    blocked_operations: profile.protected ? { destroy: 'true' } : {},
    snapshot_info: {},
    snapshot_metadata: '',
    parent: state.parent,
    children: [],
    bios_strings: biosStrings(profile),
    protection_policy: NULL_REF,
    is_snapshot_from_vmpp: false,
    snapshot_schedule: NULL_REF,
    is_vmss_snapshot: false,
    appliance: NULL_REF,
    start_delay: 0,
    shutdown_delay: 0,
    order: 0,
    VGPUs: [],
    attached_PCIs: [],
    suspend_SR: NULL_REF,
    version: 0,
    generation_id: profile.generationId,
    hardware_platform_version: profile.os.windows ? 2 : 0,
    has_vendor_device: profile.os.windows,
    requires_reboot: false,
    reference_label: profile.os.label,
    domain_type: 'hvm',
    NVRAM: uefi ? { 'EFI-variables': profile.nvram } : {},
    pending_guidances: [],
    pending_guidances_recommended: [],
    pending_guidances_full: [],
  }
}

// Fields left out of the boot-time copy: the string itself, and what the
// toolstack recomputes or owns elsewhere (varstored keeps the NVRAM).
const NOT_IN_BOOT_RECORD = new Set(['last_booted_record', 'NVRAM', 'recommendations', 'bios_strings', 'allowed_operations'])
const isEmptyValue = value =>
  value === '' || value === NULL_REF || (typeof value === 'object' && Object.keys(value).length === 0)

// The record as it was when the VM last started (no snapshots yet), minus
// empty fields, which keeps it at the 2-3 KB seen on real hosts.
function lastBootedRecord(vm, profile) {
  const state = sourceVmState(vm, profile, { snapshots: [] })
  const record = vmRecord(vm, profile, { ...state, power_state: 'Running', domid: profile.domid }, '')
  const kept = Object.entries(record).filter(([key, value]) => !NOT_IN_BOOT_RECORD.has(key) && !isEmptyValue(value))
  return toSexpr(Object.fromEntries(kept))
}

function sourceVmRecord(vm, profile, options) {
  return vmRecord(vm, profile, sourceVmState(vm, profile, options), profile.lastBootedRecord)
}

// Per-restore-point identity of the snapshot XO exports.
function makeSnapshot(rng, vm, { timestamp, withMemory, parent }) {
  // XO takes `timestamp` after the snapshot and the transfer starts later still.
  const takenAt = timestamp - rng.int(2, 40) * 1000
  return {
    ref: opaqueRef(rng),
    uuid: rng.uuid(),
    takenAt,
    parent: parent ?? NULL_REF,
    withMemory,
    vbds: [...vm.disks.map(() => opaqueRef(rng)), opaqueRef(rng)],
    vifs: vm.vifs.map(() => opaqueRef(rng)),
    metrics: opaqueRef(rng),
    vdis: vm.disks.map(() => ({ ref: opaqueRef(rng), uuid: rng.uuid() })),
    suspendVdi: withMemory ? { ref: opaqueRef(rng), uuid: rng.uuid() } : undefined,
    transportableId: rng.hex(4) + rng.uuid().slice(8),
  }
}

function backupOtherConfig({ takenAt, jobId, scheduleId, vmUuid }) {
  return {
    'xo:backup:datetime': formatXapiDate(takenAt),
    'xo:backup:job': jobId,
    'xo:backup:schedule': scheduleId,
    'xo:backup:vm': vmUuid,
  }
}

function snapshotVmRecord(vm, profile, snapshot, job) {
  const state = {
    uuid: snapshot.uuid,
    // XO's default snapshot name template: '[XO Backup {job.name}] {vm.name_label}'
    name_label: `[XO Backup ${job.name}] ${vm.name_label}`,
    allowed_operations: SNAPSHOT_OPERATIONS,
    power_state: snapshot.withMemory ? 'Suspended' : 'Halted',
    suspend_VDI: snapshot.suspendVdi?.ref ?? NULL_REF,
    resident_on: NULL_REF,
    memory_target: 0,
    consoles: [],
    VIFs: snapshot.vifs,
    VBDs: snapshot.vbds,
    domid: -1,
    metrics: snapshot.metrics,
    guest_metrics: NULL_REF,
    is_a_snapshot: true,
    snapshot_of: profile.ref,
    snapshots: [],
    snapshot_time: formatXapiDate(snapshot.takenAt - 1000),
    transportable_snapshot_id: snapshot.transportableId,
    other_config: {
      ...vmOtherConfig(profile),
      ...backupOtherConfig({ takenAt: snapshot.takenAt, jobId: job.id, scheduleId: job.scheduleId, vmUuid: vm.uuid }),
    },
    parent: snapshot.parent,
  }
  // a snapshot inherits the record of the VM's last boot
  return vmRecord(vm, profile, state, profile.lastBootedRecord)
}

// ---------------------------------------------------------------------------
// Delta export: vbds / vdis / vifs / vhds / isVhdDifferencing
// ---------------------------------------------------------------------------

// Which earlier snapshot VDI each disk is a delta of.
//   - no base given: a differencing delta whose parent is older than the
//     generated window (standalone records still look like the common case);
//   - base is a full (XVA) backup: VHDs cannot chain on an XVA, so this is a
//     key delta with no base tag;
//   - base is a delta: chain on the snapshot VDI of the same source disk.
function baseVdiUuids(rng, vm, base) {
  if (base === undefined) return vm.disks.map(() => rng.uuid())
  if (base.mode !== 'delta') return vm.disks.map(() => undefined)
  const bySource = new Map(Object.values(base.vdis).map(vdi => [vdi.$snapshot_of$uuid, vdi.uuid]))
  return vm.disks.map(disk => bySource.get(disk.vdiUuid))
}

function vbdRecord(rng, i, snapshot, vdiRef) {
  return {
    uuid: rng.uuid(),
    allowed_operations: [],
    current_operations: {},
    VM: snapshot.ref,
    VDI: vdiRef,
    device: `xvd${String.fromCharCode(97 + i)}`,
    userdevice: String(i),
    bootable: i === 0,
    mode: 'RW',
    type: 'Disk',
    unpluggable: false,
    storage_lock: false,
    empty: false,
    other_config: i === 0 ? { owner: 'true' } : {},
    currently_attached: false,
    status_code: 0,
    status_detail: '',
    runtime_properties: {},
    qos_algorithm_type: '',
    qos_algorithm_params: {},
    qos_supported_algorithms: [],
    metrics: NULL_REF,
  }
}

function vdiRecord(rng, { uuid, name_label, name_description, type, sr, vbdRef, virtualSize, snapshotOf, snapshotTime, otherConfig }) {
  return {
    uuid,
    name_label,
    name_description,
    allowed_operations: ['clone', 'snapshot', 'destroy', 'data_destroy', 'copy', 'resize', 'update', 'generate_config'],
    current_operations: {},
    SR: sr.ref,
    VBDs: vbdRef === undefined ? [] : [vbdRef],
    crash_dumps: [],
    virtual_size: virtualSize,
    physical_utilisation: roundTo(virtualSize * (0.05 + 0.6 * rng.next()), 2 * MiB),
    type,
    sharable: false,
    read_only: false,
    other_config: otherConfig,
    storage_lock: false,
    location: uuid,
    managed: true,
    missing: false,
    parent: NULL_REF,
    xenstore_data: {},
    // a memory image is written once and never snapshotted, so it has no parent
    sm_config: type === 'suspend' ? { vdi_type: 'vhd' } : { vdi_type: 'vhd', 'vhd-parent': rng.uuid() },
    is_a_snapshot: snapshotOf !== undefined,
    snapshot_of: snapshotOf?.ref ?? NULL_REF,
    snapshots: [],
    snapshot_time: snapshotTime,
    tags: [],
    allow_caching: false,
    on_boot: 'persist',
    metadata_of_pool: NULL_REF,
    metadata_latest: false,
    is_tools_iso: false,
    cbt_enabled: false,
    // XO's additions; `$snapshot_of$uuid` stays undefined (hence absent) for the memory VDI
    $snapshot_of$uuid: snapshotOf?.uuid,
    $SR$uuid: sr.uuid,
  }
}

function vifRecord(rng, vif, snapshot, profile) {
  const network = getPool().networks.find(n => n.uuid === vif.network.uuid)
  return {
    uuid: rng.uuid(),
    allowed_operations: [],
    current_operations: {},
    device: vif.device,
    network: network?.ref ?? NULL_REF,
    VM: snapshot.ref,
    MAC: vif.MAC,
    MTU: 1500,
    other_config: {},
    currently_attached: false,
    status_code: 0,
    status_detail: '',
    runtime_properties: {},
    qos_algorithm_type: '',
    qos_algorithm_params: {},
    qos_supported_algorithms: [],
    metrics: NULL_REF,
    MAC_autogenerated: !profile.os.windows,
    locking_mode: 'network_default',
    ipv4_allowed: [],
    ipv6_allowed: [],
    ipv4_configuration_mode: 'None',
    ipv4_addresses: [],
    ipv4_gateway: '',
    ipv6_configuration_mode: 'None',
    ipv6_addresses: [],
    ipv6_gateway: '',
    $network$uuid: vif.network.uuid,
    $network$name_label: vif.network.name_label,
    $network$VLAN: vif.network.VLAN,
  }
}

function deltaExport(rng, vm, profile, snapshot, { job, date, base }) {
  const vbds = {}
  const vdis = {}
  const vhds = {}
  const isVhdDifferencing = {}
  const bases = baseVdiUuids(rng, vm, base)
  const snapshotTime = formatXapiDate(snapshot.takenAt - 1000)
  const backupConfig = backupOtherConfig({
    takenAt: snapshot.takenAt,
    jobId: job.id,
    scheduleId: job.scheduleId,
    vmUuid: vm.uuid,
  })

  vm.disks.forEach((disk, i) => {
    const { ref: vdiRef, uuid } = snapshot.vdis[i]
    const vbdRef = snapshot.vbds[i]
    vbds[vbdRef] = vbdRecord(rng, i, snapshot, vdiRef)
    vdis[vdiRef] = vdiRecord(rng, {
      uuid,
      name_label: disk.name_label,
      name_description: i === 0 ? 'Created by template provisioner' : '',
      type: 'user',
      sr: profile.diskSrs[i],
      vbdRef,
      virtualSize: disk.virtual_size,
      snapshotOf: { ref: profile.vdiRefs[i], uuid: disk.vdiUuid },
      snapshotTime,
      // the undefined base of a key delta disappears in JSON, as in XO
      otherConfig: { ...backupConfig, 'xo:base_delta_vdi': bases[i] },
    })
    vhds[vdiRef] = `vdis/${job.id}/${disk.vdiUuid}/${date}.vhd`
    isVhdDifferencing[vdiRef] = bases[i] !== undefined
  })

  // A checkpoint's memory is exported whole and, having no parent VDI, is
  // stored under its own uuid (IncrementalRemoteWriter does the same).
  const memory = snapshot.suspendVdi
  if (memory !== undefined) {
    vdis[memory.ref] = vdiRecord(rng, {
      uuid: memory.uuid,
      name_label: 'Suspend image',
      name_description: 'Suspend image',
      type: 'suspend',
      sr: profile.diskSrs[0],
      virtualSize: roundTo(profile.memory * 1.05 + 8 * MiB, 2 * MiB),
      snapshotTime: XAPI_EPOCH,
      otherConfig: {},
    })
    vhds[memory.ref] = `vdis/${job.id}/${memory.uuid}/${date}.vhd`
    isVhdDifferencing[memory.ref] = false
  }

  const vifs = {}
  vm.vifs.forEach((vif, i) => {
    vifs[snapshot.vifs[i]] = vifRecord(rng, vif, snapshot, profile)
  })

  return { vbds, vdis, vifs, vhds, isVhdDifferencing }
}

// ---------------------------------------------------------------------------
// Metadata
// ---------------------------------------------------------------------------

// Job-level traits (name, whether long-term retention is on) only depend on
// the job id, so every VM of a job agrees on them.
function jobTraits(jobId, scheduleId) {
  const rng = createRandom(`job:${jobId}`)
  return { id: jobId, scheduleId, name: rng.pick(JOB_NAMES), ltr: rng.bool(0.4) }
}

function ltrTags(job, timestamp) {
  return job.ltr ? [`daily=${isoSeconds(timestamp).slice(0, 10)}`] : []
}

// VHD and XVA sizes are whole sectors.
const SECTOR = 512

function fullSize(rng, profile) {
  const size = profile.fullSize * (0.95 + 0.1 * rng.next())
  return roundTo(clamp(size, 1 * GiB, 40 * GiB), SECTOR)
}

// A key delta carries every used block, like a full, but stays inside the
// delta range the consumers expect; jitter is applied after the cap so that
// big VMs do not all report the exact same size.
function deltaSize(rng, profile, isKey) {
  const size = isKey
    ? Math.min(profile.fullSize, 4.5 * GiB) * (1 + 0.1 * rng.next())
    : profile.churn * logUniform(rng, 0.45, 2.5)
  return roundTo(clamp(size, 10 * MiB, 5 * GiB), SECTOR)
}

/**
 * One restore point's metadata, exactly as XO `JSON.stringify`s it to `<date>.json`.
 *
 * Optional: `base` (the previous restore point of the same job, used to chain
 * VHDs and snapshots) and `withMemory` (checkpoint snapshot; random if omitted).
 */
export function makeMetadata(rng, { vm, jobId, scheduleId, timestamp, mode, base, withMemory }) {
  if (mode !== 'full' && mode !== 'delta') throw new TypeError(`unsupported backup mode: ${mode}`)
  withMemory ??= rng.bool(0.1)

  const profile = vmProfile(vm)
  const job = jobTraits(jobId, scheduleId)
  const date = formatFilenameDate(timestamp)
  // A delta job keeps its last snapshot on the host as the next base, so the
  // source VM lists it, and the new snapshot descends from it.
  const baseSnapshotRef = base?.mode === 'delta' ? Object.values(base.vbds)[0]?.VM : undefined
  const snapshot = makeSnapshot(rng, vm, { timestamp, withMemory, parent: baseSnapshotRef })
  const vmRec = sourceVmRecord(vm, profile, { snapshots: baseSnapshotRef === undefined ? [] : [baseSnapshotRef] })
  const vmSnapshot = snapshotVmRecord(vm, profile, snapshot, job)
  const tags = ltrTags(job, timestamp)

  if (mode === 'full') {
    return {
      jobId,
      mode,
      scheduleId,
      timestamp,
      version: '2.0.0',
      vm: vmRec,
      vmSnapshot,
      xva: `./${date}.xva`,
      size: fullSize(rng, profile),
      tags,
    }
  }

  const exp = deltaExport(rng, vm, profile, snapshot, { job, date, base })
  const isKey = !Object.values(exp.isVhdDifferencing).some(Boolean)
  return {
    // current XO writes this first on every fresh delta; consumers must carry it through
    includeNonNbdQcow2Fix: true,
    isVhdDifferencing: exp.isVhdDifferencing,
    jobId,
    mode,
    scheduleId,
    timestamp,
    vbds: exp.vbds,
    vdis: exp.vdis,
    version: '2.0.0',
    vifs: exp.vifs,
    vhds: exp.vhds,
    vm: vmRec,
    vmSnapshot,
    vtpms: [],
    tags,
    size: deltaSize(rng, profile, isKey),
  }
}

// ---------------------------------------------------------------------------
// Restore-point series and repositories
// ---------------------------------------------------------------------------

function dataFilesOf(metadata) {
  if (metadata.mode === 'full') return [metadata.xva, `${metadata.xva}.checksum`]
  return Object.values(metadata.vhds)
}

/**
 * `retention` consecutive restore points of one VM, oldest first.
 *
 * Optional `jobId`/`scheduleId` (generated if omitted) let several VMs share a job.
 */
export function makeVmBackups(
  rng,
  { vm, retention, start = Date.UTC(2024, 0, 1, 1, 0, 0), intervalMs = DAY_MS, fullEvery = 7, jobId = rng.uuid(), scheduleId = rng.uuid() }
) {
  // Checkpoint snapshots are a job setting, so all of a VM's restore points agree.
  const withMemory = rng.bool(0.08)
  // jitter stays well inside the interval so that order is preserved
  const maxJitterMs = Math.min(90_000, Math.floor(intervalMs / 4))
  const backups = []
  let previous
  let lastSecond = -Infinity

  for (let i = 0; i < retention; i++) {
    let timestamp = start + i * intervalMs + rng.int(0, maxJitterMs)
    // XO names files to the second: two restore points in one second would collide.
    if (Math.floor(timestamp / 1000) <= lastSecond) timestamp = (lastSecond + 1) * 1000 + (timestamp % 1000)
    lastSecond = Math.floor(timestamp / 1000)

    const mode = i % fullEvery === 0 ? 'full' : 'delta'
    const metadata = makeMetadata(rng, { vm, jobId, scheduleId, timestamp, mode, base: previous, withMemory })
    backups.push({ filename: `${formatFilenameDate(timestamp)}.json`, metadata, dataFiles: dataFilesOf(metadata) })
    previous = metadata
  }
  return backups
}

/**
 * A whole repository: `vms` source VMs with `retention` restore points each.
 * The same seed always yields the same JSON.
 */
export function makeRepository(seed, { vms, retention, start = Date.UTC(2024, 0, 1, 1, 0, 0) }) {
  const rng = createRandom(seed)
  // A few jobs back up the whole pool; VMs of a job run one after the other,
  // a few minutes apart, which is what real directory timestamps look like.
  const jobs = Array.from({ length: Math.min(vms, rng.int(1, 3)) }, () => ({
    jobId: rng.uuid(),
    scheduleId: rng.uuid(),
    cursor: start + rng.int(0, 120) * 60_000,
  }))

  const result = []
  for (let index = 0; index < vms; index++) {
    const vm = makeVm(rng, index)
    const job = jobs[index % jobs.length]
    const backups = makeVmBackups(rng, {
      vm,
      retention,
      start: job.cursor,
      jobId: job.jobId,
      scheduleId: job.scheduleId,
    })
    job.cursor += rng.int(1, 6) * 60_000
    result.push({ vm, backups })
  }
  return { vms: result }
}
