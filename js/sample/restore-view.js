// The restore view Xen Orchestra's UI builds from a full record (its
// formatVmBackup): what the baselines compute, in Node and in the browser
// bench, to compare like with like. Free of Node-only imports.

export function projectRecord(b) {
  return {
    id: b.id,
    timestamp: b.timestamp,
    mode: b.mode,
    size: b.size,
    jobId: b.jobId,
    scheduleId: b.scheduleId,
    tags: b.tags,
    vm: { uuid: b.vm?.uuid, name_label: b.vm?.name_label, name_description: b.vm?.name_description, tags: b.vm?.tags },
    disks: Object.keys(b.vhds ?? {}).map((ref) => ({
      id: `${b.id.slice(0, b.id.lastIndexOf('/'))}/${b.vhds[ref]}`,
      name: b.vdis?.[ref]?.name_label,
      uuid: b.vdis?.[ref]?.uuid,
    })),
    withMemory: b.vmSnapshot?.suspend_VDI !== 'OpaqueRef:NULL',
  }
}
