#!/usr/bin/env node
// The installed `lora` command. A committed file, unlike the compiled CLI in dist/ (built by the
// root `prepare` after the packages are linked), so `npm install` can link it into
// node_modules/.bin on a fresh clone and `npx lora` works right after it.
import '../dist/main.js';
