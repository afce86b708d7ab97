import js from '@eslint/js'
import globals from 'globals'

export default [
  { ignores: ['js/generated/**', 'target/**', 'node_modules/**', '.scratch/**'] },
  js.configs.recommended,
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: {
      ecmaVersion: 2024,
      sourceType: 'module',
      globals: { ...globals.node },
    },
    rules: {
      'no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      eqeqeq: ['error', 'always'],
      'prefer-const': 'error',
      'no-var': 'error',
    },
  },
  {
    files: ['js/browser.js', 'js/codec.js', 'js/errors.js', 'js/sample/metadata.js', 'js/sample/restore-view.js', 'js/web/**', 'bench/browser/**'],
    languageOptions: { globals: { ...globals.browser } },
  },
]
