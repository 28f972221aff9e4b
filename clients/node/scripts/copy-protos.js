// Copies the API's .proto files into the package (proto/), keeping their
// import paths (flow.proto imports "api/proto/queued/v1/queue.proto"), so
// the built package loads them at run time without the repository around it.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const src = path.resolve(__dirname, '..', '..', '..', 'api', 'proto', 'queued', 'v1');
const dst = path.resolve(__dirname, '..', 'proto', 'api', 'proto', 'queued', 'v1');

if (!fs.existsSync(src)) {
  if (fs.existsSync(dst)) process.exit(0); // an unpacked package: protos already copied
  console.error(`copy-protos: ${src} not found; build inside the queued repository`);
  process.exit(1);
}
fs.rmSync(dst, { recursive: true, force: true });
fs.mkdirSync(dst, { recursive: true });
for (const f of fs.readdirSync(src)) {
  if (f.endsWith('.proto')) fs.copyFileSync(path.join(src, f), path.join(dst, f));
}
