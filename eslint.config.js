import { builtinModules } from 'node:module'
import js from '@eslint/js'
import globals from 'globals'
import { BROWSER, BROWSER_SAFE, SHARED } from './js/node/browser-safe.js'

const glob = (entry) => (entry.endsWith('/') ? `${entry}**` : entry)
// Not served by `brcache serve`, but loaded by the browser bench's page
// (the sample and its XO projection are pure, so that they could be).
const BENCH_PAGE = ['bench/browser/**', 'js/sample/metadata.js', 'js/sample/restore-view.js']
const browserSafe = [...BROWSER_SAFE.map(glob), ...BENCH_PAGE]

const NODE_ONLY = 'browser-safe code (see js/node/browser-safe.js) runs in web pages: no Node module here'

export default [
  { ignores: ['js/generated/**', 'target/**', 'node_modules/**', '.scratch/**'] },
  js.configs.recommended,
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { ecmaVersion: 2024, sourceType: 'module' },
    rules: {
      'no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      eqeqeq: ['error', 'always'],
      'prefer-const': 'error',
      'no-var': 'error',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ignores: browserSafe,
    languageOptions: { globals: { ...globals.node } },
  },
  {
    files: browserSafe,
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: builtinModules.filter((name) => !name.startsWith('_')).map((name) => ({ name, message: NODE_ONLY })),
          patterns: [
            { group: ['node:*'], message: NODE_ONLY },
            { group: ['**/node/**'], message: 'js/node/ is Node I/O: browser-safe code cannot import it' },
          ],
        },
      ],
    },
  },
  // Code that runs in Node too sees only what both have (no `document`, no `process`).
  { files: SHARED.map(glob), languageOptions: { globals: { ...globals['shared-node-browser'] } } },
  { files: [...BROWSER.map(glob), ...BENCH_PAGE], languageOptions: { globals: { ...globals.browser } } },
]
