// Timing helpers shared by the benchmarks.
//
// Paths are measured interleaved (run 1 of each path, then run 2 of each…)
// so that a slow spell of the machine (GC, the other core busy) falls on
// every path alike, and each path's median is reported.

import { performance } from 'node:perf_hooks'

/**
 * @param {Record<string, () => unknown>} paths
 * @returns {Record<string, { median: number, min: number, max: number, runs: number }>}
 */
export function compare(paths, { runs = 30, warmup = 3 } = {}) {
  const names = Object.keys(paths)
  const times = Object.fromEntries(names.map((n) => [n, []]))
  for (let i = 0; i < warmup; i++) for (const n of names) paths[n]()
  for (let i = 0; i < runs; i++) {
    for (const n of names) {
      const start = performance.now()
      paths[n]()
      times[n].push(performance.now() - start)
    }
  }
  return Object.fromEntries(names.map((n) => [n, summarize(times[n])]))
}

/** Median, min and max of a list of durations in ms. */
export function summarize(list) {
  const sorted = [...list].sort((a, b) => a - b)
  return { median: sorted[Math.floor(sorted.length / 2)], min: sorted[0], max: sorted[sorted.length - 1], runs: sorted.length }
}

export const ms = (value) => `${value.toFixed(2)} ms`
export const ratio = (baseline, value) => `${(baseline / value).toFixed(2)}x`
