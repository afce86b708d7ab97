// Timing helpers shared by the benchmarks: medians over repeated runs after
// a warm-up, so one slow run (GC, the other core busy) does not decide.

import { performance } from 'node:perf_hooks'

/**
 * Runs `fn` `warmup` times, then `runs` times, and returns the median and
 * spread of the timed runs in milliseconds.
 */
export function measure(fn, { runs = 30, warmup = 3 } = {}) {
  for (let i = 0; i < warmup; i++) fn()
  const times = []
  for (let i = 0; i < runs; i++) {
    const start = performance.now()
    fn()
    times.push(performance.now() - start)
  }
  times.sort((a, b) => a - b)
  return {
    median: times[Math.floor(times.length / 2)],
    min: times[0],
    max: times[times.length - 1],
    runs,
  }
}

export const ms = (value) => `${value.toFixed(2)} ms`
export const ratio = (baseline, value) => `${(baseline / value).toFixed(2)}x`
